// SPDX-License-Identifier: MPL-2.0
//! A switch of child chains is invisible in the stream: a replacement chain
//! does not repeat downstream the stream-start, caps and segment that
//! downstream already has from the chain it replaces, as the bare codec
//! would not send them either. Running time goes on across a switch, so a
//! second SEGMENT would only make a decoder downstream start a new segment
//! (whose first buffer gst-validate then expects to be DISCONT).
//!
//! An encoder's output segment is its own: x264enc and x265enc start it
//! 1000 hours up, less the running time of their first frame, to leave room
//! for DTS before PTS. The replacement's timestamps are therefore moved into
//! the segment downstream has, by the constant difference between the two.
//! This happens on the guard's src pad, so that everything inside the guard
//! sees each chain's output in the chain's own segment.

use gst::prelude::*;
use std::sync::{Arc, Mutex};

type TimeSegment = gst::FormattedSegment<gst::ClockTime>;

/// What the guard's src pad has seen of the chain feeding it.
#[derive(Default)]
struct Seen {
    /// A replacement chain was attached and has output no buffer yet: its
    /// stream events may only repeat what downstream has.
    replacing: bool,
    /// Nanoseconds added to the chain's timestamps, which are in a segment
    /// of its own, to put them in the segment downstream has.
    shift: Option<i128>,
}

/// Keeps the stream leaving a guard one stream across switches of child
/// chains. Its probe sits on the src ghost pad's internal pad, after every
/// probe on the chains' own pads: those (the chain's watch, the decoder's
/// replay filter) see the chain's timestamps in the chain's own segment.
#[derive(Default)]
pub struct Continuity {
    seen: Mutex<Seen>,
}

impl Continuity {
    pub fn install(self: &Arc<Self>, guard_src: &gst::GhostPad) {
        let internal = guard_src
            .internal()
            .expect("a ghost pad has an internal pad");
        let this = Arc::downgrade(self);
        let guard_src = guard_src.downgrade();
        internal.add_probe(
            gst::PadProbeType::EVENT_DOWNSTREAM
                | gst::PadProbeType::EVENT_FLUSH
                | gst::PadProbeType::BUFFER
                | gst::PadProbeType::BUFFER_LIST,
            move |_, info| match (this.upgrade(), guard_src.upgrade()) {
                (Some(this), Some(guard_src)) => this.on_data(&guard_src, info),
                _ => gst::PadProbeReturn::Remove,
            },
        );
    }

    /// A replacement chain is about to be linked in place of the one that
    /// fed downstream until now.
    pub fn expect_replacement(&self) {
        *self.seen.lock().unwrap() = Seen {
            replacing: true,
            shift: None,
        };
    }

    /// A new stream (the guard went back to READY): nothing to keep.
    pub fn reset(&self) {
        *self.seen.lock().unwrap() = Seen::default();
    }

    fn on_data(
        &self,
        guard_src: &gst::GhostPad,
        info: &mut gst::PadProbeInfo,
    ) -> gst::PadProbeReturn {
        match &mut info.data {
            Some(gst::PadProbeData::Buffer(buffer)) => {
                if let Some(shift) = self.output_shift() {
                    shift_timestamps(buffer.make_mut(), shift);
                }
            }
            Some(gst::PadProbeData::BufferList(list)) => {
                if let Some(shift) = self.output_shift() {
                    list.make_mut().foreach_mut(|mut buffer, _| {
                        shift_timestamps(buffer.make_mut(), shift);
                        std::ops::ControlFlow::Continue(Some(buffer))
                    });
                }
            }
            Some(gst::PadProbeData::Event(event)) => {
                let in_force = sticky_event_of_type(guard_src, event.type_());
                if self.stands_in(event, in_force.as_deref()) {
                    // Handled: the chain's sticky event counts as sent.
                    return gst::PadProbeReturn::Handled;
                }
                if let Some(moved) = self.shifted_gap(event) {
                    *event = moved;
                }
            }
            _ => (),
        }
        gst::PadProbeReturn::Ok
    }

    /// A GAP of the chain's, moved into the segment in force as its buffers
    /// are, with its seqnum.
    fn shifted_gap(&self, event: &gst::EventRef) -> Option<gst::Event> {
        let gst::EventView::Gap(gap) = event.view() else {
            return None;
        };
        let shift = self
            .seen
            .lock()
            .unwrap()
            .shift
            .filter(|&shift| shift != 0)?;
        let (timestamp, duration) = gap.get();
        let moved = u64::try_from(i128::from(timestamp.nseconds()) + shift).ok()?;
        Some(
            gst::event::Gap::builder(gst::ClockTime::from_nseconds(moved))
                .duration(duration)
                .seqnum(event.seqnum())
                .build(),
        )
    }

