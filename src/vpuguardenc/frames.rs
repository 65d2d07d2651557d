// SPDX-License-Identifier: MPL-2.0
//! The frames an encoder chain was given and has not output yet, kept by the
//! chain's watch: what a replacement encoder is sent at a switch.

use gst::prelude::*;

use super::window::{self, Window};
use crate::guard::input::Input;
use crate::guard::watch::{self, ChainWatch, Coverage, Keep};

/// A frame given to the chain, with the caps it was given under: a
/// replacement gets the caps again before frames from before a caps change.
#[derive(Debug)]
pub struct Frame {
    pub buffer: gst::Buffer,
    pub caps: Option<gst::Caps>,
}

/// The watch of an encoder chain.
pub type Watch = ChainWatch<Window<Frame>>;

impl Coverage for Window<Frame> {
    type Released = Vec<Frame>;

    fn cover(&mut self, running_time: Option<u64>) -> Vec<Frame> {
        Window::cover(self, running_time)
    }

    fn clear(&mut self) -> Vec<Frame> {
        self.take().0
    }
}

/// A watch for the encoder chain whose encoder is `encoder` and whose last
/// element is `last`.
pub fn watch(
    encoder: gst::Element,
    hardware: bool,
    keep: Keep,
    last: &gst::Element,
) -> std::sync::Arc<Watch> {
    let window = Window::new(window::DEFAULT_CAPACITY);
    ChainWatch::new(encoder, hardware, keep, last, window)
}

/// Keeps a reference (no copy) to each frame about to go to the chain
/// through `pad`.
pub fn remember(watch: &Watch, pad: &gst::Pad, input: &Input) {
    let segment = watch::time_segment(pad);
    let caps = pad.current_caps();
    let frames: Vec<_> = input
        .buffers()
        .into_iter()
        .map(|buffer| {
            let running_time = segment
                .as_ref()
                .and_then(|s| s.to_running_time(buffer.pts()))
                .map(|t| t.nseconds());
            let frame = Frame {
                buffer,
                caps: caps.clone(),
            };
            (running_time, frame)
        })
        .collect();
    let evicted: Vec<_> = watch.with_window(|window| {
        frames
            .into_iter()
            .filter_map(|(running_time, frame)| window.push(running_time, frame))
            .collect()
    });
    drop(evicted);
}

/// Takes the frames that never came out, oldest first, and how many were
/// let go because the window was full.
pub fn take_uncovered(watch: &Watch) -> (Vec<Frame>, u64) {
    watch.with_window(Window::take)
}
