// SPDX-License-Identifier: MPL-2.0
//! The taps: request pads `tap_%u`, readers of the one held window beside
//! `src` (see `output`), each `delay` behind, never blocking the input or
//! each other; and the window itself: what goes in and when it leaves.
//! Like the rest of the element, nothing here calls into GStreamer with the
//! lock held.

use super::output::Send;
use super::*;
use crate::delaybuffer::reader::{Output, Reader, TapSnapshot};
use crate::delaybuffer::tap_pad::{DEFAULT_TAP_ACTIVE, DEFAULT_TAP_DELAY, TapPad};
use crate::delaybuffer::window::Seq;
use gst::glib::translate::IntoGlib;

/// Live, how much older than the window a tap that reads too slowly (or is
/// blocked downstream) may fall before it loses what it missed: the window
/// never grows past this for it, and input never waits.
const WINDOW_SLACK: u64 = gst::ClockTime::SECOND.nseconds();

/// Not live, how far past the window the slowest tap may fall before the
/// input waits for it (as a tee waits for its slowest branch): the window
/// then holds at most this much more than its length.
const NON_LIVE_SLACK: u64 = 100 * gst::ClockTime::MSECOND.nseconds();

fn tap_index(s: &Shared, pad: &gst::Pad) -> Option<usize> {
    s.taps.iter().position(|t| &t.pad == pad)
}

/// The running time taps measure their delay back from: the clock's when
/// live and playing, else the newest input.
fn now(s: &Shared) -> Option<u64> {
    if s.is_live() {
        s.running_time_now().or(s.window.newest())
    } else {
        s.window.newest()
    }
}

/// The sticky events in force at `cursor`, in the order they must go out.
pub(super) fn sticky_at(s: &Shared, cursor: Seq) -> Vec<gst::Event> {
    let mut sticky = s.window_sticky.clone();
    for event in s.window.events_before(cursor) {
        keep_sticky(&mut sticky, event);
    }
    sticky.sort_by_key(|e| e.type_().into_glib());
    sticky
}

/// Empties the window, keeping the sticky events it held for a tap that
/// starts later; what it held, for the caller to drop unlocked.
pub(super) fn clear_window(s: &mut Shared) -> Vec<Item<gst::Buffer, gst::Event>> {
    let items = s.window.clear();
    for item in &items {
        if let Item::Event(event) = item {
            keep_sticky(&mut s.window_sticky, event);
        }
    }
    items
}

/// Keeps `event` in `sticky` in place of one of its type, if it is sticky
/// and not an EOS (which ends the stream, and is sent in order only).
pub(super) fn keep_sticky(sticky: &mut Vec<gst::Event>, event: &gst::Event) {
    if !event.is_sticky() || event.type_() == gst::EventType::Eos {
        return;
    }
    sticky.retain(|e| e.type_() != event.type_());
    sticky.push(event.clone());
}

