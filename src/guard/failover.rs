// SPDX-License-Identifier: MPL-2.0
//! The input path: each buffer goes to the chain under the guard's watch,
//! and a failed hardware chain is replaced before the next one (or as soon
//! as its failure is returned) by a chain that takes over its frames.

use gst::prelude::*;
use std::sync::atomic::Ordering;

use super::frame;
use super::input::Input;
use super::kind::{Kind, Replacement};
use super::switch::{complete_switch, replace_chain};
use super::watch::ChainWatch;
use crate::vpu::decision::Reason;

/// A buffer or list on the sink pad.
pub fn sink_chain<K: Kind>(
    guard: &K,
    pad: &gst::GhostPad,
    input: Input,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let flushes = guard.core().flushes();
    replace_if_failed(guard, pad)?;
    let Some(input) = skip_to_keyframe(guard, input) else {
        return Ok(gst::FlowSuccess::Ok);
    };
    super::reclaim::reclaim_if_due(guard, pad, &input)?;
    if guard.core().flushes() != flushes {
        // Flushed by a seek while switching: this input is the old segment's.
        return Ok(gst::FlowSuccess::Ok);
    }
    push_watched(guard, pad, input)
}

/// After a switch that found no keyframe to start from, drops input
/// (counted lost) until one comes.
fn skip_to_keyframe<K: Kind>(guard: &K, input: Input) -> Option<Input> {
    let core = guard.core();
    if core.with_state(|s| s.awaiting_keyframe) != Some(true) {
        return Some(input);
    }
    let mut buffers = input.buffers();
    let key = buffers
        .iter()
        .position(|b| !b.flags().contains(gst::BufferFlags::DELTA_UNIT));
    let skipped = key.unwrap_or(buffers.len());
    core.with_state(|state| {
        state.frames_lost += skipped as u64;
        state.awaiting_keyframe = key.is_none();
    });
    // The skipped references go after the lock.
    let rest = buffers.split_off(skipped);
    drop(buffers);
    match (key, input) {
        (None, _) => None,
        (Some(0), input) => Some(input),
        (Some(_), Input::Buffer(buffer)) => Some(Input::Buffer(buffer)),
        (Some(_), Input::List(_)) => {
            let mut list = gst::BufferList::new_sized(rest.len());
            let list_mut = list.get_mut().expect("a new list is writable");
            rest.into_iter().for_each(|b| list_mut.add(b));
            Some(Input::List(list))
        }
    }
}

/// Pushes into the chain, keeping a reference to each frame while the chain
/// may still have to be replaced.
pub fn push_watched<K: Kind>(
    guard: &K,
    pad: &gst::GhostPad,
    input: Input,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let element = guard.element();
    let Some(watch) = guard.core().current_watch() else {
        return input.push(pad, &element);
    };
    if !watch.keeps_frames() {
        // A chain that works and has no replacement: stop following it (its
        // errors reach the application as they are).
        let stopped = guard.core().watches.lock().current.take();
        drop(stopped);
        return input.push(pad, &element);
    }
    frame::remember(&watch, pad.upcast_ref(), &input);
    match input.push(pad, &element) {
        Err(err) => match failure_behind(guard, &watch, err) {
            // The frame is in the window: the replacement gets it.
            Some(failure) => replace_failed(guard, pad, &watch, &failure),
            None => Err(err),
        },
        ok => ok,
    }
}

/// The failure behind a flow error the chain returned, when the guard
/// handles it: the ERROR the child posted, or an error flow the child
/// returned on its own (downstream did not return it).
fn failure_behind<K: Kind>(
    guard: &K,
    watch: &ChainWatch<K::Window>,
    err: gst::FlowError,
) -> Option<String> {
    if !watch.handles_failure() {
        return None;
    }
    watch.failure().or_else(|| {
        let own = K::own_flow_error(err) && !guard.core().downstream_error.load(Ordering::SeqCst);
        own.then(|| {
            format!(
                "{} returned an error flow without an error message",
                watch.child.name()
            )
        })
    })
}

/// A failure recorded since the last buffer (on the child's own thread):
/// the chain is replaced before the next buffer goes in.
pub fn replace_if_failed<K: Kind>(guard: &K, pad: &gst::GhostPad) -> Result<(), gst::FlowError> {
    let Some(watch) = guard.core().current_watch() else {
        return Ok(());
    };
    match watch.failure() {
        Some(failure) if watch.handles_failure() => {
            replace_failed(guard, pad, &watch, &failure).map(|_| ())
        }
        _ => Ok(()),
    }
}

/// Replaces a failed hardware chain: before anything left the guard by the
/// software child (it could not start), after it by one that downstream
/// takes as it took the hardware child's output.
pub fn replace_failed<K: Kind>(
    guard: &K,
    pad: &gst::GhostPad,
    watch: &ChainWatch<K::Window>,
    failure: &str,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let core = guard.core();
    let settings = guard.settings();
    // Once anything left the guard, downstream has this child's output: a
    // reclaimed hardware child failing before its own first output is
    // replaced as mid-stream too.
    let stream_started = watch.output_seen() || core.srcpad().current_caps().is_some();
    let reason = match stream_started {
        true => Reason::HwFailedMidStream,
        false => Reason::HwStartFailed,
    };
    let caps = pad.current_caps();
    let Some((factory, role)) = guard.takeover(&settings, stream_started, caps.as_deref()) else {
        let element = guard.element();
        element.post_error_message(guard.takeover_error(&settings, failure, None));
        return Err(gst::FlowError::Error);
    };
    let seen = core.with_state(|s| s.seen.clone()).unwrap_or_default();
    let replacement = Replacement {
        factory: factory.clone(),
        role,
        slot: None,
        held: None,
        seen,
        failure: Some(failure.to_string()),
    };
    let flushes = core.flushes();
    match replace_chain(guard, pad, replacement) {
        Ok(switched) => complete_switch(guard, pad, reason, Some(failure), switched, flushes),
        Err(why) => {
            let name = factory.name();
            let attempt = Some((name.as_str(), why.as_str()));
            let err = guard.takeover_error(&settings, failure, attempt);
            guard.element().post_error_message(err);
            Err(gst::FlowError::Error)
        }
    }
}
