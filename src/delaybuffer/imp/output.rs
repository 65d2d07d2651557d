// SPDX-License-Identifier: MPL-2.0
//! The one output path: `src` and every tap are readers of the window, each
//! sending from its cursor, from its own pad's task, what is due. Where they
//! differ is policy, asked of the reader's `Output`: when a buffer is due
//! (`src_due`, `tap_due`), how the preroll GAP goes out, what a flow error
//! stops, and where a move lands. Nothing is pushed or posted with the lock
//! held: what a reader sends is gathered under it and pushed after.

use super::*;
use crate::delaybuffer::reader::{Output, Reader};
use crate::delaybuffer::window::Seq;

/// What a reader sends next, gathered under the lock.
#[derive(Default)]
pub(super) struct Send {
    pub(super) events: Vec<gst::Event>,
    pub(super) buffer: Option<gst::Buffer>,
}

/// What left the window while a reader moved on, dropped after the lock:
/// one vector per output task, reused, so that no buffer costs an allocation.
type Left = Vec<Item<gst::Buffer, gst::Event>>;

/// A buffer encoded video can be decoded from.
pub(super) fn is_keyframe(buffer: &gst::Buffer) -> bool {
    !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
}

/// A GAP at running time `running_time` of `segment` (the last SEGMENT a
/// reader sent, before its shift), for downstream to preroll on while the
/// delay fills; with the segment's seqnum, as every event it causes.
pub(super) fn preroll_gap(segment: &gst::Event, running_time: u64) -> Option<gst::Event> {
    let gst::EventView::Segment(e) = segment.view() else {
        return None;
    };
    let pts = e
        .segment()
        .downcast_ref::<gst::ClockTime>()?
        .position_from_running_time(gst::ClockTime::from_nseconds(running_time))?;
    Some(
        gst::event::Gap::builder(pts)
            .seqnum(segment.seqnum())
            .build(),
    )
}

impl Shared {
    /// The reader that feeds `pad`.
    pub(super) fn reader(&self, pad: &gst::Pad) -> Option<&Reader> {
        match &self.src.pad == pad {
            true => Some(&self.src),
            false => self.taps.iter().find(|t| &t.pad == pad),
        }
    }

    pub(super) fn reader_mut(&mut self, pad: &gst::Pad) -> Option<&mut Reader> {
        match &self.src.pad == pad {
            true => Some(&mut self.src),
            false => self.taps.iter_mut().find(|t| &t.pad == pad),
        }
    }

    /// Every reader, `src` first.
    pub(super) fn readers_mut(&mut self) -> impl Iterator<Item = &mut Reader> {
        std::iter::once(&mut self.src).chain(self.taps.iter_mut())
    }

    /// Whether the window keeps what `src` has not read: always, except
    /// while `src` is unlinked beside taps (one unlinked branch of many, as
    /// with tee allow-not-linked: the taps carry the stream).
    pub(super) fn src_holds(&self) -> bool {
        self.src.flow != Err(gst::FlowError::NotLinked) || self.taps.is_empty()
    }

    /// What `src` holds: the window from where it reads on.
    pub(super) fn src_level(&self) -> Level {
        self.window.level_from(self.src.unread_from())
    }

    /// The buffers `src` holds (its level's count alone).
    pub(super) fn src_buffers(&self) -> u64 {
        self.window
            .buffers_between(self.src.unread_from(), self.window.end())
    }
}

impl DelayBuffer {
    pub(super) fn start_output_task(&self, pad: &gst::Pad) -> Result<(), glib::BoolError> {
        // Weak references: the task must keep neither alive.
        let weak = self.obj().downgrade();
        let weak_pad = pad.downgrade();
        let mut left = Left::new();
        pad.start_task(move || {
            let Some(pad) = weak_pad.upgrade() else {
                return;
            };
            match weak.upgrade() {
                Some(obj) => obj.imp().output_loop(&pad, &mut left),
                None => {
                    let _ = pad.pause_task();
                }
            }
        })
    }

