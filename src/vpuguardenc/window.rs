// SPDX-License-Identifier: MPL-2.0
//! The frames an encoder child was given and has not yet produced output for:
//! what a replacement encoder must be sent so that a switch loses no frame.
//!
//! Output covers input by timestamp: an encoder that makes no B-frames (MPP,
//! and the software encoders as the guard configures them for a switch)
//! outputs frames in input order with their input PTS, so an output with PTS
//! `p` means every frame up to `p` has left the encoder (or was dropped by
//! it, which no replacement could undo either).

use std::collections::VecDeque;

/// Frames kept at most. Past it the oldest frame is let go: it can no longer
/// be replayed, and a switch reports it as lost. MPP encoders hold a handful
/// of frames; one that holds this many without output is stuck.
pub const DEFAULT_CAPACITY: usize = 256;

#[derive(Debug)]
pub struct Window<T> {
    frames: VecDeque<(Option<u64>, T)>,
    capacity: usize,
    /// Frames let go because the window was full, since the last `take`.
    lost: u64,
}

impl<T> Default for Window<T> {
    fn default() -> Self {
        Window::new(DEFAULT_CAPACITY)
    }
}

impl<T> Window<T> {
    pub fn new(capacity: usize) -> Self {
        Window {
            frames: VecDeque::new(),
            capacity: capacity.max(1),
            lost: 0,
        }
    }

    /// Remembers a frame given to the encoder. Returns the oldest frame when
    /// the window was full, for the caller to drop outside its lock.
    pub fn push(&mut self, pts: Option<u64>, frame: T) -> Option<T> {
        let evicted = (self.frames.len() >= self.capacity).then(|| {
            self.lost += 1;
            self.frames.pop_front().map(|(_, f)| f)
        });
        self.frames.push_back((pts, frame));
        evicted.flatten()
    }

    /// An output buffer with `pts` left the encoder: returns the frames it
    /// covers, for the caller to drop outside its lock. An output without a
    /// timestamp covers the oldest frame.
    pub fn cover(&mut self, pts: Option<u64>) -> Vec<T> {
        let count = match pts {
            // Through the newest timed frame it covers: untimed frames
            // before that one are covered too, those after it are not.
            Some(out) => self
                .frames
                .iter()
                .rposition(|(pts, _)| pts.is_some_and(|p| p <= out))
                .map_or(0, |newest| newest + 1),
            None => self.frames.len().min(1),
        };
        self.frames.drain(..count).map(|(_, f)| f).collect()
    }

    /// Takes every frame still uncovered, oldest first, and how many were
    /// let go since the last take because the window was full.
    pub fn take(&mut self) -> (Vec<T>, u64) {
        let frames = self.frames.drain(..).map(|(_, f)| f).collect();
        (frames, std::mem::take(&mut self.lost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window_of(pts: &[u64]) -> Window<u64> {
        let mut w = Window::new(DEFAULT_CAPACITY);
        for &p in pts {
            assert!(w.push(Some(p), p).is_none());
        }
        w
    }

    #[test]
    fn output_covers_every_frame_up_to_its_timestamp() {
        let mut w = window_of(&[10, 20, 30, 40]);
        assert_eq!(w.cover(Some(20)), vec![10, 20]);
        // An output older than anything kept covers nothing.
        assert!(w.cover(Some(5)).is_empty());
        assert_eq!(w.take(), (vec![30, 40], 0));
        assert_eq!(w.take(), (vec![], 0));
    }

    #[test]
    fn a_frame_the_encoder_dropped_is_covered_by_the_next_output() {
        let mut w = window_of(&[10, 20, 30]);
        // 20 never came out (the encoder dropped it): 30's output covers it.
        assert_eq!(w.cover(Some(10)), vec![10]);
        assert_eq!(w.cover(Some(30)), vec![20, 30]);
    }

    #[test]
    fn untimed_output_covers_the_oldest_frame() {
        let mut w = Window::new(4);
        w.push(None, 'a');
        w.push(None, 'b');
        assert_eq!(w.cover(None), vec!['a']);
        // An untimed input ahead of a covered timed one is covered by it,
        // one after it is not.
        w.push(Some(5), 'c');
        w.push(None, 'd');
        assert_eq!(w.cover(Some(5)), vec!['b', 'c']);
        assert_eq!(w.cover(None), vec!['d']);
        assert!(w.cover(None).is_empty());
    }

    #[test]
    fn a_full_window_lets_the_oldest_frame_go_and_counts_it() {
        let mut w = Window::new(2);
        assert_eq!(w.push(Some(1), 1), None);
        assert_eq!(w.push(Some(2), 2), None);
        assert_eq!(w.push(Some(3), 3), Some(1));
        assert_eq!(w.push(Some(4), 4), Some(2));
        assert_eq!(w.take(), (vec![3, 4], 2));
        // The count restarts with each take.
        w.push(Some(5), 5);
        assert_eq!(w.take(), (vec![5], 0));
    }
}
