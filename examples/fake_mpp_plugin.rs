// SPDX-License-Identifier: MPL-2.0
//! The MPP test doubles of tests/common (fakempph265enc, fakempph264enc,
//! fakemppvideodec) as a plugin that gst-launch-1.0 and gst-validate-1.0 load
//! from GST_PLUGIN_PATH, so that outside tools can drive the guards' hardware
//! path on a machine without a VPU:
//!
//! ```sh
//! cargo build --example gstfakempp
//! GST_PLUGIN_PATH=target/debug/examples:target/debug gst-launch-1.0 \
//!   videotestsrc num-buffers=300 ! vpuguardenc hw-encoder=fakempph265enc ... ! fakesink
//! ```
//!
//! Test code only: never packaged.

// The tests' helpers around the doubles are not used here.
#[allow(dead_code)]
#[path = "../tests/common/fake_mpp.rs"]
mod fake_mpp;
#[allow(dead_code)]
#[path = "../tests/common/fake_mpp_core.rs"]
mod fake_mpp_core;
#[allow(dead_code)]
#[path = "../tests/common/fake_mpp_dec.rs"]
mod fake_mpp_dec;

use gst::glib;
use gst::prelude::*;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    let doubles = [
        (
            fake_mpp::FACTORY_NAME,
            fake_mpp::FakeMppH265Enc::static_type(),
        ),
        (
            fake_mpp::H264_FACTORY_NAME,
            fake_mpp::FakeMppH264Enc::static_type(),
        ),
        (
            fake_mpp_dec::FACTORY_NAME,
            fake_mpp_dec::FakeMppVideoDec::static_type(),
        ),
    ];
    for (name, type_) in doubles {
        gst::Element::register(Some(plugin), name, gst::Rank::NONE, type_)?;
    }
    Ok(())
}

gst::plugin_define!(
    fakempp,
    "MPP test doubles of edgeguard (test code, never packaged)",
    plugin_init,
    env!("CARGO_PKG_VERSION"),
    "MPL-2.0",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
