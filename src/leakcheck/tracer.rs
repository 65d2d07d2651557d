// SPDX-License-Identifier: MPL-2.0
//! `GST_TRACERS=leakchecktracer`: every pipeline of the process, watched
//! through tracer hooks (the element mode needs none, see `watch`), with a
//! summary on stderr at exit.
//!
//! Hooks run on arbitrary threads, sometimes with an element's state lock
//! held: they hand what they see to `events`, which keeps the registry lock
//! short and never calls into GStreamer under it.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::events;
use super::ledger::Observed;
use super::registry::REGISTRY;
use super::report::Report;
use std::sync::Arc;

/// Prints every tracked pipeline's report at exit. A cycle still within its
/// grace is judged from the ledger alone (the states its elements ended in
/// and the handles open when it ended): no GStreamer call runs at exit.
extern "C" fn report_at_exit() {
    let reports: Vec<Arc<Report>> = {
        let mut registry = REGISTRY.lock();
        let mut reports: Vec<Arc<Report>> = registry.finished.drain(..).collect();
        for tracker in registry.trackers.values_mut() {
            for cycle in tracker.claim_all() {
                tracker.judge(&cycle, &Observed::default());
            }
            reports.push(tracker.report.clone());
        }
        reports
    };
    for report in reports {
        eprintln!(
            "leakcheck: {}: {} finding(s) after {} cycle(s)",
            report.pipeline,
            report.findings.len(),
            report.cycles
        );
        for finding in &report.findings {
            eprintln!("leakcheck:   {}: {}", finding.kind(), finding.describe());
        }
    }
}

fn result_name(result: Result<gst::StateChangeSuccess, gst::StateChangeError>) -> &'static str {
    match result {
        Ok(gst::StateChangeSuccess::Success) => "success",
        Ok(gst::StateChangeSuccess::Async) => "async",
        Ok(gst::StateChangeSuccess::NoPreroll) => "no-preroll",
        Err(_) => "failure",
    }
}

glib::wrapper! {
    pub struct LeakTracer(ObjectSubclass<imp::LeakTracer>) @extends gst::Tracer, gst::Object;
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct LeakTracer;

    #[glib::object_subclass]
    impl ObjectSubclass for LeakTracer {
        const NAME: &'static str = "GstLeakCheckTracer";
        type Type = super::LeakTracer;
        type ParentType = gst::Tracer;
    }

    impl ObjectImpl for LeakTracer {
        fn constructed(&self) {
            self.parent_constructed();
            {
                let mut registry = REGISTRY.lock();
                if registry.watch_all {
                    // One instance per process reports; a second adds nothing.
                    return;
                }
                registry.watch_all = true;
            }
            // SAFETY: registers a plain extern "C" fn with no arguments.
            unsafe { libc::atexit(report_at_exit) };
            use gst::subclass::prelude::TracerHook;
            self.register_hook(TracerHook::ElementChangeStatePost);
            self.register_hook(TracerHook::BinAddPost);
            self.register_hook(TracerHook::BinRemovePre);
        }
    }

    impl GstObjectImpl for LeakTracer {}

    impl TracerImpl for LeakTracer {
        fn element_change_state_post(
            &self,
            _ts: u64,
            element: &gst::Element,
            change: gst::StateChange,
            result: Result<gst::StateChangeSuccess, gst::StateChangeError>,
        ) {
            let Some((tracker, top)) = events::tracker_of(element) else {
                return;
            };
            events::state_changed(tracker, element, change, result_name(result));
            if *element == top && change == gst::StateChange::ReadyToNull {
                events::cycle_ended(tracker);
            }
        }

        fn bin_add_post(&self, _ts: u64, bin: &gst::Bin, element: &gst::Element, success: bool) {
            if success && let Some((tracker, _)) = events::tracker_of(bin.upcast_ref()) {
                events::element_added(tracker, element);
            }
        }

        fn bin_remove_pre(&self, _ts: u64, bin: &gst::Bin, element: &gst::Element) {
            if let Some((tracker, top)) = events::tracker_of(bin.upcast_ref()) {
                events::element_removed(tracker, &top, element);
            }
        }
    }
}

/// The tracer's name for GST_TRACERS. Not "leakcheck": a registry holds one
/// feature per name, and the element already has that one (a tracer of the same
/// name would replace it).
pub const TRACER_NAME: &str = "leakchecktracer";

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Tracer::register(Some(plugin), TRACER_NAME, LeakTracer::static_type())
}
