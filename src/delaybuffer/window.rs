// SPDX-License-Identifier: MPL-2.0
//! The window that taps read: the held items in arrival order, each with a
//! sequence number that a reader's cursor points at. Items leave from the
//! front once they are older than the window and every pinning reader passed
//! them, or, whatever the readers, once they are `slack` older than that (a
//! slow or unlinked reader then drops what it missed, and never blocks input).

use std::collections::VecDeque;

use super::ring::{self, Item, RunningTime};

/// Sequence numbers of items, from the start of the stream.
pub type Seq = u64;

#[derive(Debug)]
pub struct Window<B, E> {
    items: VecDeque<Item<B, E>>,
    /// The sequence number of `items[0]`.
    first: Seq,
    newest: Option<RunningTime>,
}

impl<B, E> Default for Window<B, E> {
    fn default() -> Self {
        Window {
            items: VecDeque::new(),
            first: 0,
            newest: None,
        }
    }
}

impl<B, E> Window<B, E> {
    pub fn push_buffer(&mut self, buffer: B, running_time: RunningTime, size: u64) {
        self.newest = Some(self.newest.map_or(running_time, |n| n.max(running_time)));
        self.items.push_back(Item::Buffer {
            buffer,
            running_time,
            size,
        });
    }

    pub fn push_event(&mut self, event: E) {
        self.items.push_back(Item::Event(event));
    }

    /// The sequence number the next item will get: a reader there is at the end.
    pub fn end(&self) -> Seq {
        self.first + self.items.len() as Seq
    }

    /// The oldest sequence number still held.
    pub fn start(&self) -> Seq {
        self.first
    }

    pub fn get(&self, seq: Seq) -> Option<&Item<B, E>> {
        let index = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.items.get(index)
    }

    /// The running time of the newest buffer.
    pub fn newest(&self) -> Option<RunningTime> {
        self.newest
    }

