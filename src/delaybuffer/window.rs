// SPDX-License-Identifier: MPL-2.0
//! The window that every output reads (`src` and the taps): the held items
//! in arrival order, each with a sequence number that a reader's cursor
//! points at. Items leave from the front once they are older than the window
//! and every pinning reader passed them, or, whatever the readers, once they
//! are `slack` older than that (a slow or unlinked tap then drops what it
//! missed, and never blocks input); never before the `held` reader (`src`,
//! which holds upstream back by its own bounds instead) passed them.

use std::collections::VecDeque;

/// Nanoseconds of running time.
pub type RunningTime = u64;

/// Sequence numbers of items, from the start of the stream.
pub type Seq = u64;

#[derive(Debug)]
pub enum Item<B, E> {
    Buffer {
        buffer: B,
        running_time: RunningTime,
        /// Whether it can be decoded from (not a delta unit).
        key: bool,
    },
    Event(E),
}

/// What a reader has not read yet, from its place to the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Level {
    pub buffers: u64,
    pub bytes: u64,
    /// The running time of the first of those buffers.
    pub first: Option<RunningTime>,
    /// From the first of those buffers to the newest.
    pub span: u64,
}

#[derive(Debug)]
pub struct Window<B, E> {
    items: VecDeque<Item<B, E>>,
    /// For each item, the buffers and bytes pushed before it since the
    /// stream started: counting between two places costs two look-ups.
    before: VecDeque<(u64, u64)>,
    /// The buffers and bytes pushed so far.
    pushed: (u64, u64),
    /// The sequence number of `items[0]`.
    first: Seq,
    newest: Option<RunningTime>,
    /// The keyframes whose running time is below every later keyframe's,
    /// in arrival order (so their running times rise): the newest keyframe
    /// at or before any running time is one of them. A window trimmed on
    /// every buffer then finds where a reader moved back lands without
    /// looking at every item.
    rising_keys: VecDeque<(Seq, RunningTime)>,
}

impl<B, E> Default for Window<B, E> {
    fn default() -> Self {
        Window {
            items: VecDeque::new(),
            before: VecDeque::new(),
            pushed: (0, 0),
            first: 0,
            newest: None,
            rising_keys: VecDeque::new(),
        }
    }
}

impl<B, E> Window<B, E> {
    pub fn push_buffer(&mut self, buffer: B, running_time: RunningTime, size: u64, key: bool) {
        self.newest = Some(self.newest.map_or(running_time, |n| n.max(running_time)));
        if key {
            while self
                .rising_keys
                .back()
                .is_some_and(|(_, t)| *t >= running_time)
            {
                self.rising_keys.pop_back();
            }
            self.rising_keys.push_back((self.end(), running_time));
        }
        self.before.push_back(self.pushed);
        self.pushed.0 += 1;
        self.pushed.1 += size;
        self.items.push_back(Item::Buffer {
            buffer,
            running_time,
            key,
        });
    }

    pub fn push_event(&mut self, event: E) {
        self.before.push_back(self.pushed);
        self.items.push_back(Item::Event(event));
    }

    /// The buffers and bytes pushed before `seq` (clamped to what is held).
    fn counted_before(&self, seq: Seq) -> (u64, u64) {
        let index = seq.saturating_sub(self.first);
        usize::try_from(index)
            .ok()
            .and_then(|i| self.before.get(i))
            .copied()
            .unwrap_or(self.pushed)
    }

    /// What is held from `from` to the end.
    pub fn level_from(&self, from: Seq) -> Level {
        let first = self.running_time_from(from);
        let before = self.counted_before(from);
        Level {
            buffers: self.pushed.0 - before.0,
            bytes: self.pushed.1 - before.1,
            first,
            span: match (first, self.newest) {
                (Some(first), Some(newest)) => newest.saturating_sub(first),
                _ => 0,
            },
        }
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
        self.items.iter().rev().filter_map(|i| match i {
            Item::Buffer {
                buffer,
                running_time,
                ..
            } => Some((buffer, *running_time)),
            Item::Event(_) => None,
        })
    }

    pub fn buffers(&self) -> u64 {
        self.buffers_between(self.first, self.end())
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
        let to = to.max(from);
        self.counted_before(to).1 - self.counted_before(from).1
    }