    /// A reader's task: sends each item once it is due, until the reader
    /// stops (flushing or released; a flush, a deactivation and a release
    /// all stop it before they wait for the task). It returns only then,
    /// not after each item: upgrading the weak references and a turn of
    /// GstTask's loop cost more than the rest of a buffer's way out.
    fn output_loop(&self, pad: &gst::Pad, left: &mut Left) {
        loop {
            let next = self.next_for(pad, left);
            left.clear();
            let Some(send) = next else {
                let _ = pad.pause_task();
                return;
            };
            for event in send.events {
                let eos = event.type_() == gst::EventType::Eos;
                pad.push_event(event);
                if eos {
                    gst::debug!(CAT, obj = pad, "EOS sent");
                    // Upstream (for `src`) gets EOS for anything it still sends.
                    self.record_flow(pad, Err(gst::FlowError::Eos));
                }
            }
            if let Some(buffer) = send.buffer {
                let result = pad.push(buffer);
                self.record_flow(pad, result);
            }
        }
    }

    /// Waits until the reader of `pad` has something to send; `None` when it
    /// stops (flushing, or released). What left the window meanwhile goes
    /// into `left`.
    fn next_for(&self, pad: &gst::Pad, left: &mut Left) -> Option<Send> {
        let mut s = self.lock();
        loop {
            let reader = s.reader(pad)?;
            if reader.flushing {
                return None;
            }
            if let Some(send) = self.end_inactive_tap(&mut s, pad) {
                return Some(send);
            }
            if !s.reader(pad)?.reading() {
                // Not linked, or downstream ended or failed: nothing goes out
                // until a RECONFIGURE or a flush resets the flow. The task
                // waits here rather than pausing, so that resetting the flow
                // and notifying is all a restart takes. It waits on `idle`,
                // which no buffer in or out signals: an unlinked `src`
                // beside taps is not woken with them for every buffer.
                self.idle.wait(&mut s);
                continue;
            }
            self.resume_in_window(&mut s, pad);
            let cursor = s.reader(pad)?.cursor;
            let (running_time, key) = match s.window.get(cursor) {
                None => {
                    self.changed.wait(&mut s);
                    continue;
                }
                Some(Item::Event(event)) => {
                    let event = event.clone();
                    s.reader_mut(pad)?.cursor += 1;
                    let send = self.event_after_header(&mut s, pad, event)?;
                    self.passed(&mut s, pad, left);
                    return Some(send);
                }
                Some(Item::Buffer {
                    running_time, key, ..
                }) => (*running_time, *key),
            };
            if self.skips(&mut s, pad, cursor, key) {
                s.reader_mut(pad)?.cursor += 1;
                self.passed(&mut s, pad, left);
                continue;
            }
            let due = match s.reader(pad)?.output {
                Output::Src => self.src_due(&mut s, running_time),
                Output::Tap => self.tap_due(&mut s, pad, running_time),
            };
            if !due {
                continue;
            }
            // The lock was let go while waiting: look again.
            let Some(Item::Buffer { buffer, .. }) = s.window.get(cursor) else {
                continue;
            };
            if s.reader(pad)?.cursor != cursor {
                continue;
            }
            let buffer = buffer.clone();
            let mut send = self.header(&mut s, pad)?;
            let reader = s.reader_mut(pad)?;
            reader.cursor += 1;
            reader.pushed += 1;
            reader.last_out = Some(running_time + reader.shift().nseconds());
            send.buffer = Some(buffer);
            self.passed(&mut s, pad, left);
            return Some(send);
        }
    }

    /// A reader that fell out of the window (counted when trimmed) goes on
    /// from its first keyframe, so that encoded video decodes from there,
    /// after the sticky events in force there.
    fn resume_in_window(&self, s: &mut Shared, pad: &gst::Pad) {
        let start = s.window.start();
        if s.reader(pad).is_none_or(|r| r.cursor >= start) {
            return;
        }
        let resume = s.window.first_key_from(start);
        if let Some(reader) = s.reader_mut(pad) {
            reader.cursor = resume.unwrap_or(start);
            reader.need_key = resume.is_none();
            reader.resend_sticky = true;
        }
    }

