// SPDX-License-Identifier: MPL-2.0
//! When `src`'s next buffer is due: live, on the clock, `delay` after its
//! running time; not live, once `delay` is held, the stream ended, or
//! upstream waits for room; with the preroll GAP and the starvation WARNING
//! when input stops while filling. Nothing is posted with the lock held.

use super::*;

impl DelayBuffer {
    /// Whether `src`'s next buffer, at `front`, is due; if not, waits (for
    /// the clock, input, a change or the stall timeout) and says no.
    pub(super) fn src_due(&self, s: &mut MutexGuard<'_, Shared>, front: u64) -> bool {
        match s.is_live() {
            true => self.live_due(s, front),
            false => self.non_live_due(s, front),
        }
    }

    /// Live: whether the front buffer is due; if not, waits (for the clock,
    /// a change, or PLAYING) and says no.
    fn live_due(&self, s: &mut MutexGuard<'_, Shared>, front: u64) -> bool {
        let delay = s.src.delay.nseconds();
        let now = match (s.playing, s.clock.is_some()) {
            (true, true) => s.running_time_now().unwrap_or(0),
            // PLAYING without a clock: nothing to wait on.
            (true, false) => return true,
            (false, _) => u64::MAX,
        };
        if s.playing && now >= flow::due(front, delay) {
            return true;
        }
        if !s.src.gap_sent {
            // Live sinks behind us would otherwise complete their state
            // change only when the first frame leaves, `delay` from now: the
            // pipeline would stay PAUSED that long, and an application's EOS
            // sent meanwhile deadlocks (its send_event holds the state lock
            // the pipeline needs to reach PLAYING). The sink prerolls on the
            // GAP, then waits on the clock until the first frame is due.
            self.send_preroll_gap(s, &self.srcpad, front);
            return false;
        }
        if !s.playing {
            // PAUSED: running time stands still; nothing is due, nothing stalls.
            self.changed.wait(s);
            return false;
        }
        let level = s.src_level();
        let deadline = flow::stall_deadline(
            s.last_arrival,
            s.settings.stall_timeout.nseconds(),
            level.buffers,
            level.span,
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
                self.wait_clock(s, &self.srcpad, running_time);
                false
            }
        }
    }

    /// Not live: whether the front buffer may leave; if not, waits for input,
    /// EOS or the stall timeout and says no.
    fn non_live_due(&self, s: &mut MutexGuard<'_, Shared>, front: u64) -> bool {
        let delay = s.src.delay.nseconds();
        let level = s.src_level();
        let held = Held {
            front,
            span: level.span,
            eos: s.eos_held.is_some(),
            release_through: s.release_through,
            input_waiting: s.input_waiting,
        };
        if flow::non_live_ready(&held, delay) {
            return true;
        }
        if !s.src.gap_sent {
            // Downstream sinks preroll on it, so a tee in front never waits for the delay.
            self.send_preroll_gap(s, &self.srcpad, front);
            return false;
        }
        // Releasing after a stall is not limited to once per stream, the
        // warning is.
        let deadline = flow::stall_deadline(
            s.last_arrival,
            s.settings.stall_timeout.nseconds(),
            level.buffers,
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
        let Level {
            buffers: held,
            span,
            ..
        } = s.src_level();
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
}