    /// How many buffers lie in `from..to`.
    pub fn buffers_between(&self, from: Seq, to: Seq) -> u64 {
        let to = to.max(from);
        self.counted_before(to).0 - self.counted_before(from).0
    }

    /// The first buffer at or after `from` whose running time is at least
    /// `cutoff`; the end when none is held.
    pub fn first_from(&self, from: Seq, cutoff: RunningTime) -> Seq {
        let start = usize::try_from(from.saturating_sub(self.first)).unwrap_or(usize::MAX);
        self.items
            .range(start.min(self.items.len())..)
            .enumerate()
            .find_map(|(offset, item)| match item {
                Item::Buffer { running_time, .. } if *running_time >= cutoff => {
                    Some(self.first.max(from) + offset as Seq)
                }
                _ => None,
            })
            .unwrap_or_else(|| self.end())
    }

    /// Where a reader moved to running time `target` starts: the newest
    /// keyframe at or before it (so that encoded video decodes from there),
    /// else the oldest keyframe, else the window's start; the end when no
    /// buffer is held.
    pub fn landing(&self, target: RunningTime) -> Seq {
        // Rising running times: those at or before the target come first.
        let at_or_before = self.rising_keys.partition_point(|(_, t)| *t <= target);
        if let Some(index) = at_or_before.checked_sub(1) {
            return self.rising_keys[index].0;
        }
        match self.first_key_from(self.first) {
            Some(seq) => seq,
            None if self.newest.is_some() && !self.items.is_empty() => self.first,
            None => self.end(),
        }
    }

    /// The first keyframe at or after `from`.
    pub fn first_key_from(&self, from: Seq) -> Option<Seq> {
        let start = usize::try_from(from.saturating_sub(self.first)).ok()?;
        self.items
            .range(start.min(self.items.len())..)
            .enumerate()
            .find_map(|(offset, item)| match item {
                Item::Buffer { key: true, .. } => Some(self.first + (start + offset) as Seq),
                _ => None,
            })
    }

    /// Removes the oldest items that are over `length` older than the newest
    /// buffer, before the last keyframe that is at least that old
    /// (a reader moved `length` back lands there), and before `pinned` (the
    /// smallest cursor of the readers that still need them); or over
    /// `length + slack` older whatever the readers; never at or after `held`.
    /// Events go with the buffer behind them. What was removed is appended
    /// to `removed`, for the caller to keep the sticky events and drop the
    /// rest unlocked (a vector it reuses: no allocation per buffer).
    pub fn trim(
        &mut self,
        length: u64,
        slack: u64,
        pinned: Option<Seq>,
        held: Option<Seq>,
        removed: &mut Vec<Item<B, E>>,
    ) {
        let Some(newest) = self.newest else {
            return;
        };
        // The usual case, checked first: nothing is old enough to go (the
        // landing below looks at every item).
        match self.first_buffer() {
            Some((_, oldest)) if newest.saturating_sub(oldest) > length => (),
            _ => return,
        }
        let boundary = newest.saturating_sub(length);
        let last_old_key = self.landing(boundary);
        let pinned = Some(pinned.map_or(last_old_key, |p| p.min(last_old_key)));
        while let Some((index, running_time)) = self.first_buffer() {
            let seq = self.first + index as Seq;
            let age = newest.saturating_sub(running_time);
            let passed = pinned.is_none_or(|p| seq < p);
            let held_back = held.is_some_and(|h| seq >= h);
            if held_back || !(age > length && passed || age > length.saturating_add(slack)) {
                break;
            }
            self.drain_through(index, removed);
        }
    }

    /// Removes the items before `seq` (readers all passed them), appending
    /// them to `removed`.
    pub fn remove_before(&mut self, seq: Seq, removed: &mut Vec<Item<B, E>>) {
        match usize::try_from(seq.saturating_sub(self.first)) {
            Ok(0) | Err(_) => (),
            Ok(count) => self.drain_through(count.min(self.items.len()) - 1, removed),
        }
    }