    /// Whether the reader skips the buffer at `cursor`: dropped before (late,
    /// or over a bound), or a delta while it needs a keyframe (counted now).
    fn skips(&self, s: &mut Shared, pad: &gst::Pad, cursor: Seq, key: bool) -> bool {
        let Some(reader) = s.reader_mut(pad) else {
            return false;
        };
        if cursor < reader.skip_before {
            return true;
        }
        if reader.need_key && !key {
            reader.dropped += 1;
            return true;
        }
        reader.need_key = false;
        false
    }

    /// After a reader moved on: room for a blocked upstream (`src` bounds
    /// it; not live, the input may wait for a tap), and what nobody needs
    /// any more leaves the window.
    fn passed(&self, s: &mut Shared, pad: &gst::Pad, left: &mut Left) {
        let src = s.reader(pad).is_some_and(|r| r.output == Output::Src);
        if src || !s.is_live() {
            self.changed.notify_all();
        }
        if src {
            self.trim_window(s, left);
        }
    }

    /// The sticky events a reader must send before its next buffer: all of
    /// them after a move, the SEGMENT again when its delay changed.
    pub(super) fn header(&self, s: &mut Shared, pad: &gst::Pad) -> Option<Send> {
        let mut send = Send::default();
        let (resend, cursor) = {
            let reader = s.reader(pad)?;
            (reader.resend_sticky, reader.cursor)
        };
        let sticky = if resend {
            taps::sticky_at(s, cursor)
        } else {
            Vec::new()
        };
        let reader = s.reader_mut(pad)?;
        let delay = reader.shift();
        if resend {
            for event in sticky {
                if event.type_() == gst::EventType::Segment {
                    send.events.push(shifted_segment(&event, delay.nseconds()));
                    reader.out_segment = Some(event);
                } else {
                    send.events.push(event);
                }
            }
            reader.resend_sticky = false;
            reader.out_shift = Some(delay);
        } else if reader.out_shift != Some(delay) {
            // The delay changed since the segment went out: send it again
            // with the new shift before the next buffer.
            reader.out_shift = Some(delay);
            if let Some(segment) = &reader.out_segment {
                send.events.push(shifted_segment(segment, delay.nseconds()));
            }
        }
        Some(send)
    }

    /// An event of the window (the cursor already past it). A reader that
    /// still owes the sticky events in force (a tap just requested or
    /// moved) sends them first, this one among them if it is sticky: a caps
    /// change reaching a new tap never goes out before its stream-start.
    fn event_after_header(
        &self,
        s: &mut Shared,
        pad: &gst::Pad,
        event: gst::Event,
    ) -> Option<Send> {
        if !s.reader(pad)?.resend_sticky {
            return self.event_out(s, pad, event);
        }
        let mut send = self.header(s, pad)?;
        if !event.is_sticky() || event.type_() == gst::EventType::Eos {
            send.events.extend(self.event_out(s, pad, event)?.events);
        }
        Some(send)
    }

    /// An event of the window, as the reader of `pad` sends it.
    fn event_out(&self, s: &mut Shared, pad: &gst::Pad, event: gst::Event) -> Option<Send> {
        let reader = s.reader_mut(pad)?;
        let event = if event.type_() == gst::EventType::Segment {
            reader.out_segment = Some(event.clone());
            reader.out_shift = Some(reader.shift());
            // The segment is sent here, in order: no need to send it again.
            reader.resend_sticky = false;
            shifted_segment(&event, reader.shift().nseconds())
        } else {
            event
        };
        Some(Send {
            events: vec![event],
            ..Send::default()
        })
    }

