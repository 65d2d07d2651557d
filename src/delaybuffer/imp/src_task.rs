// SPDX-License-Identifier: MPL-2.0
//! The src task: `src`'s one reader of the ring, pushing each held item
//! once it is due (live: on the clock, `delay` after its running time; not
//! live: once `delay` is held or the stream ended), with the preroll GAP and
//! the starvation WARNING. Nothing is pushed or posted with the lock held.

use super::*;

impl DelayBuffer {
    /// One step of the src task: push the next item once it is due.
    pub(super) fn src_loop(&self) {
        let mut s = self.lock();
        let item = loop {
            if s.flushing {
                drop(s);
                let _ = self.srcpad.pause_task();
                return;
            }
            if s.flow.is_err() {
                // Not linked, or downstream ended or failed: nothing goes out
                // until a RECONFIGURE or a flush resets the flow. The task
                // waits here rather than pausing, so that resetting the flow
                // and notifying is all a restart takes, with no race between
                // pausing and restarting the task.
                self.changed.wait(&mut s);
                continue;
            }
            let front = match s.ring.front() {
                None => {
                    self.changed.wait(&mut s);
                    continue;
                }
                Some(Item::Event(_)) => break s.ring.pop(),
                Some(Item::Buffer { running_time, .. }) => *running_time,
            };
            let due = if s.is_live() {
                self.live_due(&mut s, front)
            } else {
                self.non_live_due(&mut s, front)
            };
            if due {
                break s.ring.pop();
            }
        };
        // Room for a blocked upstream.
        self.changed.notify_all();
        let delay = s.settings.delay.nseconds();
        let segment = match &item {
            Some(Item::Buffer { .. }) => {
                s.pushed += 1;
                // The delay changed since the segment went out: send it again
                // with the new shift before the next buffer.
                if s.out_shift != Some(delay) {
                    s.out_shift = Some(delay);
                    s.out_segment.clone()
                } else {
                    None
                }
            }
            Some(Item::Event(e)) if e.type_() == gst::EventType::Segment => {
                s.out_segment = Some(e.clone());
                s.out_shift = Some(delay);
                None
            }
            _ => None,
        };
        drop(s);
        if let Some(segment) = segment {
            self.srcpad.push_event(shifted_segment(&segment, delay));
        }
        match item {
            Some(Item::Buffer { buffer, .. }) => {
                let result = self.srcpad.push(buffer);
                self.handle_flow(result);
            }
            Some(Item::Event(event)) => self.push_event(event, delay),
            None => (),
        }
    }

    fn push_event(&self, event: gst::Event, delay: u64) {
        match event.type_() {
            gst::EventType::Segment => {
                self.srcpad.push_event(shifted_segment(&event, delay));
            }
            gst::EventType::Eos => {
                self.srcpad.push_event(event);
                gst::debug!(CAT, imp = self, "EOS sent");
                // Upstream gets EOS for anything it still sends.
                let mut s = self.lock();
                if !s.flushing {
                    s.flow = Err(gst::FlowError::Eos);
                }
            }
            _ => {
                self.srcpad.push_event(event);
            }
        }
    }

