// SPDX-License-Identifier: MPL-2.0
//! The decoder's window as a guard's: the access units a decoder chain was
//! given, by running time and keyframe flag, fed from the last keyframe to a
//! replacement decoder.

use super::gop_window::GopWindow;
use crate::guard::frame::{Frame, Replay};
use crate::guard::watch::Coverage;

impl Coverage for GopWindow<Frame> {
    fn remember(&mut self, running_time: Option<u64>, frame: Frame) -> Vec<Frame> {
        let keyframe = frame.keyframe();
        self.push(running_time, keyframe, frame)
    }

    fn cover(&mut self, running_time: Option<u64>) -> Vec<Frame> {
        GopWindow::cover(self, running_time)
    }

    fn clear(&mut self) -> Vec<Frame> {
        GopWindow::clear(self)
    }

    fn take_replay(&mut self) -> Replay<Frame> {
        GopWindow::take_replay(self)
    }
}