    /// The shift for a buffer leaving the chain, which ends its replacing.
    fn output_shift(&self) -> Option<i128> {
        let mut seen = self.seen.lock().unwrap();
        seen.replacing = false;
        seen.shift.filter(|&shift| shift != 0)
    }

    /// Whether `event` from the chain stands in for `in_force` and is not to
    /// go out; a segment that goes out (the first chain's, one after a seek)
    /// is the chain's, with no shift.
    fn stands_in(&self, event: &gst::EventRef, in_force: Option<&gst::EventRef>) -> bool {
        let mut seen = self.seen.lock().unwrap();
        let replaced = seen.replacing.then(|| replaces(event, in_force)).flatten();
        match replaced {
            Some(shift) => {
                if event.type_() == gst::EventType::Segment {
                    seen.shift = shift;
                }
                true
            }
            None => {
                // A segment of the chain's own goes out (the first chain's,
                // one after a seek), or a stream starts or ends anew.
                if matches!(
                    event.type_(),
                    gst::EventType::Segment
                        | gst::EventType::FlushStop
                        | gst::EventType::StreamStart
                        | gst::EventType::Eos
                ) {
                    seen.shift = None;
                    seen.replacing = false;
                }
                false
            }
        }
    }
}

/// Whether `event` stands in for `in_force` (the sticky event of its type
/// downstream has) and need not go out: Some, with the timestamp shift from
/// a segment's to the one in force (None for other events), or None when
/// `event` tells downstream something new.
fn replaces(event: &gst::EventRef, in_force: Option<&gst::EventRef>) -> Option<Option<i128>> {
    let in_force = in_force?;
    match (event.view(), in_force.view()) {
        (gst::EventView::StreamStart(new), gst::EventView::StreamStart(old)) => {
            (new.stream_id() == old.stream_id() && new.group_id() == old.group_id()).then_some(None)
        }
        (gst::EventView::Caps(new), gst::EventView::Caps(old)) => {
            (new.caps() == old.caps()).then_some(None)
        }
        (gst::EventView::Segment(new), gst::EventView::Segment(old)) => {
            let new = new.segment().downcast_ref::<gst::ClockTime>()?;
            let old = old.segment().downcast_ref::<gst::ClockTime>()?;
            shift_between(new, old).map(Some)
        }
        _ => None,
    }
}

/// The constant to add to a position in `from` to get the position of the
/// same running time in `to`, when there is one: both at rate 1.0 and alike
/// but for where they start.
fn shift_between(from: &TimeSegment, to: &TimeSegment) -> Option<i128> {
    let ns = |t: Option<gst::ClockTime>| t.map(|t| i128::from(t.nseconds()));
    // A file's segment ends: the same length after either start.
    let span = |s: &TimeSegment| ns(s.stop()).map(|stop| stop - ns(s.start()).unwrap_or(0));
    let alike = from.rate() == 1.0
        && to.rate() == 1.0
        && from.applied_rate() == to.applied_rate()
        && from.flags() == to.flags()
        && from.time() == to.time()
        && from.base() == to.base()
        && from.offset() == to.offset()
        && span(from) == span(to);
    // At rate 1.0, running time = position - start - offset + base.
    alike.then(|| ns(to.start()).unwrap_or(0) - ns(from.start()).unwrap_or(0))
}

fn shift_timestamps(buffer: &mut gst::BufferRef, shift: i128) {
    let moved = |t: Option<gst::ClockTime>| {
        t.and_then(|t| u64::try_from(i128::from(t.nseconds()) + shift).ok())
            .map(gst::ClockTime::from_nseconds)
    };
    let (pts, dts) = (moved(buffer.pts()), moved(buffer.dts()));
    buffer.set_pts(pts);
    buffer.set_dts(dts);
}

