// SPDX-License-Identifier: MPL-2.0
//! The timed ring of held items: buffers keyed by running time, and the
//! serialized events between them, in arrival order.

use std::collections::VecDeque;

/// Nanoseconds of running time.
pub type RunningTime = u64;

#[derive(Debug)]
pub enum Item<B, E> {
    Buffer {
        buffer: B,
        running_time: RunningTime,
        size: u64,
    },
    Event(E),
}

/// The bounds from `max-size-*`; 0 = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    pub buffers: u32,
    pub bytes: u64,
    pub time: u64,
}

#[derive(Debug)]
pub struct Ring<B, E> {
    items: VecDeque<Item<B, E>>,
    buffers: u32,
    bytes: u64,
}

impl<B, E> Default for Ring<B, E> {
    fn default() -> Self {
        Ring {
            items: VecDeque::new(),
            buffers: 0,
            bytes: 0,
        }
    }
}

impl<B, E> Ring<B, E> {
    pub fn push_buffer(&mut self, buffer: B, running_time: RunningTime, size: u64) {
        self.buffers += 1;
        self.bytes += size;
        self.items.push_back(Item::Buffer {
            buffer,
            running_time,
            size,
        });
    }

    pub fn push_event(&mut self, event: E) {
        self.items.push_back(Item::Event(event));
    }

    pub fn front(&self) -> Option<&Item<B, E>> {
        self.items.front()
    }

    pub fn pop(&mut self) -> Option<Item<B, E>> {
        let item = self.items.pop_front()?;
        if let Item::Buffer { size, .. } = &item {
            self.buffers -= 1;
            self.bytes -= size;
        }
        Some(item)
    }

    /// Empties the ring, returning the events and the buffers it held, for
    /// the caller to drop once it released its lock.
    pub fn clear(&mut self) -> (Vec<E>, Vec<B>) {
        self.buffers = 0;
        self.bytes = 0;
        let mut events = Vec::new();
        let mut buffers = Vec::new();
        for item in self.items.drain(..) {
            match item {
                Item::Event(e) => events.push(e),
                Item::Buffer { buffer, .. } => buffers.push(buffer),
            }
        }
        (events, buffers)
    }

    pub fn buffers(&self) -> u32 {
        self.buffers
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn running_times(&self) -> impl DoubleEndedIterator<Item = RunningTime> + '_ {
        self.items.iter().filter_map(|i| match i {
            Item::Buffer { running_time, .. } => Some(*running_time),
            Item::Event(_) => None,
        })
    }

    /// The span of running time held, from the oldest to the newest buffer.
    pub fn span(&self) -> u64 {
        match (
            self.running_times().next(),
            self.running_times().next_back(),
        ) {
            (Some(first), Some(last)) => last.saturating_sub(first),
            _ => 0,
        }
    }

    /// Whether one more buffer of `size` at `running_time` would exceed a bound.
    pub fn is_full(&self, bounds: &Bounds, size: u64, running_time: RunningTime) -> bool {
        if self.buffers == 0 {
            // An empty ring always takes a buffer, however large.
            return false;
        }
        let first = self.running_times().next().unwrap_or(running_time);
        (bounds.buffers != 0 && self.buffers >= bounds.buffers)
            || (bounds.bytes != 0 && self.bytes + size > bounds.bytes)
            || (bounds.time != 0 && running_time.saturating_sub(first) > bounds.time)
    }

    /// The held buffers with their running times, newest first.
    pub fn buffers_newest_first(&self) -> impl Iterator<Item = (&B, RunningTime)> + '_ {
        newest_first(&self.items)
    }

    /// Puts `with` in the place of the held buffer that `is` picks, and
    /// returns the one replaced; `Err(with)` when none is held (any more).
    pub fn replace_buffer(&mut self, is: impl Fn(&B) -> bool, with: B) -> Result<B, B> {
        replace_buffer(&mut self.items, is, with)
    }

    /// Removes the oldest buffer, keeping the events around it in order, and
    /// returns it.
    pub fn remove_oldest_buffer(&mut self) -> Option<B> {
        let pos = self
            .items
            .iter()
            .position(|i| matches!(i, Item::Buffer { .. }))?;
        match self.items.remove(pos) {
            Some(Item::Buffer { buffer, size, .. }) => {
                self.buffers -= 1;
                self.bytes -= size;
                Some(buffer)
            }
            _ => None,
        }
    }

    /// Removes the buffers whose running time is before `cutoff` (events stay,
    /// in order) and returns them.
    pub fn remove_older_than(&mut self, cutoff: RunningTime) -> Vec<B> {
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(self.items.len());
        for item in self.items.drain(..) {
            match item {
                Item::Buffer {
                    buffer,
                    running_time,
                    size,
                } if running_time < cutoff => {
                    self.buffers -= 1;
                    self.bytes -= size;
                    removed.push(buffer);
                }
                item => kept.push_back(item),
            }
        }
        self.items = kept;
        removed
    }
}

