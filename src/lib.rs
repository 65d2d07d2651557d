// SPDX-License-Identifier: MPL-2.0

//! edgeguard: GStreamer elements that keep edge video pipelines alive when
//! hardware (VPU sessions, GPU memory bandwidth, device handles) is scarce.

use gst::glib;

mod atomic_file;
mod delaybuffer;
mod factory_caps;
mod guard;
mod leakcheck;
mod metrics;
mod pad_templates;

#[cfg(test)]
mod fuzz;
#[doc(hidden)]
pub mod vpu;
mod vpuguarddec;
mod vpuguardenc;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    delaybuffer::register(plugin)?;
    leakcheck::register(plugin)?;
    metrics::register(plugin)?;
    vpuguarddec::register(plugin)?;
    vpuguardenc::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    edgeguard,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    // The GStreamer license string for MPL-2.0.
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
