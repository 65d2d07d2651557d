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

/// How the guard may choose.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstVpuGuardDecMode")]
pub enum Mode {
    #[default]
    #[enum_value(
        name = "Hardware while a VPU slot is free, software otherwise",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(
        name = "Hardware only: fail with an error when no VPU slot is free",
        nick = "hardware"
    )]
    Hardware = 1,
    #[enum_value(name = "Software only: never touch the VPU", nick = "software")]
    Software = 2,
}

impl From<Mode> for crate::vpu::decision::Mode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Auto => Self::Auto,
            Mode::Hardware => Self::Hardware,
            Mode::Software => Self::Software,
        }
    }
}

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