impl DelayBuffer {
    pub(super) fn request_tap(&self, templ: &gst::PadTemplate, name: Option<&str>) -> gst::Pad {
        let name = name.map_or_else(|| self.next_tap_name(), str::to_string);
        let pad = gst::PadBuilder::<TapPad>::from_template(templ)
            .name(name)
            .activatemode_function(|pad, parent, mode, active| {
                DelayBuffer::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "panic in activatemode")),
                    |this| this.tap_activate(pad.upcast_ref(), mode, active),
                )
            })
            .event_function(|pad, parent, event| {
                DelayBuffer::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.tap_src_event(pad.upcast_ref(), event),
                )
            })
            .query_function(|pad, parent, query| {
                DelayBuffer::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.tap_src_query(pad.upcast_ref(), query),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS)
            .build()
            .upcast::<gst::Pad>();
        let tap = Reader::new(
            Output::Tap,
            pad.clone(),
            DEFAULT_TAP_DELAY,
            DEFAULT_TAP_ACTIVE,
        );
        self.lock().taps.push(tap);
        pad
    }

    /// `tap_N` with the next N not taken (an application may have asked for
    /// a name of its own, `tap_5`, before).
    fn next_tap_name(&self) -> String {
        loop {
            let name = {
                let mut s = self.lock();
                s.taps_requested += 1;
                format!("tap_{}", s.taps_requested - 1)
            };
            if self.obj().static_pad(&name).is_none() {
                return name;
            }
        }
    }

    pub(super) fn release_tap(&self, pad: &gst::Pad) {
        let _ = pad.set_active(false);
        let (tap, left) = self.forget_tap(pad);
        drop(tap);
        drop(left);
        let _ = self.obj().remove_pad(pad);
    }

    /// Takes the tap of `pad` out of the element: the tap, and what only it
    /// needed in the window, for the caller to drop unlocked.
    pub(super) fn forget_tap(
        &self,
        pad: &gst::Pad,
    ) -> (Option<Reader>, Vec<Item<gst::Buffer, gst::Event>>) {
        let mut s = self.lock();
        let tap = tap_index(&s, pad).map(|i| s.taps.remove(i));
        let mut left = Vec::new();
        self.trim_window(&mut s, &mut left);
        self.notify_all();
        (tap, left)
    }

    /// The metrics' values of each tap: what the window holds ahead of it,
    /// and its own counts (copies are counted on `src`, element-wide).
    pub(super) fn tap_stats(&self) -> Vec<DelayStats> {
        let s = self.lock();
        let end = s.window.end();
        let newest = s.window.newest().unwrap_or(0);
        s.taps
            .iter()
            .map(|tap| {
                let oldest = s.window.running_time_from(tap.cursor).unwrap_or(newest);
                DelayStats {
                    pad: tap.name.clone(),
                    delay: tap.delay,
                    level_time: gst::ClockTime::from_nseconds(newest.saturating_sub(oldest)),
                    level_buffers: u32::try_from(s.window.buffers_between(tap.cursor, end))
                        .unwrap_or(u32::MAX),
                    level_bytes: s.window.bytes_between(tap.cursor, end),
                    received: s.received,
                    pushed: tap.pushed,
                    dropped: tap.dropped,
                    copied: 0,
                }
            })
            .collect()
    }

    pub(in crate::delaybuffer) fn tap_snapshot(&self, pad: &gst::Pad) -> Option<TapSnapshot> {
        let s = self.lock();
        tap_index(&s, pad).map(|i| s.taps[i].snapshot())
    }

    /// Moves the tap to `delay` behind: back (a replay, running time going
    /// on without a jump) or forward (skipping, counted).
    pub(in crate::delaybuffer) fn set_tap_delay(&self, pad: &gst::Pad, delay: gst::ClockTime) {
        let old = {
            let mut s = self.lock();
            let Some(i) = tap_index(&s, pad) else { return };
            let old = std::mem::replace(&mut s.taps[i].delay, delay);
            if old != delay && s.taps[i].active && s.taps[i].out_segment.is_some() {
                self.move_tap(&mut s, pad);
            }
            self.notify_all();
            old
        };
        gst::info!(CAT, obj = pad, "tap delay changed from {old} to {delay}");
        self.reallocate_if_holding_more();
    }

    /// A leaky tap stops holding the window and the input at once.
    pub(in crate::delaybuffer) fn set_tap_leaky(&self, pad: &gst::Pad, leaky: Leaky) {
        let mut s = self.lock();
        let Some(i) = tap_index(&s, pad) else { return };
        s.taps[i].leaky = leaky;
        self.notify_all();
        drop(s);
        gst::info!(CAT, obj = pad, "tap leaky: {leaky:?}");
    }

    /// Turned on, the tap starts `delay` back in the window (pre-record).
    pub(in crate::delaybuffer) fn set_tap_active(&self, pad: &gst::Pad, active: bool) {
        let mut s = self.lock();
        let Some(i) = tap_index(&s, pad) else { return };
        let was = std::mem::replace(&mut s.taps[i].active, active);
        if active && !was {
            self.move_tap(&mut s, pad);
        }
        s.taps[i].cancel_clock_wait();
        self.notify_all();
        drop(s);
        gst::info!(CAT, obj = pad, "tap active: {active}");
    }

    /// Puts the tap of `pad` `delay` before now in the window, on a keyframe.
    pub(super) fn move_tap(&self, s: &mut Shared, pad: &gst::Pad) {
        let Some(i) = tap_index(s, pad) else { return };
        let Some(now) = now(s) else { return };
        let target = now.saturating_sub(s.taps[i].delay.nseconds());
        let cursor = s.taps[i].cursor;
        let mut landing = s.window.landing(target);
        let forward = s
            .window
            .running_time_from(cursor)
            .is_some_and(|at| target > at);
        if forward && landing < cursor {
            // The keyframe before the target is behind what the tap already
            // sent: landing there would send frames again. The next one on.
            match s.window.first_key_from(cursor) {
                Some(key) => landing = key,
                None => return,
            }
        }
        let landed = s.window.running_time_from(landing).unwrap_or(target);
        let skipped = s.window.buffers_between(cursor, landing);
        gst::debug!(
            CAT,
            obj = s.taps[i].pad,
            "moving from {} to {landing} (target running time {target}), skipping {skipped}",
            s.taps[i].cursor
        );
        s.taps[i].move_to(landing, landed, skipped);
    }

    /// Puts an event that came in into the window, and returns what left
    /// it, for the caller to drop unlocked.
    pub(super) fn feed_event(
        &self,
        s: &mut Shared,
        event: gst::Event,
    ) -> Vec<Item<gst::Buffer, gst::Event>> {
        s.window.push_event(event);
        self.notify_all();
        let mut left = Vec::new();
        self.trim_window(s, &mut left);
        left
    }

    /// Drops from the window what no reader needs any more, counting what
    /// a reader too far behind loses. `src` keeps what it has not read
    /// (its bounds hold upstream back); taps keep what they have not read
    /// within the slack, and the window's length for a tap moved back.
    /// What left is appended to `left`, for the caller to drop unlocked.
    pub(super) fn trim_window(
        &self,
        s: &mut Shared,
        left: &mut Vec<Item<gst::Buffer, gst::Event>>,
    ) {
        let held = s.src_holds().then_some(s.src.cursor);
        let from = left.len();
        if s.taps.is_empty() {
            s.window.remove_before(held.unwrap_or(s.src.cursor), left);
            for item in &left[from..] {
                if let Item::Event(event) = item {
                    keep_sticky(&mut s.window_sticky, event);
                }
            }
            return;
        }
        let length = self.window_length(s);
        let pinned = s
            .taps
            .iter()
            .filter(|t| t.holds_window())
            .map(|t| t.cursor)
            .min();
        // Not live, input comes as fast as upstream makes it: running time
        // says nothing about a reader being slow, and nothing is dropped.
        let slack = if s.is_live() { WINDOW_SLACK } else { u64::MAX };
        let start = s.window.start();
        s.window.trim(length, slack, pinned, held, left);
        for (offset, item) in left[from..].iter().enumerate() {
            let seq = start + offset as Seq;
            match item {
                Item::Event(event) => keep_sticky(&mut s.window_sticky, event),
                Item::Buffer { .. } => {
                    for reader in s
                        .readers_mut()
                        .filter(|r| r.misses() && r.unread_from() <= seq)
                    {
                        reader.dropped += 1;
                    }
                }
            }
        }
    }

    /// Not live: blocks the input while a tap that reads is more than
    /// `NON_LIVE_SLACK` past the window, instead of letting the window grow
    /// (what it would send then is due, so it advances unless its own
    /// downstream blocks: backpressure, as through a tee).
    pub(super) fn wait_for_slow_taps(
        &self,
        s: &mut MutexGuard<'_, Shared>,
        left: &mut Vec<Item<gst::Buffer, gst::Event>>,
    ) -> Result<(), gst::FlowError> {
        loop {
            if s.flushing {
                return Err(gst::FlowError::Flushing);
            }
            let Some(newest) = s.window.newest() else {
                return Ok(());
            };
            let limit = newest.saturating_sub(self.window_length(s).saturating_add(NON_LIVE_SLACK));
            let behind = s
                .taps
                .iter()
                .filter(|t| t.holds_window())
                .filter_map(|t| s.window.running_time_from(t.cursor))
                .any(|t| t < limit);
            if !behind {
                return Ok(());
            }
            gst::log!(CAT, imp = self, "a tap is behind: input waits");
            self.changed.wait(s);
            self.trim_window(s, left);
        }
    }

    /// The running time held for the outputs: `src`'s delay and, with
    /// taps, their window. Upstream pools are asked for that many buffers.
    pub(super) fn held_length(&self, s: &Shared) -> u64 {
        let delay = s.src.delay.nseconds();
        match s.taps.is_empty() {
            true => delay,
            false => delay.max(self.window_length(s)),
        }
    }

    /// Whether upstream's last ALLOCATION answer already asked for what is
    /// held now.
    fn allocated_for_window(&self) -> bool {
        let s = self.lock();
        s.allocated_for != 0 && self.held_length(&s) <= s.allocated_for
    }

    /// Asks upstream to negotiate its allocation again (a RECONFIGURE) when
    /// more is held now than its pools were asked for: a source that can
    /// grow its pool then does, and nothing needs copying.
    pub(super) fn reallocate_if_holding_more(&self) {
        let more = {
            let s = self.lock();
            s.allocated_for != 0 && self.held_length(&s) > s.allocated_for
        };
        if more {
            gst::debug!(
                CAT,
                imp = self,
                "holding more than allocated for: reconfigure"
            );
            self.sinkpad.push_event(gst::event::Reconfigure::new());
        }
    }

    /// The running time the window holds: `window`, at least the largest
    /// tap delay (inactive taps included: they may be turned on).
    fn window_length(&self, s: &Shared) -> u64 {
        let largest = s.taps.iter().map(|t| t.delay).max().unwrap_or_default();
        s.settings.window.max(largest).nseconds()
    }

    pub(super) fn tap_pads(&self) -> Vec<gst::Pad> {
        self.lock().taps.iter().map(|t| t.pad.clone()).collect()
    }

    /// A flush reached the taps: each forwards it (with its seqnum) and its
    /// task stops or restarts at the end of the emptied window.
    pub(super) fn flush_taps(&self, event: &gst::Event, start: bool) {
        for pad in self.tap_pads() {
            let _ = pad.push_event(event.clone());
            let resume = {
                let mut s = self.lock();
                let end = s.window.end();
                let resume = match tap_index(&s, &pad) {
                    Some(i) if !s.taps[i].deactivated => {
                        let tap = &mut s.taps[i];
                        tap.flushing = start;
                        tap.cancel_clock_wait();
                        if !start {
                            tap.restart(end);
                        }
                        !start
                    }
                    _ => false,
                };
                self.notify_all();
                resume
            };
            if start {
                let _ = pad.pause_task();
            } else if resume
                && !resume_pad_task(&pad)
                && let Err(err) = self.start_output_task(&pad)
            {
                gst::error!(CAT, obj = pad, "cannot restart the task: {err}");
            }
        }
    }

    fn tap_activate(
        &self,
        pad: &gst::Pad,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "only push mode is supported"));
        }
        {
            let mut s = self.lock();
            let end = s.window.end();
            if let Some(i) = tap_index(&s, pad) {
                let tap = &mut s.taps[i];
                tap.flushing = !active;
                tap.deactivated = !active;
                tap.cancel_clock_wait();
                tap.restart(end);
            }
            self.notify_all();
        }
        if active {
            self.start_output_task(pad)
                .map_err(|e| gst::loggable_error!(CAT, "cannot start the task: {e}"))
        } else {
            pad.stop_task()
                .map_err(|e| gst::loggable_error!(CAT, "cannot stop the task: {e}"))
        }
    }

    /// An inactive tap still ends with the stream: once the input's EOS is
    /// in the window, it sends the sticky events in force and that EOS, so
    /// that the pipeline can end without the tap ever having been on.
    pub(super) fn end_inactive_tap(&self, s: &mut Shared, pad: &gst::Pad) -> Option<Send> {
        let i = tap_index(s, pad)?;
        let tap = &s.taps[i];
        if tap.active || s.eos_held.is_none() || tap.flow.is_err() {
            return None;
        }
        let end = s.window.end();
        let eos = s
            .window
            .events_before(end)
            .filter(|e| e.type_() == gst::EventType::Eos)
            .last()?
            .clone();
        s.taps[i].cursor = end;
        s.taps[i].resend_sticky = true;
        let mut send = self.header(s, pad)?;
        send.events.push(eos);
        // Sent once: output_loop records the EOS as this tap's flow.
        s.taps[i].flow = Err(gst::FlowError::Eos);
        Some(send)
    }

    /// Whether the next buffer of the tap of `pad`, at `running_time`, is
    /// due; if not, waits (for the clock, new input or a change) and says no.
    pub(super) fn tap_due(
        &self,
        s: &mut MutexGuard<'_, Shared>,
        pad: &gst::Pad,
        running_time: u64,
    ) -> bool {
        let Some(i) = tap_index(s, pad) else {
            return false;
        };
        let due = flow::due(running_time, s.taps[i].shift().nseconds());
        let live = s.is_live();
        let now = match (live, s.playing) {
            (true, true) => s.running_time_now(),
            (true, false) => Some(0),
            (false, _) => s.window.newest(),
        };
        let ready = match now {
            // PLAYING without a clock: nothing to wait on.
            None => live && s.playing,
            Some(now) => (!live || s.playing) && now >= due,
        };
        if ready || (!live && s.eos_held.is_some()) {
            return true;
        }
        if !s.taps[i].gap_sent {
            self.send_preroll_gap(s, pad, running_time);
            return false;
        }
        if live && s.playing {
            self.wait_clock(s, pad, due);
        } else {
            self.changed.wait(s);
        }
        false
    }

    fn tap_src_event(&self, pad: &gst::Pad, mut event: gst::Event) -> bool {
        match event.type_() {
            gst::EventType::Reconfigure => {
                self.relinked(pad);
                // Upstream's pools were asked for what the window holds (a
                // window that grows asks again itself): linking a tap changes
                // nothing there. Forwarded, every link would make the source
                // set up a new pool of delay x framerate buffers, and cycling
                // taps would churn through memory that is never given back.
                if self.allocated_for_window() {
                    gst::log!(CAT, obj = pad, "relinked: upstream's allocation stands");
                    return true;
                }
            }
            gst::EventType::Qos => {
                // Into upstream's running time, as on `src`.
                let shift = self.tap_snapshot(pad).map_or(0, |t| t.shift.nseconds());
                unshift_qos(&mut event, shift);
            }
            _ => (),
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    /// Like `src`, a tap adds no latency; and since it never blocks input
    /// (it drops what it cannot keep up with), upstream's maximum becomes
    /// unbounded.
    fn tap_src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        let gst::QueryViewMut::Latency(q) = query.view_mut() else {
            return gst::Pad::query_default(pad, Some(&*self.obj()), query);
        };
        if !self.sinkpad.peer_query(q.query_mut()) {
            return false;
        }
        let (live, min, _) = q.result();
        q.set(live, min, gst::ClockTime::NONE);
        true
    }

    /// Cancels every reader's clock wait (the base time changed, or PAUSED).
    pub(super) fn cancel_clock_waits(s: &mut Shared) {
        for reader in s.readers_mut() {
            reader.cancel_clock_wait();
        }
    }
}
