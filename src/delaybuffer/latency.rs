// SPDX-License-Identifier: MPL-2.0
//! The LATENCY answer. The delay is not latency (the src pad offset carries
//! it), so the minimum passes unchanged. The maximum says how long upstream
//! data may wait before it must be consumed: like `queue`, delaybuffer is a
//! thread boundary that absorbs data, so it raises the maximum by what it can
//! still hold once `delay` of it is in use (capacity - delay). Without that, a live source that buffers nothing itself (appsrc, a
//! camera answering max 0) cannot meet a sink's processing deadline and the
//! pipeline warns "Not enough buffering available".

use super::Leaky;
use super::pacing::Bounds;

/// Upstream's maximum latency seen through delaybuffer. `None` is unbounded.
/// `frame_duration` converts a `max-size-buffers` bound into time.
pub fn max_latency(
    upstream_max: Option<u64>,
    bounds: &Bounds,
    leaky: Leaky,
    frame_duration: Option<u64>,
    delay: u64,
) -> Option<u64> {
    let upstream_max = upstream_max?;
    // Dropping the oldest instead of blocking: upstream never waits on us.
    if leaky == Leaky::Downstream {
        return None;
    }
    if bounds.buffers == 0 && bounds.bytes == 0 && bounds.time == 0 {
        return None;
    }
    // A byte bound cannot be turned into time without knowing every buffer's
    // size: claim nothing extra rather than too much.
    if bounds.bytes != 0 {
        return Some(upstream_max);
    }
    let by_time = (bounds.time != 0).then_some(bounds.time);
    let by_buffers = match (bounds.buffers, frame_duration) {
        (0, _) => None,
        (n, Some(duration)) => Some(u64::from(n).saturating_mul(duration)),
        (_, None) => Some(0),
    };
    let capacity = match (by_time, by_buffers) {
        (Some(t), Some(b)) => t.min(b),
        (Some(c), None) | (None, Some(c)) => c,
        (None, None) => 0,
    };
    // The delay itself fills that much of the capacity for good.
    let headroom = capacity.saturating_sub(delay);
    // Past the largest clock time is unbounded (u64::MAX is GST_CLOCK_TIME_NONE).
    upstream_max
        .checked_add(headroom)
        .filter(|max| *max != u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn bounds(buffers: u32, bytes: u64, time: u64) -> Bounds {
        Bounds {
            buffers,
            bytes,
            time,
        }
    }

    #[test]
    fn unbounded_or_leaky_holds_anything() {
        let frame = Some(33 * MS);
        assert_eq!(
            max_latency(Some(0), &bounds(0, 0, 0), Leaky::No, frame, 0),
            None
        );
        assert_eq!(
            max_latency(Some(0), &bounds(10, 0, 0), Leaky::Downstream, frame, 0),
            None
        );
    }

    #[test]
    fn bounds_add_what_they_can_hold_in_time() {
        let frame = Some(33 * MS);
        assert_eq!(
            max_latency(Some(5 * MS), &bounds(0, 0, 2000 * MS), Leaky::No, frame, 0),
            Some(2005 * MS)
        );
        assert_eq!(
            max_latency(Some(0), &bounds(10, 0, 0), Leaky::No, frame, 0),
            Some(330 * MS)
        );
        // The smaller of two bounds is what can be held.
        assert_eq!(
            max_latency(Some(0), &bounds(10, 0, 100 * MS), Leaky::No, frame, 0),
            Some(100 * MS)
        );
        // Buffers without a framerate, or a byte bound: nothing is claimed.
        assert_eq!(
            max_latency(Some(7 * MS), &bounds(10, 0, 0), Leaky::No, None, 0),
            Some(7 * MS)
        );
        assert_eq!(
            max_latency(
                Some(7 * MS),
                &bounds(0, 1 << 20, 100 * MS),
                Leaky::No,
                frame,
                0
            ),
            Some(7 * MS)
        );
    }

    #[test]
    fn unbounded_upstream_stays_unbounded() {
        assert_eq!(
            max_latency(None, &bounds(10, 0, 0), Leaky::No, Some(33 * MS), 0),
            None
        );
        assert_eq!(
            max_latency(Some(u64::MAX - 5), &bounds(0, 0, 10), Leaky::No, None, 0),
            None
        );
    }

    #[test]
    fn the_delay_uses_up_part_of_the_capacity() {
        let frame = Some(33 * MS);
        // 2 s can be held, 500 ms of it by the delay: 1.5 s of headroom.
        assert_eq!(
            max_latency(
                Some(5 * MS),
                &bounds(0, 0, 2000 * MS),
                Leaky::No,
                frame,
                500 * MS
            ),
            Some(1505 * MS)
        );
        // A bound below the delay leaves no headroom at all.
        assert_eq!(
            max_latency(Some(5 * MS), &bounds(10, 0, 0), Leaky::No, frame, 1000 * MS),
            Some(5 * MS)
        );
        // Unbounded stays unbounded whatever the delay.
        assert_eq!(
            max_latency(Some(0), &bounds(0, 0, 0), Leaky::No, frame, 1000 * MS),
            None
        );
    }
}