fn sticky_event_of_type(pad: &gst::GhostPad, type_: gst::EventType) -> Option<gst::Event> {
    let mut found = None;
    pad.sticky_events_foreach(|event| {
        if event.type_() == type_ {
            found = Some(event.clone());
            return std::ops::ControlFlow::Break(gst::EventForeachAction::Keep);
        }
        std::ops::ControlFlow::Continue(gst::EventForeachAction::Keep)
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(start_ms: u64) -> TimeSegment {
        let mut segment = TimeSegment::new();
        segment.set_start(gst::ClockTime::from_mseconds(start_ms));
        segment.set_position(gst::ClockTime::from_mseconds(start_ms));
        segment
    }

    fn segment_event(start_ms: u64) -> gst::Event {
        gst::event::Segment::new(&segment(start_ms))
    }

    #[test]
    fn an_equal_segment_caps_or_stream_start_stands_in_for_the_one_in_force() {
        gst::init().unwrap();
        // Another seqnum, the same segment: no shift.
        assert_eq!(
            replaces(&segment_event(0), Some(&segment_event(0))),
            Some(Some(0))
        );
        assert_eq!(replaces(&segment_event(0), None), None);
        let caps = |w: i32| {
            gst::event::Caps::new(&gst::Caps::builder("video/x-h265").field("width", w).build())
        };
        assert_eq!(replaces(&caps(320), Some(&caps(320))), Some(None));
        assert_eq!(replaces(&caps(320), Some(&caps(640))), None);
        let group = gst::GroupId::next();
        let start = |id: &str| gst::event::StreamStart::builder(id).group_id(group).build();
        assert_eq!(replaces(&start("a"), Some(&start("a"))), Some(None));
        assert_eq!(replaces(&start("b"), Some(&start("a"))), None);
        let eos = gst::event::Eos::new();
        assert_eq!(replaces(&eos, Some(&gst::event::Eos::new())), None);
    }

    #[test]
    fn an_encoders_own_segment_start_becomes_a_shift_that_keeps_running_time() {
        gst::init().unwrap();
        // The replacement started its segment 3.3 s lower than the first
        // encoder did: the same running time sits 3.3 s higher downstream.
        let (from, to) = (segment(1_000_000), segment(1_003_300));
        let shift = shift_between(&from, &to).unwrap();
        assert_eq!(shift, 3_300_000_000);
        let position = gst::ClockTime::from_mseconds(1_005_000);
        let moved = gst::ClockTime::from_nseconds((position.nseconds() as i128 + shift) as u64);
        assert_eq!(
            from.to_running_time(position),
            to.to_running_time(moved),
            "running time kept"
        );
    }

    #[test]
    fn segments_that_differ_in_more_than_their_start_go_out() {
        gst::init().unwrap();
        let mut faster = segment(0);
        faster.set_rate(2.0);
        assert_eq!(shift_between(&faster, &segment(0)), None);
        let bounded = |start_ms: u64, length_ms: u64| {
            let mut bounded = segment(start_ms);
            bounded.set_stop(gst::ClockTime::from_mseconds(start_ms + length_ms));
            bounded
        };
        assert_eq!(shift_between(&bounded(0, 3000), &segment(0)), None);
        assert_eq!(shift_between(&bounded(0, 3000), &bounded(0, 2000)), None);
        // A file's 20 s, as two encoders start it.
        assert_eq!(
            shift_between(&bounded(1_000, 20_000), &bounded(4_300, 20_000)),
            Some(3_300_000_000)
        );
    }

    #[test]
    fn timestamps_move_by_the_shift_and_dts_before_zero_is_dropped() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(gst::ClockTime::from_mseconds(100));
            buffer.set_dts(gst::ClockTime::from_mseconds(40));
            shift_timestamps(buffer, -50_000_000);
        }
        assert_eq!(buffer.pts(), Some(gst::ClockTime::from_mseconds(50)));
        assert_eq!(buffer.dts(), None);
    }

    #[test]
    fn a_gap_moves_with_the_buffers_and_keeps_its_seqnum() {
        gst::init().unwrap();
        let continuity = Continuity::default();
        let gap = gst::event::Gap::builder(gst::ClockTime::from_seconds(1))
            .duration(gst::ClockTime::from_mseconds(33))
            .build();
        assert!(
            continuity.shifted_gap(&gap).is_none(),
            "no shift, no change"
        );
        continuity.seen.lock().unwrap().shift = Some(2_000_000_000);
        let moved = continuity.shifted_gap(&gap).unwrap();
        let gst::EventView::Gap(moved_gap) = moved.view() else {
            panic!("{moved:?}")
        };
        assert_eq!(
            moved_gap.get(),
            (
                gst::ClockTime::from_seconds(3),
                Some(gst::ClockTime::from_mseconds(33))
            )
        );
        assert_eq!(moved.seqnum(), gap.seqnum());
    }

    #[test]
    fn a_replacement_that_ends_or_starts_a_stream_before_output_stops_replacing() {
        gst::init().unwrap();
        let continuity = Continuity::default();
        for event in [
            gst::event::Eos::new(),
            gst::event::StreamStart::new("another"),
            gst::event::FlushStop::new(true),
        ] {
            continuity.expect_replacement();
            assert!(!continuity.stands_in(&event, None));
            assert!(!continuity.seen.lock().unwrap().replacing, "{event:?}");
        }
        // A segment equal to the one in force still stands in while replacing.
        continuity.expect_replacement();
        assert!(continuity.stands_in(&segment_event(0), Some(&segment_event(0))));
    }
}
