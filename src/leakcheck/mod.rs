// SPDX-License-Identifier: MPL-2.0
//! leakcheck: tracks every state transition in its pipeline and reports the
//! elements that never went back to NULL, and the objects and device handles
//! they left behind. Also the `leakchecktracer` tracer (GST_TRACERS=leakchecktracer).

use gst::glib;
use gst::prelude::*;

/// leakcheck's debug category, for the element, the tracker and the judge.
static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new(
        "leakcheck",
        gst::DebugColorFlags::empty(),
        Some("Pipeline leak checker"),
    )
});

mod events;
mod fdinfo;
mod fds;
mod following;
mod identity;
mod imp;
mod judge;
mod ledger;
mod observe;
mod paths;
mod patterns;
mod registry;
mod report;
mod tracer;
mod watch;
mod worker;

glib::wrapper! {
    pub struct LeakCheck(ObjectSubclass<imp::LeakCheck>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "leakcheck",
        gst::Rank::NONE,
        LeakCheck::static_type(),
    )?;
    tracer::register(plugin)
}
