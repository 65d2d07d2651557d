// SPDX-License-Identifier: MPL-2.0
//! One output's state, `src`'s or a tap's: where it reads in the window, how
//! far behind it runs, what it sent downstream and what it counted. What
//! differs between them is policy (see `Output`): `src` holds upstream back
//! by its `max-size-*` bounds and lands forward on a keyframe, a tap may be
//! turned off and moves back into the window.

use gst::prelude::*;

use super::Leaky;
use super::window::Seq;

/// Which output a reader feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The always `src` pad: its flow is upstream's, its levels are bounded.
    Src,
    /// A `tap_%u` request pad, its own branch.
    Tap,
}

pub struct Reader {
    pub output: Output,
    pub pad: gst::Pad,
    /// The pad's name, read once: the element's lock is never held while
    /// taking the pad's own object lock.
    pub name: String,
    pub delay: gst::ClockTime,
    pub active: bool,
    /// `no`: what it has not read is kept for it (live: up to a second past
    /// the window; not live: the input waits for it). `downstream`: it never
    /// holds the window or the input, and loses what leaves unread.
    pub leaky: Leaky,
    /// The next item of the window it sends.
    pub cursor: Seq,
    pub flushing: bool,
    /// Its pad is deactivated (released, or the element left PAUSED): a
    /// FLUSH_STOP meanwhile does not start its task again.
    pub deactivated: bool,
    /// The last result of pushing downstream; an error stops only this tap.
    pub flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// What its last move added to `delay` so that the running time it
    /// sends never goes back (a keyframe before the target was landed on).
    pub landed_early: gst::ClockTime,
    /// The output running time (input running time + shift) of the last
    /// buffer it sent in this stream.
    pub last_out: Option<u64>,
    /// The last SEGMENT sent, before the delay was added to it.
    pub out_segment: Option<gst::Event>,
    /// The delay added to `out_segment` when it was sent.
    pub out_shift: Option<gst::ClockTime>,
    /// After a move: the sticky events in force at the cursor go out first.
    pub resend_sticky: bool,
    /// Buffers before this place are skipped (already counted as dropped):
    /// `src` dropped them as late or over a bound; events there still go.
    pub skip_before: Seq,
    /// The next buffer sent must be a keyframe: deltas are skipped (and
    /// counted) until one comes, so that encoded video decodes from there.
    pub need_key: bool,
    /// Whether the GAP that lets downstream preroll while filling was sent.
    pub gap_sent: bool,
    pub clock_id: Option<gst::SingleShotClockId>,
    pub pushed: u64,
    pub dropped: u64,
}

/// What the pad properties show of a tap.
#[derive(Debug, Clone, Copy, Default)]
pub struct TapSnapshot {
    pub delay: gst::ClockTime,
    pub shift: gst::ClockTime,
    pub active: bool,
    pub leaky: Leaky,
    pub pushed: u64,
    pub dropped: u64,
}

impl Reader {
    pub fn new(output: Output, pad: gst::Pad, delay: gst::ClockTime, active: bool) -> Self {
        Reader {
            output,
            name: pad.name().to_string(),
            pad,
            delay,
            active,
            leaky: Leaky::No,
            landed_early: gst::ClockTime::ZERO,
            last_out: None,
            cursor: 0,
            flushing: true,
            deactivated: true,
            flow: Ok(gst::FlowSuccess::Ok),
            out_segment: None,
            out_shift: None,
            resend_sticky: true,
            skip_before: 0,
            need_key: false,
            gap_sent: false,
            clock_id: None,
            pushed: 0,
            dropped: 0,
        }
    }

    pub fn snapshot(&self) -> TapSnapshot {
        TapSnapshot {
            delay: self.delay,
            shift: self.shift(),
            active: self.active,
            leaky: self.leaky,
            pushed: self.pushed,
            dropped: self.dropped,
        }
    }

    /// Whether it reads the window now, so that what it has not read yet is
    /// kept for it (within the slack).
    pub fn reading(&self) -> bool {
        self.active && !self.flushing && self.flow.is_ok()
    }

    /// Whether the window keeps what it has not read yet, and (not live)
    /// the input waits for it: a leaky tap holds nothing back.
    pub fn holds_window(&self) -> bool {
        self.reading() && self.leaky == Leaky::No
    }

    /// Whether what leaves the window unread is lost to it (and counted):
    /// also while downstream refuses (not linked), not while it is off.
    pub fn misses(&self) -> bool {
        self.active && !self.flushing
    }

    pub fn cancel_clock_wait(&mut self) {
        if let Some(id) = self.clock_id.take() {
            id.unschedule();
        }
    }

    /// What its running time is shifted by: its delay, and what its last
    /// move landed early.
    pub fn shift(&self) -> gst::ClockTime {
        self.delay + self.landed_early
    }

    /// Where what it has not read yet starts (past what it skips).
    pub fn unread_from(&self) -> Seq {
        self.cursor.max(self.skip_before)
    }

    /// Starts a new stream (after a flush, or activation) at `cursor`.
    pub fn restart(&mut self, cursor: Seq) {
        self.cursor = cursor;
        self.skip_before = cursor;
        self.need_key = false;
        self.landed_early = gst::ClockTime::ZERO;
        self.last_out = None;
        self.flow = Ok(gst::FlowSuccess::Ok);
        self.out_segment = None;
        self.out_shift = None;
        self.resend_sticky = true;
        self.gap_sent = false;
    }

    /// Moves to `to`, whose input running time is `landed` (a replay when it
    /// is behind the cursor), counting the `skipped` buffers of a move
    /// forward as dropped. Landed on a keyframe before its target, the tap
    /// shifts its output by what it takes for the running time it sends not
    /// to go back: none when the landing is due after the last one sent.
    pub fn move_to(&mut self, to: Seq, landed: u64, skipped: u64) {
        self.dropped += skipped;
        self.cursor = to;
        let due = landed.saturating_add(self.delay.nseconds());
        let behind = self.last_out.map_or(0, |last| last.saturating_sub(due));
        self.landed_early = gst::ClockTime::from_nseconds(behind);
        // The caps and segment in force there go out again first.
        self.resend_sticky = true;
        self.cancel_clock_wait();
    }
}
