// SPDX-License-Identifier: MPL-2.0
//! The steps every path of both guards takes: putting the first chain in
//! place, telling the decision, counting the VPU, changing state, tearing
//! down. The state they work on, and its lock rules, are in `state`.

use gst::prelude::*;
use std::sync::LazyLock;
use std::time::Duration;

use super::chain::{Chain, ChainError, Role};
use super::choice::{DecideError, Decided, Seen};
use super::kind::Kind;
use super::state::State;
use crate::metrics;
use crate::vpu::budget::{self, Patience, VpuCount};
use crate::vpu::decision::Reason;
use crate::vpu::ledger::Slot;
use crate::vpu::reclaim::ReclaimSchedule;

/// Time on a monotonic clock, for the reclaim schedule.
pub fn monotonic_now() -> Duration {
    static START: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);
    START.elapsed()
}

/// Puts the stream's first chain in place: linked to the ghost pads, in the
/// state, then started. A chain that cannot start is torn down.
pub fn install_first<K: Kind>(
    guard: &K,
    chain: &Chain,
    caps: &gst::CapsRef,
    slot: Option<Slot>,
    seen: &Seen,
    reclaim_interval: gst::ClockTime,
) -> Result<(), ChainError> {
    let core = guard.core();
    core.attach(chain)?;
    let watch = chain.watch();
    core.set_current(watch.clone());
    let new_state = Some(State {
        elements: chain.elements.clone(),
        factory: chain.factory.clone(),
        hardware: chain.role == Role::Hardware,
        seen: seen.clone(),
        caps: caps.to_owned(),
        slot,
        switches: 0,
        frames_lost: 0,
        awaiting_keyframe: false,
        reclaim: ReclaimSchedule::new(Duration::from(reclaim_interval), monotonic_now()),
        untold: None,
    });
    let previous = std::mem::replace(&mut *core.state.lock(), new_state);
    drop(previous);
    let failure = super::chain::start(&chain.elements)
        .and_then(|()| match K::PRIMES_FIRST_CHAIN {
            true => super::chain::prime(core.sinkpad(), &chain.elements, Some(caps)),
            false => Ok(()),
        })
        .err()
        .or_else(|| watch.and_then(|w| w.failure()));
    if let Some(why) = failure {
        teardown(guard);
        return Err(ChainError::Start(why));
    }
    notify_chain_properties(guard);
    Ok(())
}

/// A state change of the guard bin around its parent's (`parent`): the
/// settings checked at NULL->READY, the chain released once the children
/// are READY, so the next stream decides anew.
pub fn change_state<K: Kind>(
    guard: &K,
    transition: gst::StateChange,
    parent: impl FnOnce(gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError>,
) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
    if transition == gst::StateChange::NullToReady {
        super::validate::validate_settings(guard).map_err(|err| {
            guard.element().post_error_message(err);
            gst::StateChangeError
        })?;
    }
    guard.core().state_changing(transition);
    let result = parent(transition);
    if matches!(
        transition,
        gst::StateChange::PausedToReady | gst::StateChange::ReadyToNull
    ) {
        teardown(guard);
        guard.core().stats.lock().stopped();
    }
    result
}

/// Stops and removes the chain, then releases its VPU slot.
pub fn teardown<K: Kind>(guard: &K) {
    let core = guard.core();
    let state = core.state.lock().take();
    // Dropped outside the lock: it holds the child and frames.
    let watch = core.watches.lock().current.take();
    drop(watch);
    let bin = guard.element().downcast::<gst::Bin>().unwrap();
    if let Some(state) = state {
        let _ = core.sinkpad().set_target(None::<&gst::Pad>);
        let _ = core.srcpad().set_target(None::<&gst::Pad>);
        super::chain::remove(&bin, &state.elements);
        // Only now, with the child in NULL, is its VPU session closed.
        drop(state.slot);
        gst::debug!(K::cat(), obj = bin, "removed the {} chain", state.factory);
    }
    super::chain::remove_all(&bin);
    // The next stream is another: nothing to carry over, liveness asked anew.
    core.continuity.reset();
    core.forget_liveness();
}

pub fn notify_chain_properties<K: Kind>(guard: &K) {
    let element = guard.element();
    for name in K::chain_properties() {
        element.notify(name);
    }
}

/// Posts the decision message for the chain now in place and records it.
/// `switch` tells what a mid-stream switch did with the frames in flight.
pub fn post_decision<K: Kind>(
    guard: &K,
    settings: &K::Settings,
    reason: Reason,
    switch: Option<&super::frame::SwitchReport>,
) {
    let decided = guard.core().with_state(|state| Decided {
        factory: state.factory.clone(),
        hardware: state.hardware,
        seen: state.seen.clone(),
        switches: state.switches,
        reason,
    });
    let decided = decided.expect("posted after a chain was built");
    let element = guard.element();
    let budget = K::budget(settings);
    gst::info!(
        K::cat(),
        obj = element,
        "chose {} (hardware: {}, reason: {}, sessions {} of {}, {} + {} px/s of {}, switch {switch:?})",
        decided.factory,
        decided.hardware,
        reason.as_str(),
        decided.seen.sessions,
        budget.max_sessions,
        decided.seen.pixel_rate,
        decided.seen.stream_pixel_rate,
        budget.max_pixel_rate
    );
    guard.core().stats.lock().record(metrics::Decision {
        factory: decided.factory.clone(),
        hardware: decided.hardware,
        reason: reason.as_str(),
        sessions: decided.seen.sessions,
        max_sessions: budget.max_sessions,
        pixel_rate: decided.seen.pixel_rate,
        source: decided.seen.source,
        load: decided.seen.load,
        switch: switch.map(|r| metrics::Switch {
            replayed: r.replayed,
            lost: r.lost,
        }),
    });
    let structure = guard.decision_structure(settings, &decided, switch);
    let _ = element.post_message(
        gst::message::Element::builder(structure)
            .src(&element)
            .build(),
    );
}

/// Counts the VPU under the decision lock (waiting as `patience` says),
/// saying on the bus what the count met.
pub fn count_vpu<K: Kind>(
    guard: &K,
    settings: &K::Settings,
    patience: Patience,
) -> Result<VpuCount, DecideError> {
    let core = guard.core();
    let hw_factory = K::hw_name(settings);
    let count = budget::count(K::budget(settings), hw_factory, patience, || {
        core.stopping()
    })
    .map_err(|err| match err.to_error_message() {
        Some(message) => DecideError::Failed(message),
        None => DecideError::Stopping,
    })?;
    if let Some(warning) = &count.warning {
        super::post_count_warning(&guard.element(), K::GUARD, warning, &core.warned_unreadable);
    }
    Ok(count)
}
