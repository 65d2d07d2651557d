// SPDX-License-Identifier: MPL-2.0
//! When a guard encoding in software may next read the session listing to
//! take the hardware encoder back (`reclaim-interval`).
//!
//! The listing is read at most once per interval: reading procfs listings in a
//! tight loop has been reported to Oops kernels. After the hardware encoder
//! failed, the guard waits longer before trying it again, so a VPU that keeps
//! failing is not picked up and dropped every interval: 4 intervals after the
//! first failure, twice as long after each further one, at most
//! `MAX_BACKOFF` intervals.

use std::time::Duration;

/// Intervals waited after the first hardware failure of a stream.
pub const FIRST_BACKOFF: u32 = 4;
/// The longest wait after repeated failures, in intervals.
pub const MAX_BACKOFF: u32 = 64;

#[derive(Debug, Clone)]
pub struct ReclaimSchedule {
    interval: Duration,
    /// When the listing may next be read, on the caller's monotonic clock.
    next: Duration,
    failures: u32,
}

impl ReclaimSchedule {
    /// `interval` zero disables reclaiming. The first read is an interval
    /// after `now`: the decision that chose software has just read the listing.
    pub fn new(interval: Duration, now: Duration) -> Self {
        ReclaimSchedule {
            interval,
            next: now.saturating_add(interval),
            failures: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.interval.is_zero()
    }

    /// Whether the listing may be read now.
    pub fn due(&self, now: Duration) -> bool {
        self.enabled() && now >= self.next
    }

    /// The listing was read at `now` (and the hardware not taken back).
    pub fn checked(&mut self, now: Duration) {
        self.next = now.saturating_add(self.interval);
    }

    /// The hardware encoder failed at `now`: back off before trying it again.
    pub fn hardware_failed(&mut self, now: Duration) {
        self.failures = self.failures.saturating_add(1);
        self.next = now.saturating_add(self.interval.saturating_mul(self.backoff()));
    }

    /// How many intervals the wait after the latest failure lasts.
    pub fn backoff(&self) -> u32 {
        match self.failures {
            0 => 1,
            n => FIRST_BACKOFF
                .saturating_mul(1u32.checked_shl(n - 1).unwrap_or(u32::MAX))
                .min(MAX_BACKOFF),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn reads_at_most_once_per_interval() {
        let mut schedule = ReclaimSchedule::new(S, Duration::ZERO);
        assert!(!schedule.due(Duration::from_millis(999)));
        assert!(schedule.due(S));
        schedule.checked(Duration::from_millis(1500));
        assert!(!schedule.due(Duration::from_millis(2499)));
        assert!(schedule.due(Duration::from_millis(2500)));
    }

    #[test]
    fn zero_interval_never_reads() {
        let schedule = ReclaimSchedule::new(Duration::ZERO, Duration::ZERO);
        assert!(!schedule.enabled());
        assert!(!schedule.due(Duration::from_secs(1_000_000)));
    }

    #[test]
    fn a_failure_waits_four_intervals_then_doubles_up_to_the_cap() {
        let mut schedule = ReclaimSchedule::new(S, Duration::ZERO);
        schedule.hardware_failed(10 * S);
        assert_eq!(schedule.backoff(), 4);
        assert!(!schedule.due(14 * S - Duration::from_nanos(1)));
        assert!(schedule.due(14 * S));
        let waits: Vec<u32> = (0..6)
            .map(|_| {
                schedule.hardware_failed(S);
                schedule.backoff()
            })
            .collect();
        assert_eq!(waits, vec![8, 16, 32, 64, 64, 64]);
        // Checks without a failure keep the backoff of the last failure for
        // the next failure, but read again after one interval.
        schedule.checked(100 * S);
        assert!(schedule.due(101 * S));
    }

    #[test]
    fn huge_intervals_saturate_instead_of_overflowing() {
        let mut schedule = ReclaimSchedule::new(Duration::MAX, Duration::from_secs(5));
        assert!(!schedule.due(Duration::from_secs(1 << 40)));
        schedule.hardware_failed(Duration::MAX);
        assert!(!schedule.due(Duration::from_secs(1 << 40)));
    }
}
