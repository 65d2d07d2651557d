// SPDX-License-Identifier: MPL-2.0
//! Each buffer goes to the chain under the guard's watch, and a failed
//! hardware chain is replaced before the next one, as soon as its failure
//! is returned, or at once when its child posts it, by a chain that takes
//! over its frames.

use gst::prelude::*;
use gst::subclass::prelude::*;
use std::sync::atomic::Ordering;

use super::choice::Replacement;
use super::input::Input;
use super::kind::Kind;
use super::switch::{announce, complete_switch, replace_chain};
use super::watch::ChainWatch;
use crate::vpu::decision::Reason;

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
    watch.remember(pad.upcast_ref(), &input);
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
        Ok(switched) => {
            let failure = Some(failure);
            complete_switch(guard, pad, reason, failure, switched, flushes, push_watched)
        }
        Err(why) => {
            let name = factory.name();
            let attempt = Some((name.as_str(), why.as_str()));
            let err = guard.takeover_error(&settings, failure, attempt);
            guard.element().post_error_message(err);
            Err(gst::FlowError::Error)
        }
    }
}

/// Replaces a chain whose failure was just recorded (on the child's own
/// thread), from a thread of GStreamer's pool, rather than when the next
/// frame arrives: on a live stream that is up to a frame interval later.
/// The stream lock keeps the streaming thread out meanwhile; the switch is
/// announced only once it is released, since an application seeking from a
/// sync handler on the decision would otherwise wait for the source's stream
/// lock while the source waits for ours.
pub fn fail_over_now<K: Kind>(guard: &K) {
    let core = guard.core();
    let pad = core.sinkpad();
    super::chain::off_stream(pad, &core.stopping, &core.deferring, || {
        let _ = replace_if_failed(guard, pad);
    });
    let untold = core.with_state(|s| s.untold.take()).flatten();
    if let Some(announcement) = untold {
        announce(guard, &announcement);
    }
}

/// A message posted inside the bin: an ERROR of a chain whose failures the
/// guard handles is claimed (its chain is replaced at once, not when the
/// next unit arrives) and None returned; anything else is returned to go
/// out as the child posted it: its source, debug and details are what the
/// application needs to act on.
pub fn claim_error<K>(guard: &K, message: gst::Message) -> Option<gst::Message>
where
    K: Kind + ObjectSubclass,
    K::Type: IsA<gst::Element>,
{
    if message.type_() != gst::MessageType::Error {
        return Some(message);
    }
    let core = guard.core();
    let watches = {
        let watches = core.watches.lock();
        [watches.current.clone(), watches.starting.clone()]
    };
    let downstream_failed = core.downstream_error.load(Ordering::SeqCst);
    let Some(what) = super::watch::claim_failure(&message, watches, downstream_failed) else {
        return Some(message);
    };
    gst::warning!(
        K::cat(),
        obj = guard.element(),
        "hardware {} failed: {what}",
        K::GUARD.noun()
    );
    guard.obj().call_async(|obj| fail_over_now(obj.imp()));
    None
}
