// SPDX-License-Identifier: MPL-2.0
//! The access units a decoder chain's watch keeps, by running time and
//! keyframe flag, in a `GopWindow`.

use gst::prelude::*;

use super::gop_window::{self, GopWindow, Replay};
use crate::guard::input::Input;
use crate::guard::watch::{self, ChainWatch, Coverage, Keep};

/// An access unit given to the chain, with the caps it was given under: a
/// replacement gets those caps again before units from before a caps change.
#[derive(Debug)]
pub struct Unit {
    pub buffer: gst::Buffer,
    pub caps: Option<gst::Caps>,
}

/// The watch of a decoder chain.
pub type Watch = ChainWatch<GopWindow<Unit>>;

impl Coverage for GopWindow<Unit> {
    type Released = Vec<Unit>;

    fn cover(&mut self, running_time: Option<u64>) -> Vec<Unit> {
        GopWindow::cover(self, running_time)
    }

    fn clear(&mut self) -> Vec<Unit> {
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
    let caps = pad.current_caps();
    let units: Vec<_> = input
        .buffers()
        .into_iter()
        .map(|buffer| {
            // A unit without a PTS goes by its DTS, never later than its PTS.
            let running_time = segment
                .as_ref()
                .and_then(|s| s.to_running_time(buffer.pts().or(buffer.dts())))
                .map(|t| t.nseconds());
            let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            let unit = Unit {
                buffer,
                caps: caps.clone(),
            };
            (running_time, keyframe, unit)
        })
        .collect();
    let released: Vec<_> = watch.with_window(|window| {
        units
            .into_iter()
            .flat_map(|(running_time, keyframe, unit)| window.push(running_time, keyframe, unit))
            .collect()
    });
    drop(released);
}

/// What a replacement for the watched chain is fed.
pub fn take_replay(watch: &Watch) -> Replay<Unit> {
    watch.with_window(GopWindow::take_replay)
}
