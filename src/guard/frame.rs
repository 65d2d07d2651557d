// SPDX-License-Identifier: MPL-2.0
//! What a guard keeps of its child chain's input for a replacement: a frame
//! (an encoder's raw picture, a decoder's access unit) with the caps it came
//! under, and what a switch hands the replacement.

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
