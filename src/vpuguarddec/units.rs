// SPDX-License-Identifier: MPL-2.0
//! The access units a decoder chain's watch keeps, by running time and
//! keyframe flag, in a `GopWindow`.

use super::gop_window::{self, GopWindow, Replay};
use crate::guard::input::Input;
use crate::guard::watch::{self, ChainWatch, Coverage, Keep};

/// The watch of a decoder chain.
pub type Watch = ChainWatch<GopWindow<gst::Buffer>>;

impl Coverage for GopWindow<gst::Buffer> {
    type Released = Vec<gst::Buffer>;

    fn cover(&mut self, running_time: Option<u64>) -> Vec<gst::Buffer> {
        GopWindow::cover(self, running_time)
    }

    fn clear(&mut self) -> Vec<gst::Buffer> {
        GopWindow::clear(self)
    }
}

/// A watch for the chain whose decoder is `decoder` and last element `last`.
pub fn watch(
    decoder: gst::Element,
    hardware: bool,
    keep: Keep,
    last: &gst::Element,
) -> std::sync::Arc<Watch> {
    let window = GopWindow::new(gop_window::DEFAULT_CAPACITY);
    ChainWatch::new(decoder, hardware, keep, last, window)
}

/// Keeps a reference (no copy) to each access unit about to go to the chain
/// through `pad`.
pub fn remember(watch: &Watch, pad: &gst::Pad, input: &Input) {
    let segment = watch::time_segment(pad);
    let units: Vec<_> = input
        .buffers()
        .into_iter()
        .map(|buffer| {
            let running_time = segment
                .as_ref()
                .and_then(|s| s.to_running_time(buffer.pts()))
                .map(|t| t.nseconds());
            let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            (running_time, keyframe, buffer)
        })
        .collect();
    let released: Vec<_> = watch.with_window(|window| {
        units
            .into_iter()
            .flat_map(|(running_time, keyframe, buffer)| {
                window.push(running_time, keyframe, buffer)
            })
            .collect()
    });
    drop(released);
}

/// What a replacement for the watched chain is fed.
pub fn take_replay(watch: &Watch) -> Replay<gst::Buffer> {
    watch.with_window(GopWindow::take_replay)
}
