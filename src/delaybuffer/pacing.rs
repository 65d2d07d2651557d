// SPDX-License-Identifier: MPL-2.0
//! How much `src` holds before it holds upstream back. With a `max-size-*`
//! bound set, that bound (and `leaky`) decides. Live input comes at the pace
//! of its clock and is never held back without a bound. Input that is not
//! live and unbounded (a file, a decoder) would otherwise be read whole into
//! memory: it is paced as a full `queue` paces it, once the delay plus a
//! headroom is held.

use super::window::Level;

/// The bounds from `max-size-*`; 0 = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    pub buffers: u32,
    pub bytes: u64,
    pub time: u64,
}

/// Whether one more buffer of `size` at `running_time` would take what
/// `src` holds (`held`) over a bound. Nothing held always takes a buffer,
/// however large, as `queue` does: a bound smaller than one buffer never
/// stops the stream.
pub fn is_full(bounds: &Bounds, held: &Level, size: u64, running_time: u64) -> bool {
    if held.buffers == 0 {
        return false;
    }
    let first = held.first.unwrap_or(running_time);
    (bounds.buffers != 0 && held.buffers >= u64::from(bounds.buffers))
        || (bounds.bytes != 0 && held.bytes + size > bounds.bytes)
        || (bounds.time != 0 && running_time.saturating_sub(first) > bounds.time)
}

/// Running time held beyond the delay before non-live input waits: as much
/// as `queue` holds by default (`max-size-time` 1 s), so that a decoder in
/// front keeps running while the oldest frames leave.
pub const HEADROOM: u64 = 1_000_000_000;

/// What bounds what `src` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The `max-size-*` properties, with `leaky` and the `overrun` signal.
    Bounds(Bounds),
    /// Non-live pacing: upstream waits while this running time is held.
    Paced(Bounds),
    /// Nothing: live and unbounded.
    None,
}

/// The limit on what `src` holds, for the `max-size-*` `bounds`, whether
/// upstream is live (`None`: not known yet, before the first buffer) and the
/// delay `src` must hold (ns).
pub fn limit(bounds: Bounds, live: Option<bool>, delay: u64) -> Limit {
    if bounds != Bounds::default() {
        return Limit::Bounds(bounds);
    }
    match live {
        Some(false) => Limit::Paced(Bounds {
            time: delay.saturating_add(HEADROOM),
            ..Bounds::default()
        }),
        _ => Limit::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_set_bound_decides_live_or_not() {
        let bounds = Bounds {
            buffers: 5,
            ..Bounds::default()
        };
        assert_eq!(limit(bounds, Some(false), S), Limit::Bounds(bounds));
        assert_eq!(limit(bounds, Some(true), S), Limit::Bounds(bounds));
    }

    #[test]
    fn unbounded_non_live_input_is_paced_at_the_delay_plus_the_headroom() {
        let paced = limit(Bounds::default(), Some(false), 2 * S);
        assert_eq!(
            paced,
            Limit::Paced(Bounds {
                time: 2 * S + HEADROOM,
                ..Bounds::default()
            })
        );
        // Delay 0 still lets a headroom through, as a queue.
        assert_eq!(
            limit(Bounds::default(), Some(false), 0),
            Limit::Paced(Bounds {
                time: HEADROOM,
                ..Bounds::default()
            })
        );
    }

    #[test]
    fn bounds_count_what_src_holds() {
        const MS: u64 = 1_000_000;
        let held = Level {
            buffers: 2,
            bytes: 20,
            first: Some(0),
            span: MS,
        };
        let buffers = Bounds {
            buffers: 2,
            ..Bounds::default()
        };
        assert!(is_full(&buffers, &held, 10, 2 * MS));
        let bytes = Bounds {
            bytes: 25,
            ..Bounds::default()
        };
        assert!(is_full(&bytes, &held, 10, 2 * MS));
        assert!(!is_full(&bytes, &held, 5, 2 * MS));
        let time = Bounds {
            time: 10 * MS,
            ..Bounds::default()
        };
        assert!(!is_full(&time, &held, 1, 10 * MS));
        assert!(is_full(&time, &held, 1, 11 * MS));
        // Nothing held takes even a buffer larger than the byte bound.
        assert!(!is_full(&bytes, &Level::default(), 1000, 0));
    }

    #[test]
    fn unbounded_live_or_unknown_input_is_not_held_back() {
        assert_eq!(limit(Bounds::default(), Some(true), S), Limit::None);
        assert_eq!(limit(Bounds::default(), None, S), Limit::None);
    }
}
