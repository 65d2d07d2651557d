// SPDX-License-Identifier: MPL-2.0
//! The access units a decoder chain was given, from the keyframe a
//! replacement decoder must start at: what a failover (or a reclaim) feeds the
//! new decoder so that it outputs every frame the old one had not.
//!
//! Output settles it by running time: a decoder outputs frames in
//! presentation order, so an output at `t` means every frame up to `t` has
//! left it. The window starts at the newest keyframe whose frame has been
//! output (in a closed GOP nothing before it is still to come), or at the
//! oldest keyframe kept while none has. Only references are kept, no copy.

use std::collections::VecDeque;

use crate::guard::frame::Replay;

/// Units kept at most: 20 s at 30 fps, more than the longest GOP cameras
/// are set to. Past it the oldest unit is let go; a replacement cannot start
/// before the next keyframe then, and what it cannot decode is counted lost.
pub const DEFAULT_CAPACITY: usize = 600;

#[derive(Debug)]
struct Unit<T> {
    running_time: Option<u64>,
    keyframe: bool,
    item: T,
}

#[derive(Debug)]
pub struct GopWindow<T> {
    units: VecDeque<Unit<T>>,
    capacity: usize,
    /// The newest running time the chain output.
    last_out: Option<u64>,
    /// Units let go while full that had not been output.
    lost: u64,
}

impl<T> Default for GopWindow<T> {
    fn default() -> Self {
        GopWindow::new(DEFAULT_CAPACITY)
    }
}

impl<T> GopWindow<T> {
    pub fn new(capacity: usize) -> Self {
        GopWindow {
            units: VecDeque::new(),
            capacity: capacity.max(1),
            last_out: None,
            lost: 0,
        }
    }

    fn output(&self, running_time: Option<u64>) -> bool {
        matches!((running_time, self.last_out), (Some(t), Some(out)) if t <= out)
    }

    /// Keeps a unit given to the chain; returns what no longer needs keeping,
    /// for the caller to drop outside its lock.
    pub fn push(&mut self, running_time: Option<u64>, keyframe: bool, item: T) -> Vec<T> {
        self.units.push_back(Unit {
            running_time,
            keyframe,
            item,
        });
        let mut released = self.trim();
        while self.units.len() > self.capacity {
            let unit = self.units.pop_front().expect("over capacity");
            if !self.output(unit.running_time) {
                self.lost += 1;
            }
            released.push(unit.item);
        }
        released
    }

    /// The chain output a frame at `running_time`.
    pub fn cover(&mut self, running_time: Option<u64>) -> Vec<T> {
        if let Some(t) = running_time {
            self.last_out = Some(self.last_out.map_or(t, |out| out.max(t)));
        }
        self.trim()
    }

    /// Drops everything before the newest keyframe that has been output.
    fn trim(&mut self) -> Vec<T> {
        let start = self
            .units
            .iter()
            .rposition(|u| u.keyframe && self.output(u.running_time))
            .unwrap_or(0);
        self.units.drain(..start).map(|u| u.item).collect()
    }

    /// Takes what a replacement needs, emptying the window.
    pub fn take_replay(&mut self) -> Replay<T> {
        let first_key = self.units.iter().position(|u| u.keyframe);
        let skip = first_key.unwrap_or(self.units.len());
        let never_output = self
            .units
            .iter()
            .take(skip)
            .filter(|u| !self.output(u.running_time))
            .count() as u64;
        let mut released: Vec<T> = self.units.drain(..).map(|u| u.item).collect();
        let units = released.split_off(skip);
        Replay {
            units,
            output_until: self.last_out,
            lost: std::mem::take(&mut self.lost) + never_output,
            needs_keyframe: first_key.is_none(),
            released,
        }
    }

    /// A flush or EOS out: nothing is pending, and running times start anew.
    pub fn clear(&mut self) -> Vec<T> {
        self.last_out = None;
        self.lost = 0;
        self.units.drain(..).map(|u| u.item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes units `(running time, keyframe)` labelled by running time.
    fn window_of(units: &[(u64, bool)]) -> GopWindow<u64> {
        let mut w = GopWindow::new(DEFAULT_CAPACITY);
        for &(t, key) in units {
            w.push(Some(t), key, t);
        }
        w
    }

    #[test]
    fn replay_starts_at_the_keyframe_of_the_frames_not_output() {
        // Two GOPs of three; the decoder output up to 40.
        let mut w = window_of(&[(0, true), (10, false), (20, false), (30, true), (40, false)]);
        assert_eq!(w.cover(Some(0)), Vec::<u64>::new());
        // The second keyframe came out: the first GOP is done with.
        assert_eq!(w.cover(Some(30)), vec![0, 10, 20]);
        w.cover(Some(40));
        w.push(Some(50), false, 50);
        let replay = w.take_replay();
        assert_eq!(replay.units, vec![30, 40, 50]);
        assert_eq!(replay.output_until, Some(40));
        assert_eq!((replay.lost, replay.needs_keyframe), (0, false));
    }

    #[test]
    fn frames_in_flight_across_a_keyframe_keep_the_older_gop() {
        // The decoder lags: the new keyframe went in, its frame not out yet.
        let mut w = window_of(&[(0, true), (10, false), (20, true)]);
        w.cover(Some(0));
        let replay = w.take_replay();
        assert_eq!(replay.units, vec![0, 10, 20]);
        assert_eq!(replay.output_until, Some(0));
    }

    #[test]
    fn b_frames_out_of_decode_order_are_settled_by_presentation_time() {
        // Decode order I0 P30 B10 B20 I60; presentation 0 10 20 30 60.
        let mut w = window_of(&[(0, true), (30, false), (10, false), (20, false), (60, true)]);
        w.cover(Some(20));
        let replay = w.take_replay();
        assert_eq!(replay.units, vec![0, 30, 10, 20, 60]);
        assert_eq!(replay.output_until, Some(20));
    }

    #[test]
    fn nothing_output_yet_replays_everything() {
        let mut w = window_of(&[(0, true), (10, false)]);
        let replay = w.take_replay();
        assert_eq!(replay.units, vec![0, 10]);
        assert_eq!(replay.output_until, None);
    }

    #[test]
    fn a_full_window_loses_its_keyframe_and_counts_what_no_decoder_outputs() {
        let mut w = GopWindow::new(3);
        for t in 0..5u64 {
            w.push(Some(t * 10), t == 0, t);
        }
        // Units 0 and 1 were let go; 2..4 are left without a keyframe.
        w.cover(Some(20));
        let replay = w.take_replay();
        assert!(replay.units.is_empty());
        assert!(replay.needs_keyframe);
        // 0 and 1 never came out (lost while full), 30 and 40 cannot be decoded.
        assert_eq!(replay.lost, 4);
    }

    #[test]
    fn clear_forgets_the_output_too() {
        let mut w = window_of(&[(0, true), (10, false)]);
        w.cover(Some(10));
        assert_eq!(w.clear(), vec![0, 10]);
        let replay = w.take_replay();
        assert_eq!((replay.units.len(), replay.output_until), (0, None));
    }
}
