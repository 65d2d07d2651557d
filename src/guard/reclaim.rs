// SPDX-License-Identifier: MPL-2.0
//! Taking the hardware child back mid-stream: on a software chain with
//! `reclaim-interval` set, the listing is read once the schedule allows, and
//! the chain is switched to hardware when the budget has room.

use gst::prelude::*;

use super::chain::Role;
use super::choice::{RECLAIM_MODE, Replacement, Seen};
use super::core::{count_vpu, monotonic_now};
use super::input::Input;
use super::kind::Kind;
use super::switch::{complete_switch, replace_chain};
use super::watch::running_time;
use crate::vpu::budget::Patience;
use crate::vpu::decision::{self, Inputs, Outcome, Reason};

/// Reclaims when due. `input` is what is about to go in: the new chain's
/// first buffer when nothing is in flight.
pub fn reclaim_if_due<K: Kind>(
    guard: &K,
    pad: &gst::GhostPad,
    input: &Input,
) -> Result<(), gst::FlowError> {
    let core = guard.core();
    let now = monotonic_now();
    // Marked checked as soon as it is due, before the tests below: a chain
    // that cannot be reclaimed is looked at once per interval, not on every
    // buffer.
    let due = core.with_state(|state| {
        let due = !state.hardware && state.reclaim.due(now);
        if due {
            state.reclaim.checked(now);
        }
        due.then(|| {
            (
                state.factory.clone(),
                state.caps.clone(),
                state.seen.clone(),
            )
        })
    });
    let Some((factory, caps, seen)) = due.flatten() else {
        return Ok(());
    };
    let settings = guard.settings();
    let reclaimable = gst::ElementFactory::find(&factory)
        .is_some_and(|f| guard.switchable(&settings, Role::Software, &f));
    if !reclaimable || core.stopping() {
        gst::debug!(
            K::cat(),
            obj = guard.element(),
            "reclaim check: {factory} is not to be replaced by hardware"
        );
        return Ok(());
    }
    let Some(replacement) = reclaim_decision(guard, &settings, &caps, seen) else {
        return Ok(());
    };
    let flushes = core.flushes();
    match replace_chain(guard, pad, replacement) {
        Ok(mut switched) => {
            let next = running_time(pad.upcast_ref(), input.pts());
            let first = &mut switched.report.first_running_time;
            *first = first.or(next);
            let push = super::failover::push_watched;
            complete_switch(guard, pad, Reason::Reclaimed, None, switched, flushes, push)?;
            Ok(())
        }
        Err(why) => {
            core.with_state(|state| state.reclaim.hardware_failed(now));
            gst::element_warning!(
                guard.element(),
                gst::LibraryError::Init,
                (
                    "Hardware {} {} could not be taken back, staying on software",
                    K::GUARD.noun(),
                    K::hw_name(&settings)
                ),
                ["{}", why]
            );
            Ok(())
        }
    }
}

/// Counts the VPU without waiting for the decision lock; the hardware chain
/// to switch to when the budget has room for this stream.
fn reclaim_decision<K: Kind>(
    guard: &K,
    settings: &K::Settings,
    caps: &gst::CapsRef,
    seen: Seen,
) -> Option<Replacement> {
    let factory = guard.reclaim_factory(settings, caps)?;
    if K::budget(settings).hardware_absent(K::hw_name(settings), K::SESSION) {
        return None;
    }
    let count = count_vpu(guard, settings, Patience::TryOnce).ok()?;
    let inputs = Inputs {
        kind: K::GUARD,
        mode: RECLAIM_MODE,
        hw_available: true,
        downstream_takes_hw: true,
        downstream_takes_sw: true,
        vpu: count.view,
        budget: K::decision_budget(settings),
        stream_pixel_rate: K::stream_pixel_rate(caps),
    };
    let outcome = decision::decide(&inputs);
    let element = guard.element();
    gst::debug!(
        K::cat(),
        obj = element,
        "reclaim check: {:?}: {:?}",
        inputs,
        outcome
    );
    if !matches!(outcome, Outcome::Hardware(_)) {
        return None;
    }
    let session_file = count.session_file.map(|p| p.display().to_string());
    let held = count.held?;
    let slot = held
        .take_slot(&element.path_string(), K::SESSION, inputs.stream_pixel_rate)
        .inspect_err(|e| gst::warning!(K::cat(), obj = element, "cannot record a slot: {e}"))
        .ok()?;
    let counted = Seen::of(
        &inputs,
        session_file.unwrap_or(seen.session_file),
        count.source,
    );
    Some(Replacement {
        factory,
        role: Role::Hardware,
        slot: Some(slot),
        held: Some(held),
        seen: counted,
        failure: None,
    })
}
