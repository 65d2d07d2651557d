// SPDX-License-Identifier: MPL-2.0
//! vpuguardenc: an encoder bin that picks a hardware (VPU) or a software encoder
//! at negotiation time from the machine-wide VPU session budget.

use gst::glib;
use gst::prelude::*;

mod codec;
mod frames;
mod imp;
mod stream_format;
mod window;

crate::guard::mode::guard_mode!("GstVpuGuardEncMode");

glib::wrapper! {
    pub struct VpuGuardEnc(ObjectSubclass<imp::VpuGuardEnc>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Mode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "vpuguardenc",
        gst::Rank::NONE,
        VpuGuardEnc::static_type(),
    )
}
