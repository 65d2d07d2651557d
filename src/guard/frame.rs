// SPDX-License-Identifier: MPL-2.0
//! What a guard keeps of its child chain's input for a replacement: a frame
//! (an encoder's raw picture, a decoder's access unit) with the caps it came
//! under, and what a switch hands the replacement.

use gst::prelude::*;

use super::input::Input;
use super::watch::{ChainWatch, Coverage, time_segment};

/// A buffer given to the chain, with the caps it was given under: a
/// replacement gets those caps again before frames from before a caps change.
#[derive(Debug)]
pub struct Frame {
    pub buffer: gst::Buffer,
    pub caps: Option<gst::Caps>,
}

impl Frame {
    /// Whether a decoder could start on it.
    pub fn keyframe(&self) -> bool {
        !self.buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
    }
}

/// What a replacement chain is fed.
#[derive(Debug, PartialEq, Eq)]
pub struct Replay<T> {
    /// In the order the old chain got them.
    pub units: Vec<T>,
    /// Output of the replacement at or before this running time was output
    /// already: it is dropped.
    pub output_until: Option<u64>,
    /// Frames no chain will output: let go from a full window, or before
    /// the first keyframe kept.
    pub lost: u64,
    /// No keyframe was kept: the replacement must wait for the next one.
    pub needs_keyframe: bool,
    /// Units of no use to the replacement, dropped by the caller outside
    /// its lock.
    pub released: Vec<T>,
}

impl<T> Replay<T> {
    /// Everything in `units`, nothing else to do.
    pub fn all(units: Vec<T>, lost: u64) -> Self {
        Replay {
            units,
            output_until: None,
            lost,
            needs_keyframe: false,
            released: Vec::new(),
        }
    }
}

/// What a mid-stream switch did with the frames in flight.
#[derive(Debug, Clone, Default)]
pub struct SwitchReport {
    /// Frames the old chain never output, sent to the new one.
    pub replayed: u64,
    /// Frames let go: neither chain had them.
    pub lost: u64,
    /// The running time of the first frame the new chain got.
    pub first_running_time: Option<gst::ClockTime>,
}

/// Keeps a reference (no copy) to each buffer about to go to the chain
/// through `pad`. A buffer without a PTS goes by its DTS.
pub fn remember<W: Coverage + std::fmt::Debug>(
    watch: &ChainWatch<W>,
    pad: &gst::Pad,
    input: &Input,
) {
    let segment = time_segment(pad);
    let caps = pad.current_caps();
    let frames: Vec<_> = input
        .buffers()
        .into_iter()
        .map(|buffer| {
            let running_time = segment
                .as_ref()
                .and_then(|s| s.to_running_time(buffer.pts().or(buffer.dts())))
                .map(|t| t.nseconds());
            let frame = Frame {
                buffer,
                caps: caps.clone(),
            };
            (running_time, frame)
        })
        .collect();
    let released: Vec<_> = watch.with_window(|window| {
        frames
            .into_iter()
            .flat_map(|(running_time, frame)| window.remember(running_time, frame))
            .collect()
    });
    drop(released);
}