    /// Sends the reader's one preroll GAP, at `running_time`, after the
    /// sticky events it still owes, without holding the lock while
    /// downstream takes them.
    ///
    /// `src`'s is pushed from a thread of its own: a synchronised sink takes
    /// the GAP only at its running time, `delay` ahead, and the task must go
    /// on watching for a stall meanwhile. Its first buffer, due at the GAP's
    /// time, waits for the sink's stream lock that the GAP holds, so the
    /// order stays GAP, then buffer. A tap watches for no stall: it pushes
    /// its GAP itself.
    pub(super) fn send_preroll_gap(
        &self,
        s: &mut MutexGuard<'_, Shared>,
        pad: &gst::Pad,
        running_time: u64,
    ) {
        let Some(reader) = s.reader_mut(pad) else {
            return;
        };
        reader.gap_sent = true;
        let output = reader.output;
        let Some(mut send) = self.header(s, pad) else {
            return;
        };
        let gap = s
            .reader(pad)
            .and_then(|r| r.out_segment.as_ref())
            .and_then(|segment| preroll_gap(segment, running_time));
        let flushes = s.flushes;
        let gap = match output {
            Output::Tap => {
                send.events.extend(gap);
                None
            }
            Output::Src => gap,
        };
        MutexGuard::unlocked(s, || {
            for event in send.events {
                pad.push_event(event);
            }
            let Some(gap) = gap else {
                return;
            };
            let pad = pad.clone();
            self.obj().call_async(move |obj| {
                let imp = obj.imp();
                // From the check to the end of the push: a flush starting
                // meanwhile waits for it (see `gap_push`).
                let _pushing = imp.gap_push.lock();
                if imp.lock().flushes == flushes {
                    let _ = pad.push_event(gap);
                }
            });
        });
    }

    /// Sleeps on the pipeline clock until `running_time`, or until a change
    /// unschedules the wait.
    pub(super) fn wait_clock(
        &self,
        s: &mut MutexGuard<'_, Shared>,
        pad: &gst::Pad,
        running_time: u64,
    ) {
        let Some((clock, base)) = &s.clock else {
            return;
        };
        let target = gst::ClockTime::from_nseconds(flow::clock_time(*base, running_time));
        let id = clock.new_single_shot_id(target);
        let Some(reader) = s.reader_mut(pad) else {
            return;
        };
        reader.clock_id = Some(id.clone());
        MutexGuard::unlocked(s, || {
            let _ = id.wait();
        });
        if let Some(reader) = s.reader_mut(pad) {
            reader.clock_id = None;
        }
    }

    /// Records what downstream of `pad` returned: an error stops that reader
    /// (until a RECONFIGURE or a flush). `src`'s error is upstream's too,
    /// which reports it, unless it already took the EOS: then, as queue
    /// does, delaybuffer posts it and downstream still gets its EOS. Nobody
    /// upstream hears of a tap's result: a fatal one (not negotiated, an
    /// error) is posted and its downstream gets EOS. An unlinked tap, or
    /// `src` unlinked beside taps, is allowed (a RECONFIGURE resumes it).
    pub(super) fn record_flow(
        &self,
        pad: &gst::Pad,
        result: Result<gst::FlowSuccess, gst::FlowError>,
    ) {
        let Err(err) = result else { return };
        let report = {
            let mut s = self.lock();
            let src_eos = s.eos_held;
            let beside_taps = !s.taps.is_empty();
            let Some(reader) = s.reader_mut(pad).filter(|r| !r.flushing) else {
                return;
            };
            gst::debug!(CAT, obj = pad, "downstream returned {err:?}, pausing");
            reader.flow = Err(err);
            // Upstream may be blocked on full bounds, the input on this
            // tap: let them see the error.
            self.notify_all();
            let allowed =
                err == gst::FlowError::NotLinked && (reader.output == Output::Tap || beside_taps);
            // The EOS ends the reader's stream: the held EOS's seqnum on
            // `src`, the segment's on a tap.
            let seqnum = match reader.output {
                Output::Src => src_eos,
                Output::Tap => reader.out_segment.as_ref().map(|e| e.seqnum()),
            };
            let upstream_hears = reader.output == Output::Src && src_eos.is_none();
            (is_fatal_or_not_linked(err) && !allowed && !upstream_hears).then_some(seqnum)
        };
        if let Some(seqnum) = report {
            self.post_flow_error(pad, err);
            let mut eos = gst::event::Eos::builder();
            if let Some(seqnum) = seqnum {
                eos = eos.seqnum(seqnum);
            }
            pad.push_event(eos.build());
        }
    }

