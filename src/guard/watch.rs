// SPDX-License-Identifier: MPL-2.0
//! What a guard knows of the child chain that is working now (an encoder or
//! a decoder): whether it has produced output, whether it failed, and what it
//! was given that a replacement would need, in a window of the guard's kind.

use gst::prelude::*;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::frame::{Frame, Replay};
use super::input::Input;

/// What a watch keeps of the chain's input (the guard's window), and how
/// output settles it. What each call returns is released: dropped after the
/// window's lock, since the last reference of an upstream buffer returns it
/// to its pool.
pub trait Coverage: Default + Send + 'static {
    /// A frame given to the chain at this running time.
    fn remember(&mut self, running_time: Option<u64>, frame: Frame) -> Vec<Frame>;
    /// An output buffer with this running time left the chain.
    fn cover(&mut self, running_time: Option<u64>) -> Vec<Frame>;
    /// Nothing is pending any more: EOS came out, or a flush.
    fn clear(&mut self) -> Vec<Frame>;
    /// What a replacement of the chain is fed; the window is empty after.
    fn take_replay(&mut self) -> Replay<Frame>;
}

/// How long the watch keeps frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Until the chain's first output: a hardware child that fails before it
    /// could not start, and the software child gets every frame.
    UntilFirstOutput,
    /// For the whole stream: the chain may be replaced mid-stream (failover,
    /// reclaim) and its replacement must get what never came out.
    WholeStream,
}

#[derive(Debug)]
pub struct ChainWatch<W> {
    /// The child the chain is there for: its ERRORs are the chain's.
    pub child: gst::Element,
    pub hardware: bool,
    pub keep: Keep,
    output_seen: AtomicBool,
    /// Buffers output so far: a chain still draining makes progress.
    outputs: AtomicU64,
    eos_out: AtomicBool,
    /// Set once EOS went in and its wait is over: a failure after it can no
    /// longer be recovered from, so it goes to the application.
    eos_settled: AtomicBool,
    /// Times `wake` was called: a waiter returns when it changes.
    wakes: AtomicU64,
    failure: Mutex<Option<String>>,
    /// Signalled, with `failure` locked, on every output, EOS, failure and
    /// wake: what `wait_for_change` waits on.
    changed: Condvar,
    window: Mutex<W>,
}

/// Where a chain stood, for `wait_for_change`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    outputs: u64,
    wakes: u64,
}

impl<W: Coverage + std::fmt::Debug> ChainWatch<W> {
    /// Watches the chain whose last element is `last`: its output covers
    /// what `window` holds.
    pub fn new(child: gst::Element, hardware: bool, keep: Keep, last: &gst::Element) -> Arc<Self> {
        let watch = Arc::new(ChainWatch {
            child,
            hardware,
            keep,
            output_seen: AtomicBool::new(false),
            outputs: AtomicU64::new(0),
            eos_out: AtomicBool::new(false),
            eos_settled: AtomicBool::new(false),
            wakes: AtomicU64::new(0),
            failure: Mutex::new(None),
            changed: Condvar::new(),
            window: Mutex::new(W::default()),
        });
        let weak = Arc::downgrade(&watch);
        last.static_pad("src").unwrap().add_probe(
            gst::PadProbeType::BUFFER
                | gst::PadProbeType::BUFFER_LIST
                | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |pad, info| Self::on_output(&weak, pad, info),
        );
        watch
    }

    fn on_output(
        weak: &Weak<Self>,
        pad: &gst::Pad,
        info: &gst::PadProbeInfo,
    ) -> gst::PadProbeReturn {
        let Some(watch) = weak.upgrade() else {
            return gst::PadProbeReturn::Remove;
        };
        match &info.data {
            Some(gst::PadProbeData::Buffer(buffer)) => {
                watch.covered(running_time(pad, buffer.pts()))
            }
            Some(gst::PadProbeData::BufferList(list)) => list
                .iter()
                .for_each(|b| watch.covered(running_time(pad, b.pts()))),
            // Elements push EOS after a fatal flow error (queue does), with
            // the sticky events before it (a segment without caps when the
            // failure came before any output): what a failed chain sends is
            // not the stream's, which its replacement carries on.
            Some(gst::PadProbeData::Event(_))
                if watch.handles_failure() && watch.failure().is_some() =>
            {
                // Handled: consumed here (returning Drop for an event trips
                // a NULL unref with gstreamer-rs).
                return gst::PadProbeReturn::Handled;
            }
            Some(gst::PadProbeData::Event(event)) if event.type_() == gst::EventType::Eos => {
                watch.covered_all();
                watch.eos_out.store(true, Ordering::SeqCst);
                watch.signal();
            }
            _ => (),
        }
        gst::PadProbeReturn::Ok
    }

    fn covered(&self, running_time: Option<gst::ClockTime>) {
        self.output_seen.store(true, Ordering::SeqCst);
        self.outputs.fetch_add(1, Ordering::SeqCst);
        let released = self.window.lock().cover(running_time.map(|t| t.nseconds()));
        // The last reference of an upstream buffer returns it to its pool:
        // dropped after the lock.
        drop(released);
        self.signal();
    }

    /// Wakes a `wait_for_change`. Taking the lock orders the change made
    /// before it against a waiter that is about to sleep.
    fn signal(&self) {
        let _failure = self.failure.lock();
        self.changed.notify_all();
    }

    /// Where the chain stands now.
    pub fn progress(&self) -> Progress {
        Progress {
            outputs: self.outputs(),
            wakes: self.wakes.load(Ordering::SeqCst),
        }
    }