    fn drain_through(&mut self, index: usize, removed: &mut Vec<Item<B, E>>) {
        self.first += index as Seq + 1;
        while self
            .rising_keys
            .front()
            .is_some_and(|(seq, _)| *seq < self.first)
        {
            self.rising_keys.pop_front();
        }
        // Item by item: usually one or two go at a time, for which a
        // VecDeque drain costs more than the moves themselves.
        removed.reserve(index + 1);
        for _ in 0..=index {
            self.before.pop_front();
            removed.extend(self.items.pop_front());
        }
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
        self.before.clear();
        self.rising_keys.clear();
        self.items.drain(..).collect()
    }

    /// Puts `with` in the place of the held buffer that `is` picks, and
    /// returns the one replaced; `Err(with)` when none is held.
    pub fn replace_buffer(&mut self, is: impl Fn(&B) -> bool, with: B) -> Result<B, B> {
        let held = self.items.iter_mut().find_map(|i| match i {
            Item::Buffer { buffer, .. } if is(buffer) => Some(buffer),
            _ => None,
        });
        match held {
            Some(buffer) => Ok(std::mem::replace(buffer, with)),
            None => Err(with),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffers are (frame number, keyframe).
    type W = Window<(u32, bool), &'static str>;

    const S: u64 = 1_000_000_000;

    /// Frame i at i seconds, a keyframe where `key(i)`, after a caps event.
    fn frames_keyed(n: u32, key: impl Fn(u32) -> bool) -> W {
        let mut w = W::default();
        w.push_event("caps");
        for i in 0..n {
            w.push_buffer((i, key(i)), u64::from(i) * S, 10, key(i));
        }
        w
    }

    /// Trims `w`: how many items went.
    fn trim(w: &mut W, length: u64, slack: u64, pinned: Option<Seq>, held: Option<Seq>) -> usize {
        let mut removed = Vec::new();
        w.trim(length, slack, pinned, held, &mut removed);
        removed.len()
    }

    fn remove_before(w: &mut W, seq: Seq) -> usize {
        let mut removed = Vec::new();
        w.remove_before(seq, &mut removed);
        removed.len()
    }

    fn frames(n: u32, gop: u32) -> W {
        frames_keyed(n, |i| i % gop == 0)
    }

    #[test]
    fn the_first_keyframe_from_a_place_is_found_at_or_after_it() {
        // Seq 0 is the caps event; frame i is at seq i + 1, keyframes every 4.
        let w = frames(10, 4);
        assert_eq!(w.first_key_from(0), Some(1));
        assert_eq!(w.first_key_from(2), Some(5));
        assert_eq!(w.first_key_from(5), Some(5));
        assert_eq!(w.first_key_from(10), None);
        assert_eq!(w.first_key_from(99), None);
    }

    #[test]
    fn sequence_numbers_survive_trimming_and_clearing() {
        let mut w = frames(10, 1);
        assert_eq!((w.start(), w.end()), (0, 11));
        assert!(matches!(w.get(0), Some(Item::Event("caps"))));
        // Newest at 9 s, 3 s window: 0 to 5 s go (the event with the first).
        assert_eq!(trim(&mut w, 3 * S, 0, None, None), 7);
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
        assert_eq!(trim(&mut w, 3 * S, 7 * S, Some(3), None), 3);
        assert_eq!(w.start(), 3);
        // Past length + slack (frames over 4 s old) they go anyway.
        assert_eq!(trim(&mut w, 3 * S, S, Some(3), None), 3);
        assert_eq!(w.buffers(), 5);
    }

    #[test]
    fn the_keyframe_a_reader_moved_back_the_whole_window_lands_on_is_kept() {
        // Keyframes at 0, 4 and 8 s; newest 9 s; a 3 s window reaches 6 s,
        // whose keyframe is at 4 s.
        let mut w = frames(10, 4);
        trim(&mut w, 3 * S, 10 * S, None, None);
        assert_eq!(w.start(), 5);
        assert!(matches!(
            w.get(5),
            Some(Item::Buffer {
                buffer: (4, true),
                ..
            })
        ));
        // Beyond the slack it goes anyway.
        trim(&mut w, 3 * S, S, None, None);
        assert_eq!(w.start(), 6);
    }

    #[test]
    fn landing_on_the_keyframe_at_or_before_the_target() {
        // Keyframes at 0, 4 and 8 s.
        let w = frames(10, 4);
        assert_eq!(w.landing(6 * S), 5); // frame 4
        assert_eq!(w.landing(8 * S), 9); // frame 8
        assert_eq!(frames(10, 1).landing(6 * S), 7); // raw video: frame 6
        let mut trimmed = frames(10, 4);
        trim(&mut trimmed, S, 0, None, None); // frames 8 and 9 left
        assert_eq!(trimmed.landing(2 * S), 9);
        let no_keys = frames_keyed(10, |_| false);
        assert_eq!(no_keys.landing(2 * S), no_keys.start());
        assert_eq!(W::default().landing(0), 0);
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
        assert_eq!(w.replace_buffer(|b| b.0 == 1, (12, true)), Err((12, true)));
    }

    #[test]
    fn a_held_reader_keeps_what_it_has_not_read_whatever_the_slack() {
        let mut w = frames(10, 1);
        // Frames 0 to 5 are over 3 s old and beyond any slack, but the held
        // reader is at seq 3 (frame 2).
        assert_eq!(trim(&mut w, 3 * S, 0, None, Some(3)), 3);
        assert_eq!(w.start(), 3);
        assert_eq!(w.buffers(), 8);
        // What it passed goes, events with it.
        assert_eq!(remove_before(&mut w, 5), 2);
        assert_eq!((w.start(), w.buffers()), (5, 6));
        assert_eq!(remove_before(&mut w, 2), 0);
    }

    #[test]
    fn levels_and_counts_follow_pushes_trims_and_clears() {
        let mut w = frames(4, 1);
        assert_eq!(
            w.level_from(2),
            Level {
                buffers: 3,
                bytes: 30,
                first: Some(S),
                span: 2 * S
            }
        );
        assert_eq!(w.level_from(w.end()), Level::default());
        trim(&mut w, S, 0, None, None);
        // Frames 2 and 3 are left; counting from before the start counts them.
        assert_eq!((w.buffers(), w.buffers_between(0, 99)), (2, 2));
        assert_eq!(w.bytes_between(0, 4), 10);
        w.clear();
        w.push_buffer((9, true), 9 * S, 7, true);
        assert_eq!(w.level_from(0).bytes, 7);
    }

    #[test]
    fn the_first_buffer_not_older_than_a_cutoff() {
        let w = frames(10, 4);
        assert_eq!(w.first_from(0, 0), 1);
        assert_eq!(w.first_from(0, 3 * S), 4);
        assert_eq!(w.first_from(6, 3 * S), 6);
        assert_eq!(w.first_from(0, 20 * S), w.end());
    }

    /// The landing as defined, by looking at every item.
    fn landing_by_scan(w: &W, target: RunningTime) -> Seq {
        let keys: Vec<(Seq, RunningTime)> = (w.start()..w.end())
            .filter_map(|seq| match w.get(seq) {
                Some(Item::Buffer {
                    running_time,
                    key: true,
                    ..
                }) => Some((seq, *running_time)),
                _ => None,
            })
            .collect();
        if let Some((seq, _)) = keys.iter().rfind(|(_, t)| *t <= target) {
            return *seq;
        }
        match keys.first() {
            Some((seq, _)) => *seq,
            None if w.newest().is_some() && w.buffers() > 0 => w.start(),
            None => w.end(),
        }
    }

    #[test]
    fn random_landings_match_a_scan_of_every_item_with_reordered_frames() {
        // Running times out of arrival order (B-frames), keyframes now and
        // then, events between them, trims and clears on the way.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut w = W::default();
        for i in 0..5000u32 {
            match next(20) {
                0 => w.push_event("tag"),
                1 if next(50) == 0 => drop(w.clear()),
                2 => {
                    trim(&mut w, next(30) * S / 10, next(3) * S, None, None);
                }
                _ => {
                    let key = next(4) == 0;
                    let t = u64::from(i) * S / 10 + next(5) * S / 10;
                    w.push_buffer((i, key), t, 1, key);
                }
            }
            let newest = w.newest().unwrap_or(0);
            for target in [0, newest / 2, newest.saturating_sub(S), newest, newest + S] {
                assert_eq!(w.landing(target), landing_by_scan(&w, target), "step {i}");
            }
        }
    }
}
