// SPDX-License-Identifier: MPL-2.0
//! The decision for a new stream, written once for both guards: count the
//! VPU, decide, build the chosen chain, and fall back to the software child
//! when the hardware one cannot start.

use gst::prelude::*;

use super::chain::{ChainError, Role};
use super::choice::{Candidates, DecideError, Seen};
use super::core::{self as guard_core, count_vpu, monotonic_now};
use super::kind::Kind;
use crate::vpu::budget::{Held, Patience, VpuCount};
use crate::vpu::decision::{self, Inputs, Mode, Outcome, Reason};
use crate::vpu::ledger::Slot;

/// Takes the decision for a new stream and builds the chosen chain. Runs in
/// the CAPS event handler: a buffer reaching a target-less ghost pad would
/// be NOT_LINKED, so the chain must exist before the event is forwarded.
pub fn decide_and_build<K: Kind>(guard: &K, caps: &gst::CapsRef) -> Result<(), DecideError> {
    let settings = guard.settings();
    gst::debug!(K::cat(), obj = guard.element(), "deciding for {caps}");
    let mut candidates = guard.candidates(&settings, caps)?;
    if K::budget(&settings).hardware_absent(K::hw_name(&settings), K::SESSION) {
        // The source says the hardware is missing: as if not installed.
        candidates.hw = None;
        candidates.downstream_takes_hw = false;
    }
    let mode = K::mode(&settings);
    let count = if decision::needs_session_count(
        mode,
        candidates.hw.is_some(),
        candidates.downstream_takes_hw,
    ) {
        count_vpu(guard, &settings, Patience::LockTimeout)?
    } else {
        VpuCount::not_consulted()
    };
    let inputs = Inputs {
        kind: K::GUARD,
        mode,
        hw_available: candidates.hw.is_some(),
        downstream_takes_hw: candidates.downstream_takes_hw,
        downstream_takes_sw: candidates.downstream_takes_sw,
        vpu: count.view,
        budget: K::decision_budget(&settings),
        stream_pixel_rate: K::stream_pixel_rate(caps),
    };
    let outcome = decision::decide(&inputs);
    gst::info!(
        K::cat(),
        obj = guard.element(),
        "decision for {:?}: {:?}",
        inputs,
        outcome
    );
    let seen = Seen::of(&inputs, count.session_file_string(), count.source);
    let decided = Decided {
        settings: &settings,
        candidates: &candidates,
        caps,
        seen: &seen,
    };
    carry_out(guard, &decided, outcome, count.held).map_err(DecideError::Failed)
}

/// What a decision works from once taken.
struct Decided<'a, K: Kind> {
    settings: &'a K::Settings,
    candidates: &'a Candidates,
    caps: &'a gst::CapsRef,
    seen: &'a Seen,
}

/// Builds the chain the decision chose. `held` is the decision lock, held
/// until a hardware child has started (its session is open, or counted by
/// its slot).
fn carry_out<K: Kind>(
    guard: &K,
    d: &Decided<K>,
    outcome: Outcome,
    held: Option<Held>,
) -> Result<(), gst::ErrorMessage> {
    let (reason, held) = match outcome {
        Outcome::Fail(why) => return Err(no_choice(guard, d, &why)),
        Outcome::Software(reason) => {
            drop(held);
            let sw = d
                .candidates
                .sw
                .as_ref()
                .expect("decided for an installed child");
            build_or_error(guard, d, sw, None)?;
            guard_core::post_decision(guard, d.settings, reason, None);
            return Ok(());
        }
        Outcome::Hardware(reason) => (reason, held.expect("hardware needs the decision lock")),
    };
    let slot = take_slot(guard, &held, d.seen)?;
    let hw = d
        .candidates
        .hw
        .as_ref()
        .expect("decided for an installed child");
    let built = build_first_chain(guard, d.settings, hw, d.caps, Some(slot), d.seen);
    drop(held);
    match built {
        Ok(()) => {
            guard_core::post_decision(guard, d.settings, reason, None);
            Ok(())
        }
        Err(ChainError::Start(why)) if K::mode(d.settings) != Mode::Hardware => {
            software_after_start_failure(guard, d, &why)
        }
        Err(ChainError::Start(why)) => Err(guard.hardware_start_error(d.settings, hw, &why)),
        Err(err) => Err(err.into_message(K::GUARD, hw)),
    }
}

/// The ERROR when the decision found no child: the hardware one busy in
/// `mode=hardware`, else one downstream does not take.
fn no_choice<K: Kind>(guard: &K, d: &Decided<K>, why: &str) -> gst::ErrorMessage {
    let text = guard.no_choice_text(why);
    if K::mode(d.settings) == Mode::Hardware {
        gst::error_msg!(gst::ResourceError::Busy, ("{}", text))
    } else {
        gst::error_msg!(
            gst::CoreError::Negotiation,
            ("{}", text),
            ["downstream wants {}", d.candidates.downstream]
        )
    }
}

/// The stream's hardware slot, recorded in the ledger under the lock.
fn take_slot<K: Kind>(guard: &K, held: &Held, seen: &Seen) -> Result<Slot, gst::ErrorMessage> {
    let path = guard.element().path_string();
    held.take_slot(&path, K::SESSION, seen.stream_pixel_rate)
        .map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenReadWrite,
                (
                    "lock-dir: cannot record a hardware slot in '{}'",
                    held.dir().display()
                ),
                ["{}", e]
            )
        })
}

/// Builds the stream's first chain, links it to the ghost pads and starts
/// it. `slot` is Some for the hardware child.
pub fn build_first_chain<K: Kind>(
    guard: &K,
    settings: &K::Settings,
    factory: &gst::ElementFactory,
    caps: &gst::CapsRef,
    slot: Option<Slot>,
    seen: &Seen,
) -> Result<(), ChainError> {
    let role = match slot {
        Some(_) => Role::Hardware,
        None => Role::Software,
    };
    let chain = guard.create_chain(settings, factory, caps, role, false)?;
    let interval = K::reclaim_interval(settings);
    guard_core::install_first(guard, &chain, caps, slot, seen, interval)
}

fn build_or_error<K: Kind>(
    guard: &K,
    d: &Decided<K>,
    factory: &gst::ElementFactory,
    slot: Option<Slot>,
) -> Result<(), gst::ErrorMessage> {
    build_first_chain(guard, d.settings, factory, d.caps, slot, d.seen)
        .map_err(|err| err.into_message(K::GUARD, factory))
}

/// The hardware child could not start: the software child takes the stream,
/// and a reclaim waits its interval from now.
fn software_after_start_failure<K: Kind>(
    guard: &K,
    d: &Decided<K>,
    why: &str,
) -> Result<(), gst::ErrorMessage> {
    let sw = guard.start_failure_fallback(d.settings, d.candidates, d.caps, why)?;
    gst::element_warning!(
        guard.element(),
        gst::LibraryError::Init,
        (
            "Hardware {} {} failed to start, {} with {}",
            K::GUARD.noun(),
            K::hw_name(d.settings),
            K::GUARD.gerund(),
            sw.name()
        ),
        ["{}", why]
    );
    build_or_error(guard, d, &sw, None)?;
    let now = monotonic_now();
    guard
        .core()
        .with_state(|state| state.reclaim.hardware_failed(now));
    guard_core::post_decision(guard, d.settings, Reason::HwStartFailed, None);
    Ok(())
}