    /// Blocks until the chain moved on from `seen` (an output, EOS out, a
    /// failure, a `wake`), at most `timeout`.
    pub fn wait_for_change(&self, seen: Progress, timeout: Duration) {
        let mut failure = self.failure.lock();
        if failure.is_none() && !self.eos_out() && self.progress() == seen {
            self.changed.wait_for(&mut failure, timeout);
        }
    }

    /// Blocks (no polling) until EOS came out of the chain, it failed, `pad`
    /// started flushing, `stop` says so (checked at each `wake`), or the
    /// chain output nothing for `quiet`.
    pub fn wait_for_eos_out(&self, pad: &gst::Pad, quiet: Duration, stop: impl Fn() -> bool) {
        let mut seen = self.progress();
        let mut deadline = std::time::Instant::now() + quiet;
        while !self.eos_out()
            && self.failure().is_none()
            && !pad.pad_flags().contains(gst::PadFlags::FLUSHING)
            && !stop()
        {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            self.wait_for_change(seen, deadline - now);
            let progress = self.progress();
            if progress != seen {
                seen = progress;
                deadline = std::time::Instant::now() + quiet;
            }
        }
    }

    /// Makes a waiter look again (a flush started).
    pub fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.signal();
    }

    fn covered_all(&self) {
        let released = self.window.lock().clear();
        drop(released);
    }

    /// Takes what a replacement of this chain is fed.
    pub fn take_replay(&self) -> Replay<Frame> {
        self.window.lock().take_replay()
    }

    /// Keeps a reference (no copy) to each buffer about to go to the chain
    /// through `pad`. A buffer without a PTS goes by its DTS.
    pub fn remember(&self, pad: &gst::Pad, input: &Input) {
        let segment = time_segment(pad);
        let caps = pad.current_caps();
        let frames: Vec<_> = input
            .buffers()
            .into_iter()
            .map(|buffer| {
                let running_time = segment
                    .as_ref()
                    .and_then(|s| s.to_running_time(buffer.pts().or(buffer.dts())))
                    .map(|t| t.nseconds());
                let frame = Frame {
                    buffer,
                    caps: caps.clone(),
                };
                (running_time, frame)
            })
            .collect();
        let released: Vec<_> = self.with_window(|window| {
            frames
                .into_iter()
                .flat_map(|(running_time, frame)| window.remember(running_time, frame))
                .collect()
        });
        drop(released);
    }

    /// Runs `f` on the window, with its lock held: `f` must not call into
    /// GStreamer nor drop buffers (return them instead).
    pub fn with_window<R>(&self, f: impl FnOnce(&mut W) -> R) -> R {
        f(&mut self.window.lock())
    }

    /// Whether frames still need remembering.
    pub fn keeps_frames(&self) -> bool {
        self.keep == Keep::WholeStream || !self.output_seen()
    }

    /// A flush: nothing from before it is to be processed, and the stream may
    /// start again after an EOS.
    pub fn flushed(&self) {
        self.covered_all();
        self.eos_out.store(false, Ordering::SeqCst);
        self.eos_settled.store(false, Ordering::SeqCst);
    }

    pub fn outputs(&self) -> u64 {
        self.outputs.load(Ordering::SeqCst)
    }

    pub fn output_seen(&self) -> bool {
        self.output_seen.load(Ordering::SeqCst)
    }

    pub fn eos_out(&self) -> bool {
        self.eos_out.load(Ordering::SeqCst)
    }

    pub fn settle_eos(&self) {
        self.eos_settled.store(true, Ordering::SeqCst);
    }

    /// Whether a failure of this chain is the guard's to handle: a hardware
    /// child's before its first output (it could not start), and after it
    /// when the chain is switchable (failover), until EOS has gone through.
    pub fn handles_failure(&self) -> bool {
        self.hardware
            && !self.eos_settled.load(Ordering::SeqCst)
            && (self.keep == Keep::WholeStream || !self.output_seen())
    }

    pub fn record_failure(&self, what: String) {
        self.failure.lock().get_or_insert(what);
        self.changed.notify_all();
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }
}

/// The time segment in force on `pad`.
pub fn time_segment(pad: &gst::Pad) -> Option<gst::FormattedSegment<gst::ClockTime>> {
    let event = pad.sticky_event::<gst::event::Segment>(0)?;
    event.segment().downcast_ref::<gst::ClockTime>().cloned()
}

/// Output is matched to input by running time: children may move their
/// output's timestamps and segment together (x264enc and x265enc add 1000
/// hours so that DTS never goes below zero).
pub fn running_time(pad: &gst::Pad, pts: Option<gst::ClockTime>) -> Option<gst::ClockTime> {
    time_segment(pad)?.to_running_time(pts?)
}

/// An ERROR posted from inside one of `watches`' chains, when the guard
/// handles that chain's failures: recorded in its watch, and what it said
/// returned (the message is then the guard's, not the application's). It is
/// only recorded: this may be the child's own thread, which cannot stop the
/// child; the streaming thread replaces it. `downstream_failed`: downstream
/// failed first (recorded in this same thread before the child saw the
/// error flow), so the child's ERROR is downstream's and goes out as it is.
pub fn claim_failure<W: Coverage + std::fmt::Debug>(
    message: &gst::Message,
    watches: [Option<Arc<ChainWatch<W>>>; 2],
    downstream_failed: bool,
) -> Option<String> {
    let gst::MessageView::Error(err) = message.view() else {
        return None;
    };
    if downstream_failed {
        return None;
    }
    let src = message.src()?;
    let watch = watches.into_iter().flatten().find(|watch| {
        watch.handles_failure() && super::is_same_or_inside(src, watch.child.upcast_ref())
    })?;
    let what = format!(
        "{} ({})",
        err.error(),
        err.debug().as_deref().unwrap_or("no details")
    );
    watch.record_failure(what.clone());
    Some(what)
}
