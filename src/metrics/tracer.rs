// SPDX-License-Identifier: MPL-2.0
//! `GST_TRACERS="edgeguard-metrics(address=...,textfile=...,interval=...)"`.
//!
//! The tracer registers no hook: hooks turn on GStreamer's hook dispatch for
//! every pad push of the process. The elements publish to the registry
//! themselves; the tracer only starts the exporter. GStreamer drops its
//! reference to a tracer right after creating it (hook registrations keep
//! tracers alive), so the exporter lives on its own for the process.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::CAT;
use super::exporter;
use super::params;

glib::wrapper! {
    pub struct MetricsTracer(ObjectSubclass<imp::MetricsTracer>) @extends gst::Tracer, gst::Object;
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct MetricsTracer;

    #[glib::object_subclass]
    impl ObjectSubclass for MetricsTracer {
        const NAME: &'static str = "GstEdgeguardMetricsTracer";
        type Type = super::MetricsTracer;
        type ParentType = gst::Tracer;
    }

    impl ObjectImpl for MetricsTracer {
        fn constructed(&self) {
            self.parent_constructed();
            let text = self.obj().property::<Option<String>>("params");
            let (params, problems) = params::parse(text.as_deref());
            for problem in problems {
                gst::warning!(CAT, imp = self, "params: {problem}");
            }
            if params.address.is_none() && params.textfile.is_none() {
                gst::warning!(
                    CAT,
                    imp = self,
                    "neither address nor textfile given: nothing is exported"
                );
            }
            exporter::start_for_process(&params);
        }
    }

    impl GstObjectImpl for MetricsTracer {}

    impl TracerImpl for MetricsTracer {}
}

pub const TRACER_NAME: &str = "edgeguard-metrics";

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Tracer::register(Some(plugin), TRACER_NAME, MetricsTracer::static_type())
}