/// The buffers among `items` with their running times, newest first.
/// Puts `with` in the place of the held buffer that `is` picks (the ring's
/// and the window's alike), and returns the one replaced; `Err(with)` when
/// none is held.
pub fn replace_buffer<B, E>(
    items: &mut VecDeque<Item<B, E>>,
    is: impl Fn(&B) -> bool,
    with: B,
) -> Result<B, B> {
    let held = items.iter_mut().find_map(|i| match i {
        Item::Buffer { buffer, .. } if is(buffer) => Some(buffer),
        _ => None,
    });
    match held {
        Some(buffer) => Ok(std::mem::replace(buffer, with)),
        None => Err(with),
    }
}

pub fn newest_first<B, E>(
    items: &VecDeque<Item<B, E>>,
) -> impl Iterator<Item = (&B, RunningTime)> + '_ {
    items.iter().rev().filter_map(|i| match i {
        Item::Buffer {
            buffer,
            running_time,
            ..
        } => Some((buffer, *running_time)),
        Item::Event(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Ring<u32, &'static str>;

    const MS: u64 = 1_000_000;

    #[test]
    fn levels_follow_pushes_and_pops() {
        let mut r = R::default();
        r.push_event("caps");
        r.push_buffer(1, 0, 100);
        r.push_buffer(2, 33 * MS, 100);
        assert_eq!((r.buffers(), r.bytes(), r.span()), (2, 200, 33 * MS));
        assert!(matches!(r.pop(), Some(Item::Event("caps"))));
        assert!(matches!(r.pop(), Some(Item::Buffer { buffer: 1, .. })));
        assert_eq!((r.buffers(), r.bytes(), r.span()), (1, 100, 0));
    }

    #[test]
    fn bounds() {
        let mut r = R::default();
        let b = Bounds {
            buffers: 2,
            bytes: 0,
            time: 0,
        };
        assert!(!r.is_full(&b, 10, 0));
        r.push_buffer(1, 0, 10);
        r.push_buffer(2, MS, 10);
        assert!(r.is_full(&b, 10, 2 * MS));
        let bytes = Bounds {
            buffers: 0,
            bytes: 25,
            time: 0,
        };
        assert!(r.is_full(&bytes, 10, 2 * MS));
        assert!(!r.is_full(&bytes, 5, 2 * MS));
        let time = Bounds {
            buffers: 0,
            bytes: 0,
            time: 10 * MS,
        };
        assert!(!r.is_full(&time, 1, 10 * MS));
        assert!(r.is_full(&time, 1, 11 * MS));
        // An empty ring takes even a buffer larger than the byte bound.
        assert!(!R::default().is_full(&bytes, 1000, 0));
    }

    #[test]
    fn dropping_keeps_events_in_order() {
        let mut r = R::default();
        r.push_event("a");
        r.push_buffer(1, 0, 10);
        r.push_event("b");
        r.push_buffer(2, 10 * MS, 10);
        r.push_buffer(3, 20 * MS, 10);
        assert_eq!(r.remove_oldest_buffer(), Some(1));
        assert_eq!((r.buffers(), r.bytes()), (2, 20));
        assert_eq!(r.remove_older_than(15 * MS), vec![2]);
        assert_eq!((r.buffers(), r.bytes()), (1, 10));
        assert!(matches!(r.pop(), Some(Item::Event("a"))));
        assert!(matches!(r.pop(), Some(Item::Event("b"))));
        assert!(matches!(r.pop(), Some(Item::Buffer { buffer: 3, .. })));
        assert_eq!(r.remove_oldest_buffer(), None);
        r.push_event("c");
        r.push_buffer(4, 0, 10);
        assert_eq!(r.clear(), (vec!["c"], vec![4]));
        assert_eq!((r.buffers(), r.bytes(), r.span()), (0, 0, 0));
    }

    #[test]
    fn replacing_a_buffer_keeps_its_place_and_the_levels() {
        let mut r = R::default();
        r.push_buffer(1, 0, 10);
        r.push_event("a");
        r.push_buffer(2, 10 * MS, 10);
        let newest: Vec<_> = r.buffers_newest_first().map(|(b, t)| (*b, t)).collect();
        assert_eq!(newest, [(2, 10 * MS), (1, 0)]);
        assert_eq!(r.replace_buffer(|b| *b == 1, 11), Ok(1));
        assert_eq!(r.replace_buffer(|b| *b == 1, 12), Err(12));
        assert_eq!((r.buffers(), r.bytes(), r.span()), (2, 20, 10 * MS));
        assert!(matches!(r.pop(), Some(Item::Buffer { buffer: 11, .. })));
        assert!(matches!(r.pop(), Some(Item::Event("a"))));
    }
}
