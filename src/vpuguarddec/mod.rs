// SPDX-License-Identifier: MPL-2.0
//! vpuguarddec: a decoder bin that picks a hardware (VPU) or a software
//! decoder at negotiation time from the machine-wide VPU session budget it
//! shares with vpuguardenc, and fails over mid-stream from the last keyframe.

use gst::glib;
use gst::prelude::*;

mod candidates;
mod gop_window;
mod imp;
mod units;

crate::guard::mode::guard_mode!("GstVpuGuardDecMode");

glib::wrapper! {
    pub struct VpuGuardDec(ObjectSubclass<imp::VpuGuardDec>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Mode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "vpuguarddec",
        gst::Rank::NONE,
        VpuGuardDec::static_type(),
    )
}
