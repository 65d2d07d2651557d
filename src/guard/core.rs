// SPDX-License-Identifier: MPL-2.0
//! The state a guard keeps of its stream and chain, shared by both guards,
//! and the steps every path takes: putting the first chain in place,
//! telling the decision, counting the VPU, tearing down.
//!
//! Three mutexes (parking_lot), never two held at once: the element's
//! `settings` (only cloned out), `state` and `watches`. Nothing calls into
//! GStreamer with one of them held, and what may hold the last reference of
//! an element (a state, a watch) is dropped after its lock.

use gst::prelude::*;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use super::kind::{Announcement, Chain, ChainError, DecideError, Decided, Kind, Role, Seen};
use super::watch::ChainWatch;
use crate::metrics::{self, GuardStats};
use crate::vpu::budget::{self, Patience, VpuCount};
use crate::vpu::decision::Reason;
use crate::vpu::ledger::Slot;
use crate::vpu::reclaim::ReclaimSchedule;

/// The chain working for the current stream; None until the first CAPS
/// event and again after the bin went back to READY.
pub struct State {
    /// In stream order.
    pub elements: Vec<gst::Element>,
    pub factory: String,
    pub hardware: bool,
    pub seen: Seen,
    /// The input caps in force: a reclaim counts the stream at its size now.
    pub caps: gst::Caps,
    /// Held from the hardware child's start until it is back in NULL.
    pub slot: Option<Slot>,
    /// Child changes in this stream (failover, reclaim).
    pub switches: u32,
    /// Frames no child could output, over the stream's switches.
    pub frames_lost: u64,
    /// A switch found no keyframe to start from: input is dropped (and
    /// counted lost) until the next one.
    pub awaiting_keyframe: bool,
    pub reclaim: ReclaimSchedule,
    /// A switch made off the streaming thread, to be told once the stream
    /// lock is released.
    pub untold: Option<Announcement>,
}

/// The chain working now and a replacement while it starts.
pub struct Watches<W> {
    /// The chain working now, while the guard follows it.
    pub current: Option<Arc<ChainWatch<W>>>,
    /// A replacement chain while it starts: its errors are the guard's too.
    pub starting: Option<Arc<ChainWatch<W>>>,
}

impl<W> Default for Watches<W> {
    fn default() -> Self {
        Watches {
            current: None,
            starting: None,
        }
    }
}

/// What both guards keep beside their settings.
pub struct Core<W> {
    pub state: Mutex<Option<State>>,
    pub watches: Mutex<Watches<W>>,
    /// Downstream returned an error: a flow error the child passes on then
    /// is not the child's own failure.
    pub downstream_error: AtomicBool,
    pub warned_unreadable: AtomicBool,
    /// Set from PAUSED->READY until the next READY->PAUSED: a streaming
    /// thread waiting for the decision lock gives up, so the state change
    /// (which takes the stream lock that thread holds) is not held up.
    pub stopping: AtomicBool,
    /// Set while a chain is linked to the ghost pads.
    pub rebuilding: AtomicBool,
    /// FLUSH_STOPs seen: a switch that saw one happen drops what it held.
    pub flushes: AtomicU64,
    /// Set while a failover runs off the streaming thread, holding the
    /// stream lock: its announcement waits until the lock is released.
    pub deferring: AtomicBool,
    pub sinkpad: OnceLock<gst::GhostPad>,
    pub srcpad: OnceLock<gst::GhostPad>,
    /// Keeps what leaves `srcpad` one stream across switches.
    pub continuity: Arc<super::stream_events::Continuity>,
    /// Every decision since creation: the `stats` property and the metrics.
    /// A leaf lock, held only to record or clone.
    pub stats: Mutex<GuardStats>,
}

impl<W> Default for Core<W> {
    fn default() -> Self {
        Core {
            state: Mutex::new(None),
            watches: Mutex::new(Watches::default()),
            downstream_error: AtomicBool::new(false),
            warned_unreadable: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            rebuilding: AtomicBool::new(false),
            flushes: AtomicU64::new(0),
            deferring: AtomicBool::new(false),
            sinkpad: OnceLock::new(),
            srcpad: OnceLock::new(),
            continuity: Arc::default(),
            stats: Mutex::new(GuardStats::default()),
        }
    }
}

impl<W: super::watch::Coverage + std::fmt::Debug> Core<W> {
    pub fn sinkpad(&self) -> &gst::GhostPad {
        self.sinkpad.get().unwrap()
    }

    pub fn srcpad(&self) -> &gst::GhostPad {
        self.srcpad.get().unwrap()
    }

    pub fn current_watch(&self) -> Option<Arc<ChainWatch<W>>> {
        self.watches.lock().current.clone()
    }

    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A field of the state, None when stopped.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        self.state.lock().as_mut().map(f)
    }

    /// Sets `starting` (None to stop watching one); the one before goes
    /// after the lock.
    pub fn set_starting(&self, watch: Option<Arc<ChainWatch<W>>>) {
        let previous = std::mem::replace(&mut self.watches.lock().starting, watch);
        drop(previous);
    }

    pub fn set_current(&self, watch: Option<Arc<ChainWatch<W>>>) {
        let previous = std::mem::replace(&mut self.watches.lock().current, watch);
        drop(previous);
    }

    /// Makes the chain the one the ghost pads lead to.
    pub fn attach(&self, chain: &Chain) -> Result<(), ChainError> {
        super::chain::attach(
            self.sinkpad(),
            self.srcpad(),
            &chain.elements,
            &self.rebuilding,
        )
        .map_err(ChainError::Config)
    }

    /// The guard's ghost pads saw a flush start: an EOS waiting for the
    /// chain looks at the pad's flushing flag again.
    pub fn flush_started(&self) {
        if let Some(watch) = self.current_watch() {
            watch.wake();
        }
    }

    /// Nothing from before a flush is to be processed again, and a
    /// downstream error is over.
    pub fn flush_stopped(&self) {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.downstream_error.store(false, Ordering::SeqCst);
        if let Some(watch) = self.current_watch() {
            watch.flushed();
        }
    }

    /// READY->PAUSED and PAUSED->READY, before the children change.
    pub fn state_changing(&self, transition: gst::StateChange) {
        match transition {
            gst::StateChange::ReadyToPaused => {
                self.stopping.store(false, Ordering::SeqCst);
                self.downstream_error.store(false, Ordering::SeqCst);
            }
            gst::StateChange::PausedToReady => {
                self.stopping.store(true, Ordering::SeqCst);
                // An EOS waiting for the chain to drain gives up.
                self.flush_started();
            }
            _ => (),
        }
    }
}

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
        core.continuity.reset();
        // Only now, with the child in NULL, is its VPU session closed.
        drop(state.slot);
        gst::debug!(K::cat(), obj = bin, "removed the {} chain", state.factory);
    }
    super::chain::remove_all(&bin);
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
    let count = budget::count(K::budget(settings), patience, || core.stopping()).map_err(
        |err| match err.to_error_message() {
            Some(message) => DecideError::Failed(message),
            None => DecideError::Stopping,
        },
    )?;
    if let Some(warning) = &count.warning {
        super::post_count_warning(&guard.element(), K::GUARD, warning, &core.warned_unreadable);
    }
    Ok(count)
}
