// SPDX-License-Identifier: MPL-2.0
//! The ALLOCATION arithmetic: how many buffers upstream pools must add to keep
//! the delay fed, and which proposed pools can hold that. Saturating
//! everywhere: a long delay at a high framerate asks for at most u32::MAX.

/// The framerate of the first structure of `caps`, when it is positive.
pub fn framerate(caps: &gst::CapsRef) -> Option<gst::Fraction> {
    caps.structure(0)?
        .get::<gst::Fraction>("framerate")
        .ok()
        .filter(|f| f.numer() > 0 && f.denom() > 0)
}

/// Buffers to add to an upstream pool so it can keep `delay` of video held:
/// ceil(delay x framerate) + 2 (one being filled upstream, one in flight).
/// `None` on a zero framerate, or a count past u32::MAX.
pub fn buffers_for_delay(delay_ns: u64, framerate: gst::Fraction) -> Option<u32> {
    let (Ok(numer), Ok(denom)) = (
        u128::try_from(framerate.numer()),
        u128::try_from(framerate.denom()),
    ) else {
        return None;
    };
    if numer == 0 || denom == 0 {
        return None;
    }
    let frames = (u128::from(delay_ns) * numer).div_ceil(1_000_000_000 * denom);
    u32::try_from(frames + 2).ok()
}

/// How many buffers to ask upstream for, on top of what downstream wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    Buffers(u32),
    /// Caps without a framerate and no `max-size-buffers`: nothing to go by.
    Unknown,
}

/// What the delay needs at `framerate`; a `max-size-buffers` bound caps it
/// (more could never be held) and stands in for a missing framerate.
pub fn extra_buffers(delay: u64, framerate: Option<gst::Fraction>, max_size_buffers: u32) -> Extra {
    let by_bound = (max_size_buffers != 0).then(|| max_size_buffers.saturating_add(2));
    let by_delay = framerate.map(|f| buffers_for_delay(delay, f).unwrap_or(u32::MAX));
    match (by_delay, by_bound) {
        (Some(needed), Some(bound)) => Extra::Buffers(needed.min(bound)),
        (Some(n), None) | (None, Some(n)) => Extra::Buffers(n),
        (None, None) => Extra::Unknown,
    }
}

/// One proposed pool: (pool, size, min-buffers, max-buffers; 0 = no limit).
pub type Pool<P> = (P, u32, u32, u32);

/// Adds `extra` to every pool's minimum and drops the fixed pools that cannot
/// hold it.
pub fn raise_pools<P>(pools: Vec<Pool<P>>, extra: u32) -> Vec<Pool<P>> {
    pools
        .into_iter()
        .map(|(pool, size, min, max)| (pool, size, min.saturating_add(extra), max))
        .filter(|(_, _, min, max)| *max == 0 || max >= min)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn fps(n: i32, d: i32) -> gst::Fraction {
        gst::Fraction::new(n, d)
    }

    #[test]
    fn pool_size_for_delay() {
        // 7 s at 30 fps holds 210 frames.
        assert_eq!(buffers_for_delay(7 * SECOND, fps(30, 1)), Some(212));
        assert_eq!(buffers_for_delay(SECOND, fps(30000, 1001)), Some(32));
        assert_eq!(buffers_for_delay(0, fps(30, 1)), Some(2));
        assert_eq!(buffers_for_delay(SECOND, fps(0, 1)), None);
        assert_eq!(buffers_for_delay(u64::MAX, fps(i32::MAX, 1)), None);
    }

    #[test]
    fn extra_is_capped_by_the_buffer_bound_and_saturates() {
        assert_eq!(
            extra_buffers(2 * SECOND, Some(fps(30, 1)), 0),
            Extra::Buffers(62)
        );
        assert_eq!(
            extra_buffers(2 * SECOND, Some(fps(30, 1)), 10),
            Extra::Buffers(12)
        );
        assert_eq!(extra_buffers(2 * SECOND, None, 40), Extra::Buffers(42));
        assert_eq!(extra_buffers(2 * SECOND, None, 0), Extra::Unknown);
        assert_eq!(
            extra_buffers(u64::MAX, Some(fps(i32::MAX, 1)), 0),
            Extra::Buffers(u32::MAX)
        );
        assert_eq!(extra_buffers(0, None, u32::MAX), Extra::Buffers(u32::MAX));
    }

    #[test]
    fn fixed_pools_that_cannot_hold_the_delay_are_dropped() {
        let pools = vec![
            ("growable", 4096, 2, 0),
            ("fixed", 4096, 4, 4),
            ("big", 4096, 1, 100),
        ];
        assert_eq!(
            raise_pools(pools, 62),
            vec![("growable", 4096, 64, 0), ("big", 4096, 63, 100)]
        );
        assert_eq!(
            raise_pools(vec![("growable", 1, u32::MAX - 1, 0)], 5),
            vec![("growable", 1, u32::MAX, 0)]
        );
    }

    #[test]
    fn framerate_only_when_positive() {
        gst::init().unwrap();
        let caps = |s: &str| s.parse::<gst::Caps>().unwrap();
        assert_eq!(
            framerate(&caps("video/x-raw,framerate=30/1")),
            Some(fps(30, 1))
        );
        assert_eq!(framerate(&caps("video/x-raw,framerate=0/1")), None);
        assert_eq!(framerate(&caps("video/x-raw")), None);
        assert_eq!(framerate(&gst::Caps::new_empty()), None);
    }
}
