// SPDX-License-Identifier: MPL-2.0
//! The encoder's window as a guard's: the frames an encoder chain was given
//! and has not output yet, all of them sent to a replacement encoder.

use super::window::Window;
use crate::guard::frame::{Frame, Replay};
use crate::guard::watch::Coverage;

impl Coverage for Window<Frame> {
    fn remember(&mut self, running_time: Option<u64>, frame: Frame) -> Vec<Frame> {
        self.push(running_time, frame).into_iter().collect()
    }

    fn cover(&mut self, running_time: Option<u64>) -> Vec<Frame> {
        Window::cover(self, running_time)
    }

    fn clear(&mut self) -> Vec<Frame> {
        self.take().0
    }

    fn take_replay(&mut self) -> Replay<Frame> {
        let (frames, lost) = self.take();
        Replay::all(frames, lost)
    }
}
