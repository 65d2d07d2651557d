// SPDX-License-Identifier: MPL-2.0
//! When the held front buffer may leave: the live and the non-live release
//! policies, and when stopped input counts as a stall. Pure functions of
//! running times in ns, so that the task loop only gathers the facts.

/// The longest `delay`: an hour holds 108 000 frames at 30 fps, and every sum
/// of it with a running time stays far from overflowing a clock time.
pub const MAX_DELAY: u64 = 3600 * 1_000_000_000;
/// The longest `stall-timeout`, for the same reason.
pub const MAX_STALL_TIMEOUT: u64 = 3600 * 1_000_000_000;
/// Starvation means upstream's buffers are held here: at least two of them.
/// One held buffer is a slow start (a first frame taking long to make).
pub const MIN_HELD_FOR_STARVATION: u64 = 2;

/// The running time at which a buffer held at `running_time` is due.
pub fn due(running_time: u64, delay: u64) -> u64 {
    running_time.saturating_add(delay)
}

/// The clock time at which running time `running_time` comes, saturated below
/// GST_CLOCK_TIME_NONE (u64::MAX) so that it is always a valid clock time.
pub fn clock_time(base_time: u64, running_time: u64) -> u64 {
    base_time.saturating_add(running_time).min(u64::MAX - 1)
}

/// What the live task does next with the front buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveStep {
    /// It is due: push it.
    Release,
    /// Input stopped while filling: warn, then look again.
    Stalled,
    /// Sleep on the clock until this running time, then look again.
    WaitUntil(u64),
}

/// Live: a buffer leaves when the clock reaches its running time + delay; a
/// stall is noticed on the way, at `stall_deadline`.
pub fn live_step(now: u64, front: u64, delay: u64, stall_deadline: Option<u64>) -> LiveStep {
    let due = due(front, delay);
    if now >= due {
        return LiveStep::Release;
    }
    match stall_deadline {
        Some(deadline) if now >= deadline => LiveStep::Stalled,
        Some(deadline) => LiveStep::WaitUntil(deadline.min(due)),
        None => LiveStep::WaitUntil(due),
    }
}

/// What is held, as the non-live policy sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Held {
    /// The running time of the front buffer.
    pub front: u64,
    /// From the oldest to the newest held buffer.
    pub span: u64,
    /// An EOS is held behind the buffers.
    pub eos: bool,
    /// After a stall, buffers up to this running time leave at once.
    pub release_through: Option<u64>,
    /// Upstream waits for room: a `max-size-*` bound (or the pacing) is
    /// reached.
    pub input_waiting: bool,
}

/// Not live: buffers leave once the held span reaches the delay, at EOS,
/// after a stall released them, or while upstream waits for room, as from a
/// full queue: a bound that cannot hold the delay (even one smaller than a
/// buffer) lets the oldest through rather than wait forever. Leaving early
/// costs no timing: the sink still renders at running time + delay.
pub fn non_live_ready(held: &Held, delay: u64) -> bool {
    held.eos
        || held.input_waiting
        || held.span >= delay
        || held.release_through.is_some_and(|t| held.front <= t)
}

/// The running time (live) or the monotonic time (not live) at which input
/// that stopped at `last_arrival` counts as a stall: only while less than the
/// delay is held, at least two buffers are, no EOS is (input ended, it did
/// not stall), and no warning was posted yet.
pub fn stall_deadline(
    last_arrival: Option<u64>,
    stall_timeout: u64,
    held_buffers: u64,
    span: u64,
    delay: u64,
    eos: bool,
    warned: bool,
) -> Option<u64> {
    if eos || warned || span >= delay || held_buffers < MIN_HELD_FOR_STARVATION {
        return None;
    }
    Some(last_arrival?.saturating_add(stall_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn live_releases_at_running_time_plus_delay() {
        assert_eq!(live_step(500 * MS, 0, 500 * MS, None), LiveStep::Release);
        assert_eq!(
            live_step(499 * MS, 0, 500 * MS, None),
            LiveStep::WaitUntil(500 * MS)
        );
    }

    #[test]
    fn live_wakes_early_for_a_stall() {
        assert_eq!(
            live_step(100 * MS, 0, 500 * MS, Some(300 * MS)),
            LiveStep::WaitUntil(300 * MS)
        );
        assert_eq!(
            live_step(300 * MS, 0, 500 * MS, Some(300 * MS)),
            LiveStep::Stalled
        );
        // Due beats stalled: a due buffer leaves (and frees the pool).
        assert_eq!(
            live_step(600 * MS, 0, 500 * MS, Some(300 * MS)),
            LiveStep::Release
        );
    }

    #[test]
    fn sums_saturate_instead_of_overflowing() {
        assert_eq!(due(u64::MAX - 1, MAX_DELAY), u64::MAX);
        assert_eq!(clock_time(u64::MAX / 2, u64::MAX), u64::MAX - 1);
        assert_eq!(
            live_step(u64::MAX - 1, u64::MAX - 5, MAX_DELAY, None),
            LiveStep::WaitUntil(u64::MAX)
        );
    }

    #[test]
    fn non_live_waits_for_the_span_eos_or_a_stall() {
        let held = Held {
            front: 0,
            span: 400 * MS,
            ..Held::default()
        };
        assert!(!non_live_ready(&held, 500 * MS));
        assert!(non_live_ready(&held, 400 * MS));
        assert!(non_live_ready(&Held { eos: true, ..held }, 500 * MS));
        let released = Held {
            front: 100 * MS,
            release_through: Some(100 * MS),
            ..held
        };
        assert!(non_live_ready(&released, 500 * MS));
        let newer = Held {
            front: 101 * MS,
            ..released
        };
        assert!(!non_live_ready(&newer, 500 * MS));
        // Upstream waiting on a full bound lets the oldest go.
        let full = Held {
            input_waiting: true,
            ..held
        };
        assert!(non_live_ready(&full, 500 * MS));
    }

    #[test]
    fn stall_only_while_filling_with_two_buffers_held() {
        let deadline = |buffers, span, warned| {
            stall_deadline(
                Some(100 * MS),
                50 * MS,
                buffers,
                span,
                500 * MS,
                false,
                warned,
            )
        };
        assert_eq!(deadline(2, 0, false), Some(150 * MS));
        assert_eq!(deadline(1, 0, false), None);
        assert_eq!(deadline(2, 500 * MS, false), None);
        assert_eq!(deadline(2, 0, true), None);
        assert_eq!(stall_deadline(None, 1, 2, 0, 500 * MS, false, false), None);
        // After EOS, input ended: it did not stall.
        assert_eq!(
            stall_deadline(Some(0), 1, 2, 0, 500 * MS, true, false),
            None
        );
    }
}
