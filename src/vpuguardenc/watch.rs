// SPDX-License-Identifier: MPL-2.0
//! What the guard knows of the encoder chain that is encoding now: whether it
//! has produced output, whether it failed, and which frames it was given that
//! have not come out yet.

use gst::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::window::{self, Window};

/// What arrives on the sink pad: both kinds go through the same watch.
#[derive(Debug, Clone)]
pub enum Input {
    Buffer(gst::Buffer),
    List(gst::BufferList),
}

impl Input {
    pub fn push<O: IsA<gst::Object>>(
        self,
        pad: &gst::GhostPad,
        parent: &O,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        match self {
            Input::Buffer(buffer) => gst::ProxyPad::chain_default(pad, Some(parent), buffer),
            Input::List(list) => gst::ProxyPad::chain_list_default(pad, Some(parent), list),
        }
    }

    /// The timestamp of the first frame.
    pub fn pts(&self) -> Option<gst::ClockTime> {
        match self {
            Input::Buffer(buffer) => buffer.pts(),
            Input::List(list) => list.get(0).and_then(|b| b.pts()),
        }
    }
}

/// A frame given to the chain, with the caps it was given under: a
/// replacement gets the caps again before frames from before a caps change.
#[derive(Debug)]
pub struct Frame {
    pub buffer: gst::Buffer,
    pub caps: Option<gst::Caps>,
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
pub struct ChainWatch {
    pub encoder: gst::Element,
    pub hardware: bool,
    pub keep: Keep,
    output_seen: AtomicBool,
    /// Buffers output so far: a chain still draining makes progress.
    outputs: AtomicU64,
    eos_out: AtomicBool,
    /// Set once EOS went in and its wait is over: a failure after it can no
    /// longer be recovered from, so it goes to the application.
    eos_settled: AtomicBool,
    failure: Mutex<Option<String>>,
    window: Mutex<Window<Frame>>,
}

impl ChainWatch {
    /// Watches the chain whose last element is `last`: its output covers
    /// frames in the window.
    pub fn new(
        encoder: gst::Element,
        hardware: bool,
        keep: Keep,
        last: &gst::Element,
    ) -> Arc<Self> {
        let watch = Arc::new(ChainWatch {
            encoder,
            hardware,
            keep,
            output_seen: AtomicBool::new(false),
            outputs: AtomicU64::new(0),
            eos_out: AtomicBool::new(false),
            eos_settled: AtomicBool::new(false),
            failure: Mutex::new(None),
            window: Mutex::new(Window::new(window::DEFAULT_CAPACITY)),
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
        weak: &Weak<ChainWatch>,
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
            }
            _ => (),
        }
        gst::PadProbeReturn::Ok
    }

    fn covered(&self, running_time: Option<gst::ClockTime>) {
        self.output_seen.store(true, Ordering::SeqCst);
        self.outputs.fetch_add(1, Ordering::SeqCst);
        let released = self
            .window
            .lock()
            .unwrap()
            .cover(running_time.map(|t| t.nseconds()));
        // The last reference of an upstream buffer returns it to its pool:
        // dropped after the lock.
        drop(released);
    }

    fn covered_all(&self) {
        let released = self.window.lock().unwrap().take();
        drop(released);
    }

    /// Keeps a reference (no copy) to each frame about to go to the chain
    /// through `pad`.
    pub fn remember(&self, pad: &gst::Pad, input: &Input) {
        let segment = time_segment(pad);
        let caps = pad.current_caps();
        let mut evicted = Vec::new();
        {
            let mut window = self.window.lock().unwrap();
            let mut keep = |buffer: &gst::Buffer| {
                let running_time = segment
                    .as_ref()
                    .and_then(|s| s.to_running_time(buffer.pts()))
                    .map(|t| t.nseconds());
                let frame = Frame {
                    buffer: buffer.clone(),
                    caps: caps.clone(),
                };
                evicted.extend(window.push(running_time, frame));
            };
            match input {
                Input::Buffer(buffer) => keep(buffer),
                Input::List(list) => list.iter_owned().for_each(|b| keep(&b)),
            }
        }
        drop(evicted);
    }

    /// Whether frames still need remembering.
    pub fn keeps_frames(&self) -> bool {
        self.keep == Keep::WholeStream || !self.output_seen()
    }

    /// Takes the frames that never came out, oldest first, and how many were
    /// let go because the window was full.
    pub fn take_uncovered(&self) -> (Vec<Frame>, u64) {
        self.window.lock().unwrap().take()
    }

    /// A flush: none of the frames is to be encoded, and the stream may
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
        self.failure.lock().unwrap().get_or_insert(what);
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap().clone()
    }
}

/// The time segment in force on `pad`.
fn time_segment(pad: &gst::Pad) -> Option<gst::FormattedSegment<gst::ClockTime>> {
    let event = pad.sticky_event::<gst::event::Segment>(0)?;
    event.segment().downcast_ref::<gst::ClockTime>().cloned()
}

/// Output is matched to input by running time: encoders may move their
/// output's timestamps and segment together (x264enc and x265enc add 1000
/// hours so that DTS never goes below zero).
pub fn running_time(pad: &gst::Pad, pts: Option<gst::ClockTime>) -> Option<gst::ClockTime> {
    time_segment(pad)?.to_running_time(pts?)
}