    /// Live: whether the front buffer is due; if not, waits (for the clock,
    /// a change, or PLAYING) and says no.
    fn live_due(&self, s: &mut MutexGuard<'_, Shared>, front: u64) -> bool {
        let delay = s.settings.delay.nseconds();
        let now = match (s.playing, s.clock.is_some()) {
            (true, true) => s.running_time_now().unwrap_or(0),
            // PLAYING without a clock: nothing to wait on.
            (true, false) => return true,
            (false, _) => u64::MAX,
        };
        if s.playing && now >= flow::due(front, delay) {
            return true;
        }
        if !s.gap_sent {
            // Live sinks behind us would otherwise complete their state
            // change only when the first frame leaves, `delay` from now: the
            // pipeline would stay PAUSED that long, and an application's EOS
            // sent meanwhile deadlocks (its send_event holds the state lock
            // the pipeline needs to reach PLAYING). The sink prerolls on the
            // GAP, then waits on the clock until the first frame is due.
            self.send_preroll_gap(s);
            return false;
        }
        if !s.playing {
            // PAUSED: running time stands still; nothing is due, nothing stalls.
            self.changed.wait(s);
            return false;
        }
        let deadline = flow::stall_deadline(
            s.last_arrival,
            s.settings.stall_timeout.nseconds(),
            s.ring.buffers(),
            s.ring.span(),
            delay,
            s.eos_held.is_some(),
            s.starvation_warned,
        );
        match flow::live_step(now, front, delay, deadline) {
            LiveStep::Release => true,
            LiveStep::Stalled => {
                gst::debug!(
                    CAT,
                    imp = self,
                    "no input since running time {:?}, now {now}",
                    s.last_arrival
                );
                self.warn_starvation(s, delay);
                false
            }
            LiveStep::WaitUntil(running_time) => {
                self.wait_for_running_time(s, running_time);
                false
            }
        }
    }

    /// Sleeps on the pipeline clock until `running_time`, or until a change
    /// unschedules the wait.
    fn wait_for_running_time(&self, s: &mut MutexGuard<'_, Shared>, running_time: u64) {
        let Some((clock, base)) = &s.clock else {
            return;
        };
        let target = gst::ClockTime::from_nseconds(flow::clock_time(*base, running_time));
        let id = clock.new_single_shot_id(target);
        s.clock_id = Some(id.clone());
        MutexGuard::unlocked(s, || {
            let _ = id.wait();
        });
        s.clock_id = None;
    }

    /// Not live: whether the front buffer may leave; if not, waits for input,
    /// EOS or the stall timeout and says no.
    fn non_live_due(&self, s: &mut MutexGuard<'_, Shared>, front: u64) -> bool {
        let delay = s.settings.delay.nseconds();
        let held = Held {
            front,
            span: s.ring.span(),
            eos: s.eos_held.is_some(),
            release_through: s.release_through,
            input_waiting: s.input_waiting,
        };
        if flow::non_live_ready(&held, delay) {
            return true;
        }
        if !s.gap_sent {
            // Downstream sinks preroll on it, so a tee in front never waits for the delay.
            self.send_preroll_gap(s);
            return false;
        }
        // Releasing after a stall is not limited to once per stream, the
        // warning is.
        let deadline = flow::stall_deadline(
            s.last_arrival,
            s.settings.stall_timeout.nseconds(),
            s.ring.buffers(),
            held.span,
            delay,
            held.eos,
            false,
        );
        match deadline {
            // PAUSED while filling: upstream stopped because we did, not a stall.
            _ if !s.playing => self.changed.wait(s),
            None => self.changed.wait(s),
            Some(deadline) => {
                let now = monotonic_ns();
                if now < deadline {
                    self.changed
                        .wait_for(s, Duration::from_nanos(deadline - now));
                    return false;
                }
                // Nothing came for a while: upstream may be waiting for the
                // buffers held here. Let them go rather than wait forever.
                s.release_through = s.last_running_time;
                self.warn_starvation(s, delay);
            }
        }
        false
    }