    pub(super) fn post_flow_error(&self, pad: &gst::Pad, err: gst::FlowError) {
        let hint = self.not_negotiated_hint(pad, err).unwrap_or_default();
        gst::element_imp_error!(
            self,
            gst::StreamError::Failed,
            ("Internal data stream error."),
            ["streaming stopped on {}, reason {err:?}{hint}", pad.name()]
        );
    }

    /// Why a tap's downstream may refuse what it is sent, and what to do:
    /// unlike a tee's branch, a tap sends what was held in the caps it came
    /// with, which no renegotiation upstream changes.
    fn not_negotiated_hint(&self, pad: &gst::Pad, err: gst::FlowError) -> Option<String> {
        if err != gst::FlowError::NotNegotiated || pad == &self.srcpad {
            return None;
        }
        let caps = self.sinkpad.current_caps()?;
        Some(format!(
            ": its downstream does not accept the stream's caps ({caps}); a tap sends the \
             held buffers in the caps they came with: put a converter (videoconvert) after \
             the tap"
        ))
    }

    /// A RECONFIGURE (a new peer was linked): after NOT_LINKED, the reader
    /// flows again, as with queue, caught up to its delay behind now.
    pub(super) fn relinked(&self, pad: &gst::Pad) {
        let mut s = self.lock();
        let Some(reader) = s.reader_mut(pad) else {
            return;
        };
        if reader.flushing || reader.flow != Err(gst::FlowError::NotLinked) {
            return;
        }
        reader.flow = Ok(gst::FlowSuccess::Ok);
        let dropped = reader.dropped;
        self.move_reader(&mut s, pad);
        self.notify_all();
        let dropped = s.reader(pad).map_or(0, |r| r.dropped - dropped);
        drop(s);
        gst::info!(
            CAT,
            obj = pad,
            "linked again: flow resumes, {dropped} late buffers dropped"
        );
    }

    /// Puts the reader of `pad` `delay` before now, after a change of its
    /// delay or a relink. A tap moves back (a replay) or forward, onto the
    /// keyframe at or before its target. `src`, whose output must stay
    /// `delay` behind its input, only moves forward, live: what is already
    /// late is dropped, up to the next keyframe.
    pub(super) fn move_reader(&self, s: &mut Shared, pad: &gst::Pad) {
        match s.reader(pad).map(|r| r.output) {
            Some(Output::Src) => self.drop_late_src(s),
            Some(Output::Tap) => self.move_tap(s, pad),
            None => (),
        }
    }

    /// Live: drops (counted) what `src` holds that is already older than its
    /// delay, so that nothing leaves late in a burst; if that cuts into a
    /// GOP, also the rest of it, up to the next keyframe (the next to come,
    /// when none is held).
    fn drop_late_src(&self, s: &mut Shared) {
        if !s.is_live() {
            return;
        }
        let Some(now) = s.running_time_now() else {
            return;
        };
        let cutoff = now.saturating_sub(s.src.delay.nseconds());
        let from = s.src.unread_from().max(s.window.start());
        let first = s.window.first_from(from, cutoff);
        if s.window.buffers_between(from, first) == 0 {
            return;
        }
        let key = s.window.first_key_from(first);
        let to = key.unwrap_or_else(|| s.window.end());
        s.src.dropped += s.window.buffers_between(from, to);
        s.src.skip_before = to;
        s.src.need_key = key.is_none();
        s.src.cancel_clock_wait();
    }
}
