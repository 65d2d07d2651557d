// SPDX-License-Identifier: MPL-2.0
//! EOS while a hardware child may still fail on the frames it holds.

use gst::prelude::*;
use std::time::Duration;

use super::failover::replace_failed;
use super::kind::Kind;
use super::watch::ChainWatch;

/// How long EOS waits for a hardware child that outputs nothing more while
/// draining before EOS is taken as gone through (MPP children output every
/// frame within milliseconds; a slow one that keeps outputting is waited for).
const EOS_WAIT_FOR_HARDWARE: Duration = Duration::from_secs(3);

/// EOS on the sink pad. It goes to the chain itself, not through the sink
/// pad's proxy (which would then refuse the frames a replacement needs), and
/// waits until it came out or the chain failed; on failure the replacement
/// gets the frames and then EOS.
pub fn sink_eos<K: Kind>(guard: &K, pad: &gst::GhostPad, event: gst::Event) -> bool {
    let element = guard.element();
    let forward = |event| gst::Pad::event_default(pad, Some(&element), event);
    let Some(watch) = guard.core().current_watch() else {
        return forward(event);
    };
    if !watch.handles_failure() {
        watch.settle_eos();
        return forward(event);
    }
    if watch.failure().is_none() {
        let Some(target) = pad.target() else {
            return forward(event);
        };
        // A chain that failed refuses EOS; its failure was posted first.
        let sent = target.send_event(event.clone());
        if sent {
            wait_for_eos_out_or_failure(guard, pad, &watch);
        }
        if watch.eos_out() || watch.failure().is_none() {
            watch.settle_eos();
            return sent;
        }
    }
    let failure = watch.failure().unwrap_or_default();
    let flushes = guard.core().flushes();
    if replace_failed(guard, pad, &watch, &failure).is_err() {
        return false;
    }
    if guard.core().flushes() != flushes {
        // A seek flushed the stream this EOS ended.
        return true;
    }
    // Into the replacement, through the proxy this time.
    forward(event)
}

fn wait_for_eos_out_or_failure<K: Kind>(
    guard: &K,
    pad: &gst::GhostPad,
    watch: &ChainWatch<K::Window>,
) {
    watch.wait_for_eos_out(pad.upcast_ref(), EOS_WAIT_FOR_HARDWARE, || {
        guard.core().stopping()
    });
    if !watch.eos_out() && watch.failure().is_none() {
        gst::warning!(
            K::cat(),
            obj = guard.element(),
            "EOS did not come out of {}: no output for {EOS_WAIT_FOR_HARDWARE:?}",
            watch.child.name()
        );
    }
}