    /// The held buffers with their running times, newest first.
    pub fn buffers_newest_first(&self) -> impl Iterator<Item = (&B, RunningTime)> + '_ {
        ring::newest_first(&self.items)
    }

    pub fn buffers(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i, Item::Buffer { .. }))
            .count()
    }

    /// The running time of the first buffer at or after `seq`.
    pub fn running_time_from(&self, seq: Seq) -> Option<RunningTime> {
        let start = usize::try_from(seq.saturating_sub(self.first)).ok()?;
        self.items
            .range(start.min(self.items.len())..)
            .find_map(|i| match i {
                Item::Buffer { running_time, .. } => Some(*running_time),
                Item::Event(_) => None,
            })
    }

    /// The events held before `seq`, oldest first.
    pub fn events_before(&self, seq: Seq) -> impl Iterator<Item = &E> + '_ {
        let end = usize::try_from(seq.saturating_sub(self.first))
            .unwrap_or(usize::MAX)
            .min(self.items.len());
        self.items.range(..end).filter_map(|i| match i {
            Item::Event(e) => Some(e),
            Item::Buffer { .. } => None,
        })
    }

    /// How many bytes the buffers in `from..to` hold.
    pub fn bytes_between(&self, from: Seq, to: Seq) -> u64 {
        (from.max(self.first)..to.min(self.end()))
            .filter_map(|seq| match self.get(seq) {
                Some(Item::Buffer { size, .. }) => Some(*size),
                _ => None,
            })
            .sum()
    }

    /// How many buffers lie in `from..to`.
    pub fn buffers_between(&self, from: Seq, to: Seq) -> u64 {
        (from.max(self.first)..to.min(self.end()))
            .filter(|seq| matches!(self.get(*seq), Some(Item::Buffer { .. })))
            .count() as u64
    }

    /// Where a reader moved to running time `target` starts: the newest
    /// buffer at or before it that `is_key` accepts (so that encoded video
    /// decodes from there), else the oldest such buffer, else the window's
    /// start; the end when no buffer is held.
    pub fn landing(&self, target: RunningTime, is_key: impl Fn(&B) -> bool) -> Seq {
        let keys = || {
            self.items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| match item {
                    Item::Buffer {
                        buffer,
                        running_time,
                        ..
                    } if is_key(buffer) => Some((self.first + index as Seq, *running_time)),
                    _ => None,
                })
        };
        if let Some((seq, _)) = keys().filter(|(_, t)| *t <= target).last() {
            return seq;
        }
        match keys().next() {
            Some((seq, _)) => seq,
            None if self.newest.is_some() && !self.items.is_empty() => self.first,
            None => self.end(),
        }
    }

    /// The first buffer at or after `from` that `is_key` accepts.
    pub fn first_key_from(&self, from: Seq, is_key: impl Fn(&B) -> bool) -> Option<Seq> {
        let start = usize::try_from(from.saturating_sub(self.first)).ok()?;
        self.items
            .range(start.min(self.items.len())..)
            .enumerate()
            .find_map(|(offset, item)| match item {
                Item::Buffer { buffer, .. } if is_key(buffer) => {
                    Some(self.first + (start + offset) as Seq)
                }
                _ => None,
            })
    }

    /// Removes the oldest items that are over `length` older than the newest
    /// buffer, before the last keyframe (`is_key`) that is at least that old
    /// (a reader moved `length` back lands there), and before `pinned` (the
    /// smallest cursor of the readers that still need them); or over
    /// `length + slack` older whatever the readers. Events go with the buffer
    /// behind them. Returns what was removed, for the caller to keep the
    /// sticky events and drop the rest unlocked.
    pub fn trim(
        &mut self,
        length: u64,
        slack: u64,
        pinned: Option<Seq>,
        is_key: impl Fn(&B) -> bool,
    ) -> Vec<Item<B, E>> {
        let mut removed = Vec::new();
        let Some(newest) = self.newest else {
            return removed;
        };
        let boundary = newest.saturating_sub(length);
        let last_old_key = self.landing(boundary, is_key);
        let pinned = Some(pinned.map_or(last_old_key, |p| p.min(last_old_key)));
        while let Some((index, running_time)) = self.first_buffer() {
            let age = newest.saturating_sub(running_time);
            let passed = pinned.is_none_or(|p| self.first + (index as Seq) < p);
            if !(age > length && passed || age > length.saturating_add(slack)) {
                break;
            }
            removed.extend(self.items.drain(..=index));
            self.first += index as Seq + 1;
        }
        removed
    }

    /// The index and running time of the oldest buffer.
    fn first_buffer(&self) -> Option<(usize, RunningTime)> {
        self.items
            .iter()
            .enumerate()
            .find_map(|(i, item)| match item {
                Item::Buffer { running_time, .. } => Some((i, *running_time)),
                Item::Event(_) => None,
            })
    }

    /// Empties the window (a flush); sequence numbers go on.
    pub fn clear(&mut self) -> Vec<Item<B, E>> {
        self.first = self.end();
        self.newest = None;
        self.items.drain(..).collect()
    }

    /// Puts `with` in the place of the held buffer that `is` picks, and
    /// returns the one replaced; `Err(with)` when none is held.
    pub fn replace_buffer(&mut self, is: impl Fn(&B) -> bool, with: B) -> Result<B, B> {
        ring::replace_buffer(&mut self.items, is, with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffers are (frame number, keyframe).
    type W = Window<(u32, bool), &'static str>;

    const S: u64 = 1_000_000_000;

    fn all(_: &(u32, bool)) -> bool {
        true
    }

    fn frames(n: u32, gop: u32) -> W {
        let mut w = W::default();
        w.push_event("caps");
        for i in 0..n {
            w.push_buffer((i, i % gop == 0), u64::from(i) * S, 10);
        }
        w
    }

    #[test]
    fn the_first_keyframe_from_a_place_is_found_at_or_after_it() {
        // Seq 0 is the caps event; frame i is at seq i + 1, keyframes every 4.
        let w = frames(10, 4);
        let key = |(_, k): &(u32, bool)| *k;
        assert_eq!(w.first_key_from(0, key), Some(1));
        assert_eq!(w.first_key_from(2, key), Some(5));
        assert_eq!(w.first_key_from(5, key), Some(5));
        assert_eq!(w.first_key_from(10, key), None);
        assert_eq!(w.first_key_from(99, key), None);
    }

    #[test]
    fn sequence_numbers_survive_trimming_and_clearing() {
        let mut w = frames(10, 1);
        assert_eq!((w.start(), w.end()), (0, 11));
        assert!(matches!(w.get(0), Some(Item::Event("caps"))));
        // Newest at 9 s, 3 s window: 0 to 5 s go (the event with the first).
        let removed = w.trim(3 * S, 0, None, all);
        assert_eq!(removed.len(), 7);
        assert_eq!(w.start(), 7);
        assert!(matches!(
            w.get(7),
            Some(Item::Buffer {
                buffer: (6, true),
                ..
            })
        ));
        assert_eq!(w.get(6).map(|_| ()), None);
        assert_eq!(w.clear().len(), 4);
        assert_eq!((w.start(), w.end(), w.newest()), (11, 11, None));
    }

    #[test]
    fn a_pinning_reader_keeps_items_until_the_slack_runs_out() {
        let mut w = frames(10, 1);
        // A reader at seq 3 (frame 2) pins frames 2 and later.
        assert_eq!(w.trim(3 * S, 7 * S, Some(3), all).len(), 3);
        assert_eq!(w.start(), 3);
        // Past length + slack (frames over 4 s old) they go anyway.
        assert_eq!(w.trim(3 * S, S, Some(3), all).len(), 3);
        assert_eq!(w.buffers(), 5);
    }

    #[test]
    fn the_keyframe_a_reader_moved_back_the_whole_window_lands_on_is_kept() {
        // Keyframes at 0, 4 and 8 s; newest 9 s; a 3 s window reaches 6 s,
        // whose keyframe is at 4 s.
        let mut w = frames(10, 4);
        w.trim(3 * S, 10 * S, None, |b| b.1);
        assert_eq!(w.start(), 5);
        assert!(matches!(
            w.get(5),
            Some(Item::Buffer {
                buffer: (4, true),
                ..
            })
        ));
        // Beyond the slack it goes anyway.
        w.trim(3 * S, S, None, |b| b.1);
        assert_eq!(w.start(), 6);
    }

    #[test]
    fn landing_on_the_keyframe_at_or_before_the_target() {
        // Keyframes at 0, 4 and 8 s.
        let w = frames(10, 4);
        let key = |b: &(u32, bool)| b.1;
        assert_eq!(w.landing(6 * S, key), 5); // frame 4
        assert_eq!(w.landing(8 * S, key), 9); // frame 8
        assert_eq!(w.landing(6 * S, |_| true), 7); // raw video: frame 6
        let mut trimmed = frames(10, 4);
        trimmed.trim(S, 0, None, all); // frames 8 and 9 left
        assert_eq!(trimmed.landing(2 * S, key), 9);
        assert_eq!(trimmed.landing(2 * S, |_| false), trimmed.start());
        assert_eq!(W::default().landing(0, key), 0);
    }

    #[test]
    fn counting_and_events() {
        let mut w = frames(4, 1);
        w.push_event("eos");
        assert_eq!(w.buffers_between(0, 5), 4);
        assert_eq!(w.buffers_between(2, 4), 2);
        assert_eq!(w.bytes_between(2, 4), 20);
        assert_eq!(w.running_time_from(0), Some(0));
        assert_eq!(w.running_time_from(3), Some(2 * S));
        assert_eq!(w.running_time_from(5), None);
        assert_eq!(w.events_before(3).copied().collect::<Vec<_>>(), ["caps"]);
        assert_eq!(
            w.events_before(100).copied().collect::<Vec<_>>(),
            ["caps", "eos"]
        );
        assert_eq!(w.replace_buffer(|b| b.0 == 1, (11, true)), Ok((1, true)));
    }
}
