// SPDX-License-Identifier: MPL-2.0
//! Fleet metrics: the elements publish their values to a process-wide
//! registry; the `edgeguard-metrics` tracer exports it over HTTP (Prometheus
//! text or OpenMetrics) and as a node_exporter textfile. See docs/metrics.md.

use std::sync::LazyLock;

mod connections;
mod encode;
mod exporter;
mod http;
mod params;
mod registry;
mod sample;
mod textfile;
mod tracer;

pub use registry::{Handle, publish};
pub use sample::{Decision, DelayStats, GuardStats, LeakStats, Sample, Switch};
pub use tracer::register;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "edgeguard-metrics",
        gst::DebugColorFlags::empty(),
        Some("edgeguard metrics exporter"),
    )
});