    /// Posts, once per stream, what upstream would need to keep the delay
    /// fed. The lock is released while posting: a bus sync handler may read
    /// our properties or set the delay in reaction.
    fn warn_starvation(&self, s: &mut MutexGuard<'_, Shared>, delay: u64) {
        if s.starvation_warned {
            return;
        }
        s.starvation_warned = true;
        let held = s.ring.buffers();
        let span = s.ring.span();
        let stall_timeout = s.settings.stall_timeout.nseconds();
        let needed = s
            .framerate
            .and_then(|f| allocation::buffers_for_delay(delay, f))
            .map_or_else(|| "delay x framerate + 2".to_string(), |n| n.to_string());
        MutexGuard::unlocked(s, || {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::NoSpaceLeft,
                (
                    "Input stopped while {} buffers ({} of {} ns) are held: upstream's buffer pool is probably too small for the delay, and the other branches of a tee in front starve too. It needs {} buffers: raise nvvidconv output-buffers or nvv4l2decoder num-extra-surfaces, or the source's pool size (v4l2src copies frames when more than 32 are needed)",
                    held,
                    span,
                    delay,
                    needed
                ),
                ["stall-timeout {} ns passed without input", stall_timeout]
            );
        });
    }

    /// Sends the stream's one preroll GAP, without holding the lock while
    /// downstream takes it.
    ///
    /// Pushed from a thread of its own: a synchronised sink takes the GAP
    /// only at its running time, `delay` ahead, and the task must go on
    /// watching for a stall meanwhile (it noticed input that stopped while
    /// filling only once the GAP came back, `delay` late). The task's first
    /// buffer, due at the GAP's time, waits for the sink's stream lock that
    /// the GAP holds, so the order stays GAP, then buffer.
    fn send_preroll_gap(&self, s: &mut MutexGuard<'_, Shared>) {
        s.gap_sent = true;
        let gap = preroll_gap(s);
        if let Some(gap) = gap {
            let flushes = s.flushes;
            MutexGuard::unlocked(s, || {
                self.obj().call_async(move |obj| {
                    let imp = obj.imp();
                    // From the check to the end of the push: a flush
                    // starting meanwhile waits for it (see `gap_push`).
                    let _pushing = imp.gap_push.lock();
                    if imp.lock().flushes == flushes {
                        let _ = imp.srcpad.push_event(gap);
                    }
                });
            });
        }
    }

    fn handle_flow(&self, result: Result<gst::FlowSuccess, gst::FlowError>) {
        let Err(err) = result else { return };
        gst::debug!(CAT, imp = self, "downstream returned {err:?}, pausing");
        let mut unlinked = Vec::new();
        let eos_held = {
            let mut s = self.lock();
            if s.flushing {
                return;
            }
            s.flow = Err(err);
            // Upstream may be blocked on a full ring: let it see the error.
            self.changed.notify_all();
            let beside_taps = err == gst::FlowError::NotLinked && !s.taps.is_empty();
            if beside_taps {
                // An unlinked `src` beside taps is one unlinked branch of
                // many, as with tee allow-not-linked: the taps carry the
                // stream, and `src` holds nothing until it is linked again.
                unlinked = s.ring.remove_older_than(u64::MAX);
                s.dropped += unlinked.len() as u64;
            }
            s.eos_held.filter(|_| !beside_taps)
        };
        drop(unlinked);
        // Like queue: EOS was already taken from upstream, so the error must
        // be reported here, and downstream still gets its EOS.
        if let Some(seqnum) = eos_held
            && is_fatal_or_not_linked(err)
        {
            self.post_flow_error(err);
            // In place of the held EOS, with its seqnum.
            self.srcpad
                .push_event(gst::event::Eos::builder().seqnum(seqnum).build());
        }
    }

    pub(super) fn post_flow_error(&self, err: gst::FlowError) {
        gst::element_imp_error!(
            self,
            gst::StreamError::Failed,
            ("Internal data stream error."),
            ["streaming stopped, reason {err:?}"]
        );
    }
}

/// A GAP at the first held buffer's position in the segment downstream has,
/// for downstream to preroll on.
fn preroll_gap(s: &Shared) -> Option<gst::Event> {
    // Only after the sticky events before the first buffer went out.
    let Item::Buffer { running_time, .. } = s.ring.front()? else {
        return None;
    };
    let out_segment = s.out_segment.as_ref()?;
    let gst::EventView::Segment(e) = out_segment.view() else {
        return None;
    };
    let segment = e.segment().downcast_ref::<gst::ClockTime>()?;
    let pts = segment.position_from_running_time(gst::ClockTime::from_nseconds(*running_time))?;
    // Part of the segment's stream: its seqnum, as every event it causes.
    Some(
        gst::event::Gap::builder(pts)
            .seqnum(out_segment.seqnum())
            .build(),
    )
}
