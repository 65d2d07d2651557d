// SPDX-License-Identifier: MPL-2.0
//! Replacing the chain mid-stream (failover, reclaim) and feeding the
//! replacement what the old chain never output.
//!
//! Everything here runs under the sink pad's stream lock (in the streaming
//! thread, or off it in `fail_over_now`): no frame can reach the old chain
//! while it is replaced.

use gst::prelude::*;
use std::sync::atomic::Ordering;

use super::chain::{Chain, Role};
use super::choice::{Announcement, Replacement};
use super::core::{self, monotonic_now};
use super::frame::{Frame, Replay, SwitchReport};
use super::input::Input;
use super::kind::Kind;
use super::state::State;
use super::watch::running_time;
use crate::vpu::decision::Reason;

/// How a unit goes into the chain in place: `failover::push_watched`, so
/// that a replacement failing on the frames replayed to it is replaced in
/// turn. Passed in, since failing over is itself a switch.
pub type Push<K> = fn(&K, &gst::GhostPad, Input) -> Result<gst::FlowSuccess, gst::FlowError>;

/// A replacement that has taken over, for `complete_switch`.
pub struct Switched {
    pub report: SwitchReport,
    pub replay: Replay<Frame>,
    /// The new chain's last element.
    pub last: gst::Element,
}

/// A replacement chain from its creation until it takes over: on any other
/// way out it is removed from the bin, and no longer watched as starting.
struct Starting<'a, K: Kind> {
    guard: &'a K,
    chain: Option<Chain>,
}

impl<K: Kind> Starting<'_, K> {
    fn chain(&self) -> &Chain {
        self.chain.as_ref().expect("until it took over")
    }

    fn took_over(mut self) -> Chain {
        self.chain.take().expect("takes over once")
    }
}

impl<K: Kind> Drop for Starting<'_, K> {
    fn drop(&mut self) {
        if let Some(chain) = self.chain.take() {
            let bin = self.guard.element().downcast::<gst::Bin>().unwrap();
            super::chain::remove(&bin, &chain.elements);
            self.guard.core().set_starting(None);
        }
    }
}

/// Starts the new chain beside the old one, then stops the old one and puts
/// the new one in its place. Returns what the new one is fed. If the new
/// chain cannot start, the old one stays and the error says why.
pub fn replace_chain<K: Kind>(
    guard: &K,
    pad: &gst::GhostPad,
    mut new: Replacement,
) -> Result<Switched, String> {
    let core = guard.core();
    let settings = guard.settings();
    let input_caps = pad.current_caps().ok_or("no caps on the sink pad")?;
    let chain = guard
        .create_chain(&settings, &new.factory, &input_caps, new.role, true)
        .map_err(|e| e.why())?;
    let starting = Starting {
        guard,
        chain: Some(chain),
    };
    let watch = starting.chain().watch();
    core.set_starting(watch.clone());
    // Primed before it is linked: a FLUSH_STOP (a seek racing the switch)
    // must not reach a child that has no caps yet.
    let elements = &starting.chain().elements;
    let started = super::chain::start(elements)
        .and_then(|()| super::chain::prime(core.sinkpad(), elements, None))
        .and_then(|()| match watch.as_ref().and_then(|w| w.failure()) {
            Some(failure) => Err(failure),
            None => Ok(()),
        });
    // The hardware child has opened its session, or failed to.
    drop(new.held.take());
    started?;
    let replay = retire_old_chain(guard, starting.chain())?;
    let chain = starting.took_over();
    core.set_current(watch);
    // Only now: until the new watch is in place, the new chain's errors are
    // caught as a starting chain's.
    core.set_starting(None);
    let report = SwitchReport {
        replayed: replay.units.len() as u64,
        lost: replay.lost,
        first_running_time: running_time(
            pad.upcast_ref(),
            replay.units.first().and_then(|f| f.buffer.pts()),
        ),
    };
    let last = chain.last().clone();
    take_over_state(guard, chain, new, input_caps, &replay)?;
    Ok(Switched {
        report,
        replay,
        last,
    })
}

/// Stops the chain working now while still linked (what it outputs
/// meanwhile reaches downstream and settles the window; its watch stays in
/// place meanwhile: an error it posts while stopping is its own), puts
/// `chain` in its place and releases the old slot. Returns what `chain` is fed.
fn retire_old_chain<K: Kind>(guard: &K, chain: &Chain) -> Result<Replay<Frame>, String> {
    let core = guard.core();
    let (old_elements, old_slot) = core
        .with_state(|state| (state.elements.clone(), state.slot.take()))
        .ok_or("the stream ended")?;
    for element in &old_elements {
        super::chain::stop(element);
    }
    let old_watch = core.watches.lock().current.take();
    let replay = old_watch.as_deref().map(|w| w.take_replay());
    drop(old_watch);
    // What the new chain sends until its first output may only repeat what
    // downstream has: the switch is invisible in the stream.
    core.continuity.expect_replacement();
    let attached = core.attach(chain);
    let bin = guard.element().downcast::<gst::Bin>().unwrap();
    let _ = bin.remove_many(&old_elements);
    // Its child is in NULL: the VPU session is closed.
    drop(old_slot);
    if let Err(err) = attached {
        // Past the point of no return: nothing is left to work with (the
        // new chain goes with its `Starting`).
        core::teardown(guard);
        return Err(format!("cannot link the new chain: {}", err.why()));
    }
    Ok(replay.unwrap_or_else(|| Replay::all(Vec::new(), 0)))
}

