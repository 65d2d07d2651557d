// SPDX-License-Identifier: MPL-2.0
//! delaybuffer: an N-second zero-copy delay for one branch of a tee. It holds
//! references to buffers (system, DMABuf, NVMM or CUDA memory) and shifts the
//! running time of its src pad, instead of copying frames or adding latency.

use gst::glib;
use gst::prelude::*;

mod allocation;
mod flow;
mod imp;
mod latency;
mod pacing;
mod reader;
mod short_pool;
mod tap_pad;
mod window;

/// What to do when a `max-size-*` bound is hit.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstDelayBufferLeaky")]
pub enum Leaky {
    #[default]
    #[enum_value(name = "Not leaky: block upstream until there is room", nick = "no")]
    No = 0,
    #[enum_value(
        name = "Leaky on downstream: drop the oldest held buffer",
        nick = "downstream"
    )]
    Downstream = 2,
}

/// What to do with held buffers whose pool cannot spare them.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstDelayBufferShortPool")]
pub enum ShortPool {
    #[default]
    #[enum_value(
        name = "Copy the oldest held buffers of a pool that cannot grow, so the source never waits",
        nick = "copy"
    )]
    Copy = 0,
    #[enum_value(
        name = "Hold references only: the source waits for its buffers, and delaybuffer warns",
        nick = "wait"
    )]
    Wait = 1,
}

glib::wrapper! {
    pub struct DelayBuffer(ObjectSubclass<imp::DelayBuffer>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Leaky::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    ShortPool::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    tap_pad::TapPad::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "delaybuffer",
        gst::Rank::NONE,
        DelayBuffer::static_type(),
    )
}
