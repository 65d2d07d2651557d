// SPDX-License-Identifier: MPL-2.0
//! The state a guard keeps of its stream and chain, shared by both guards.
//!
//! Three mutexes (parking_lot), never two held at once: the element's
//! `settings` (only cloned out), `state` and `watches`. Nothing calls into
//! GStreamer with one of them held, and what may hold the last reference of
//! an element (a state, a watch) is dropped after its lock.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::chain::{Chain, ChainError};
use super::choice::{Announcement, Seen};
use super::watch::ChainWatch;
use crate::metrics::GuardStats;
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
    /// Whether the stream is live, asked upstream once per stream (before
    /// its first chain): 0 not asked yet, 1 live, 2 not live.
    live: AtomicU8,
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
            live: AtomicU8::new(0),
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

    /// Whether the stream is live (`guard::live::upstream_is_live`), asked
    /// once per stream: a replacement built off the streaming thread, with
    /// the stream lock held, sends no query upstream.
    pub fn stream_is_live(&self) -> bool {
        match self.live.load(Ordering::SeqCst) {
            1 => true,
            2 => false,
            _ => {
                let live =
                    super::live::upstream_is_live(gst::prelude::Cast::upcast_ref(self.sinkpad()));
                self.live.store(if live { 1 } else { 2 }, Ordering::SeqCst);
                live
            }
        }
    }

    /// A new stream: its liveness is asked anew.
    pub fn forget_liveness(&self) {
        self.live.store(0, Ordering::SeqCst);
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