/// Makes the new chain the state's.
fn take_over_state<K: Kind>(
    guard: &K,
    chain: Chain,
    new: Replacement,
    caps: gst::Caps,
    replay: &Replay<Frame>,
) -> Result<(), String> {
    let mut state = guard.core().state.lock();
    let Some(old) = state.as_mut() else {
        drop(state);
        // The stream stopped meanwhile: the new chain goes too.
        let bin = guard.element().downcast::<gst::Bin>().unwrap();
        super::chain::remove(&bin, &chain.elements);
        return Err("the stream ended".into());
    };
    let mut reclaim = old.reclaim.clone();
    if new.failure.is_some() {
        reclaim.hardware_failed(monotonic_now());
    }
    let new_state = State {
        elements: chain.elements,
        factory: chain.factory,
        hardware: new.role == Role::Hardware,
        seen: new.seen,
        caps,
        slot: new.slot,
        switches: old.switches.saturating_add(1),
        frames_lost: old.frames_lost + replay.lost,
        awaiting_keyframe: replay.needs_keyframe,
        reclaim,
        untold: None,
    };
    let old_state = state.replace(new_state);
    drop(state);
    // The old state's elements are out of the bin: their last references
    // go after the lock (an element's dispose may call back into the bin).
    drop(old_state);
    Ok(())
}

/// Tells the application, then feeds the new chain what the old one never
/// output. `flushes` is the flush count sampled before the chain was
/// replaced: a flush at any point since (also one made while the old chain
/// was retired, after its frames were taken) makes them stale.
pub fn complete_switch<K: Kind>(
    guard: &K,
    pad: &gst::GhostPad,
    reason: Reason,
    failure: Option<&str>,
    switched: Switched,
    flushes: u64,
    push: Push<K>,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let core = guard.core();
    let Switched {
        report,
        replay,
        last,
    } = switched;
    let factory = core.with_state(|s| s.factory.clone()).unwrap_or_default();
    let announcement = Announcement {
        reason,
        failure: failure.map(str::to_string),
        report,
        factory: factory.clone(),
    };
    if core.deferring.load(Ordering::SeqCst) {
        core.with_state(|state| state.untold = Some(announcement));
    } else {
        announce(guard, &announcement);
    }
    if core.flushes() != flushes {
        // The stream was flushed meanwhile (an application seeking from a
        // sync handler as it heard of the switch, in this very thread): the
        // frames in hand belong to the old segment. Ok, not FLUSHING: a
        // source that performed the seek inside this push goes on with the
        // new segment only if the push succeeds.
        gst::debug!(
            K::cat(),
            obj = guard.element(),
            "flushed during the switch: {} frames dropped",
            replay.units.len()
        );
        return Ok(gst::FlowSuccess::Ok);
    }
    gst::info!(
        K::cat(),
        obj = guard.element(),
        "switched to {factory} ({}), replaying {} frames",
        reason.as_str(),
        replay.units.len()
    );
    drop_output_until(&last, replay.output_until);
    drop(replay.released);
    let Some(internal) = pad.internal() else {
        return Err(gst::FlowError::Flushing);
    };
    guard.before_replay(&internal);
    self::replay(guard, pad, &internal, replay.units, push)
}

/// Sends `frames` to the new chain, each under the caps it was first given
/// under (a caps change may have happened while they were in flight), then
/// the caps in force again.
fn replay<K: Kind>(
    guard: &K,
    pad: &gst::GhostPad,
    internal: &gst::ProxyPad,
    frames: Vec<Frame>,
    push: Push<K>,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let current = pad.current_caps();
    let mut in_force = current.clone();
    let mut result = Ok(gst::FlowSuccess::Ok);
    for frame in frames {
        if frame.caps.is_some() && frame.caps != in_force {
            in_force = frame.caps;
            internal.push_event(gst::event::Caps::new(in_force.as_ref().unwrap()));
        }
        result = push(guard, pad, Input::Buffer(frame.buffer));
        if result.is_err() {
            break;
        }
    }
    if let Some(current) = current.filter(|c| Some(c) != in_force.as_ref()) {
        internal.push_event(gst::event::Caps::new(&current));
    }
    result
}

/// Tells the application of a switch: a WARNING when the old chain failed,
/// the decision message, the read-only properties, and that the latency
/// changed with the child.
pub fn announce<K: Kind>(guard: &K, a: &Announcement) {
    let settings = guard.settings();
    if let Some(failure) = &a.failure {
        guard.warn_failure(&settings, failure, a);
    }
    core::post_decision(guard, &settings, a.reason, Some(&a.report));
    core::notify_chain_properties(guard);
    super::live::post_latency_changed(&guard.element());
}

/// Drops what the chain ending in `last` outputs at or before `until` (the
/// old chain output it already), then gets out of the way.
fn drop_output_until(last: &gst::Element, until: Option<u64>) {
    let Some(until) = until else { return };
    last.static_pad("src").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_FLUSH,
        move |pad, info| {
            let Some(buffer) = info.buffer() else {
                // A flush: running times start anew, nothing was output yet.
                return gst::PadProbeReturn::Remove;
            };
            match running_time(pad, buffer.pts()) {
                Some(t) if t.nseconds() <= until => gst::PadProbeReturn::Drop,
                _ => gst::PadProbeReturn::Remove,
            }
        },
    );
}
