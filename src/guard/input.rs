// SPDX-License-Identifier: MPL-2.0
//! What arrives on a guard's sink pad: buffers and buffer lists go through
//! the same watch.

use gst::prelude::*;

#[derive(Debug, Clone)]
pub enum Input {
    Buffer(gst::Buffer),
    List(gst::BufferList),
}

impl Input {
    pub fn push<O: IsA<gst::Object>>(
        self,
        pad: &gst::GhostPad,
        parent: &O,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        match self {
            Input::Buffer(buffer) => gst::ProxyPad::chain_default(pad, Some(parent), buffer),
            Input::List(list) => gst::ProxyPad::chain_list_default(pad, Some(parent), list),
        }
    }

    /// The timestamp of the first buffer.
    pub fn pts(&self) -> Option<gst::ClockTime> {
        match self {
            Input::Buffer(buffer) => buffer.pts(),
            Input::List(list) => list.get(0).and_then(|b| b.pts()),
        }
    }

    /// Every buffer, in order.
    pub fn buffers(&self) -> Vec<gst::Buffer> {
        match self {
            Input::Buffer(buffer) => vec![buffer.clone()],
            Input::List(list) => list.iter_owned().collect(),
        }
    }
}
