// SPDX-License-Identifier: MPL-2.0
//! The process-wide tracer behind every leakcheck element, and the
//! `leakchecktracer` tracer of GST_TRACERS.
//!
//! Hooks cannot be unregistered, so there is one tracer instance per process,
//! created when the first leakcheck element needs it (or by GST_TRACERS). It
//! keeps only weak references. Hooks run on arbitrary threads, sometimes with
//! an element's state lock held: they update the ledger under a short lock and
//! do everything else (posting, logging, writing files) after releasing it.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::ledger::{self, Tracker};
use super::report::{Finding, Report};

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "leakcheck",
        gst::DebugColorFlags::empty(),
        Some("Pipeline leak checker"),
    )
});

/// Every tracked top-level pipeline, by address.
#[derive(Default)]
pub struct Registry {
    /// GST_TRACERS=leakcheck: every pipeline of the process, not only those
    /// with a leakcheck element in them.
    pub watch_all: bool,
    pub trackers: HashMap<usize, Tracker>,
}

impl Registry {
    /// Starts tracking a pipeline, replacing a tracker left by a dead pipeline
    /// at the same address, and forgetting trackers nobody can ask about.
    pub fn insert_tracker(
        &mut self,
        top: &gst::Element,
        settings: ledger::Settings,
    ) -> &mut Tracker {
        self.trackers.retain(|_, t| {
            t.pipeline.upgrade().is_some()
                || t.watcher.as_ref().is_some_and(|w| w.upgrade().is_some())
        });
        let k = key(top);
        let stale = self
            .trackers
            .get(&k)
            .is_some_and(|t| t.pipeline.upgrade().as_ref() != Some(top));
        if stale {
            self.trackers.remove(&k);
        }
        let tracker = self
            .trackers
            .entry(k)
            .or_insert_with(|| Tracker::new(top, settings.clone()));
        tracker.settings = settings;
        tracker.add(top);
        tracker
    }
}

pub static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);
static HOOKS_INSTALLED: AtomicBool = AtomicBool::new(false);
/// Set while an element creates the runtime instance: that one is scoped.
static CREATING_SCOPED: AtomicBool = AtomicBool::new(false);
static RUNTIME_TRACER: std::sync::OnceLock<LeakTracer> = std::sync::OnceLock::new();

pub fn key(element: &impl IsA<gst::Object>) -> usize {
    element.as_ref().as_ptr() as usize
}

/// Makes sure the hooks are installed (creating the runtime instance if
/// GST_TRACERS did not).
pub fn ensure_hooks() {
    if HOOKS_INSTALLED.load(Ordering::SeqCst) {
        return;
    }
    RUNTIME_TRACER.get_or_init(|| {
        CREATING_SCOPED.store(true, Ordering::SeqCst);
        let tracer = glib::Object::new::<LeakTracer>();
        CREATING_SCOPED.store(false, Ordering::SeqCst);
        tracer
    });
}

/// The tracker of an element's top-level pipeline, created when every pipeline is watched.
fn with_tracker<R>(
    element: &gst::Element,
    f: impl FnOnce(&mut Tracker, &gst::Element) -> R,
) -> Option<R> {
    let top = ledger::top_level(element);
    let mut registry = REGISTRY.lock();
    let k = key(&top);
    let known = registry
        .trackers
        .get(&k)
        .is_some_and(|t| t.pipeline.upgrade().is_some());
    if !known {
        if !(registry.watch_all && top.is::<gst::Pipeline>()) {
            // Not watched, or a pipeline being disposed (its weak reference is
            // already cleared): its last report stays as it is.
            return None;
        }
        registry.insert_tracker(&top, ledger::Settings::default());
    }
    let tracker = registry.trackers.get_mut(&k)?;
    Some(f(tracker, &top))
}

/// Where findings go once the ledger lock is released.
struct Outlet {
    pipeline: Option<gst::Element>,
    watcher: Option<gst::Element>,
    settings: ledger::Settings,
}

impl Outlet {
    fn of(tracker: &Tracker) -> Self {
        Outlet {
            pipeline: tracker.pipeline.upgrade(),
            watcher: tracker.watcher.as_ref().and_then(|w| w.upgrade()),
            settings: tracker.settings.clone(),
        }
    }

    fn source(&self) -> Option<&gst::Element> {
        self.watcher.as_ref().or(self.pipeline.as_ref())
    }

    /// A WARNING (or with fail-on-leak an ERROR) on the bus, if it delivers.
    fn post_finding(&self, finding: &Finding) -> bool {
        let Some(src) = self.source() else {
            return false;
        };
        let text = format!("leakcheck: {}", finding.describe());
        let msg = if self.settings.fail_on_leak {
            gst::message::Error::builder(gst::CoreError::StateChange, &text)
                .src(src)
                .build()
        } else {
            gst::message::Warning::builder(gst::CoreError::StateChange, &text)
                .src(src)
                .build()
        };
        src.post_message(msg).is_ok()
    }

    fn post_report(&self, report: &Report) {
        if let Some(src) = self.source() {
            let _ = src.post_message(
                gst::message::Element::builder(report.to_structure())
                    .src(src)
                    .build(),
            );
        }
    }

    /// A judged report: log, file, property notification, and fail-on-leak.
    fn publish(&self, report: &Report) {
        for finding in &report.findings {
            gst::warning!(CAT, "{}: {}", report.pipeline, finding.describe());
        }
        gst::info!(
            CAT,
            "{}: cycle {} judged, {} finding(s)",
            report.pipeline,
            report.cycles,
            report.findings.len()
        );
        if let Some(path) = &self.settings.report_file
            && let Err(err) = std::fs::write(path, report.to_json())
        {
            gst::error!(CAT, "report-file {}: {err}", path.display());
        }
        if let Some(watcher) = &self.watcher {
            watcher.notify("leaks");
        }
        if self.settings.fail_on_leak && !report.findings.is_empty() {
            // After READY->NULL the pipeline's bus is flushing: an ERROR would be lost.
            let delivered = self.source().is_some_and(|src| {
                src.post_message(
                    gst::message::Error::builder(
                        gst::CoreError::StateChange,
                        &format!(
                            "leakcheck: {} finding(s) in {}",
                            report.findings.len(),
                            report.pipeline
                        ),
                    )
                    .src(src)
                    .build(),
                )
                .is_ok()
            });
            if !delivered {
                glib::g_critical!(
                    "leakcheck",
                    "{} finding(s) in {}: {}",
                    report.findings.len(),
                    report.pipeline,
                    report
                        .findings
                        .iter()
                        .map(Finding::describe)
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
        }
    }
}

/// Judges a pipeline's cycle after its grace, unless it started again meanwhile.
fn schedule_judgement(k: usize, grace: gst::ClockTime) {
    let judge = move || {
        let judged = {
            let mut registry = REGISTRY.lock();
            let Some(tracker) = registry.trackers.get_mut(&k) else {
                return;
            };
            if tracker.running {
                return;
            }
            (tracker.judge(), Outlet::of(tracker))
        };
        judged.1.publish(&judged.0);
    };
    if grace.is_zero() {
        judge();
    } else {
        std::thread::Builder::new()
            .name("leakcheck-judge".into())
            .spawn(move || {
                std::thread::sleep(grace.into());
                judge();
            })
            .expect("a thread can be started");
    }
}

/// Prints every tracked pipeline's report: GST_TRACERS mode, at process exit.
extern "C" fn report_at_exit() {
    let reports: Vec<Report> = {
        let mut registry = REGISTRY.lock();
        registry.trackers.values_mut().map(Tracker::judge).collect()
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
            if !CREATING_SCOPED.load(Ordering::SeqCst) {
                // Created by GST_TRACERS: watch every pipeline, report at exit.
                REGISTRY.lock().watch_all = true;
                // SAFETY: registers a plain extern "C" fn with no arguments.
                unsafe { libc::atexit(report_at_exit) };
            }
            if HOOKS_INSTALLED.swap(true, Ordering::SeqCst) {
                return;
            }
            use gst::subclass::prelude::TracerHook;
            self.register_hook(TracerHook::ElementChangeStatePre);
            self.register_hook(TracerHook::ElementChangeStatePost);
            self.register_hook(TracerHook::BinAddPost);
            self.register_hook(TracerHook::BinRemovePre);
        }
    }

    impl GstObjectImpl for LeakTracer {}

    impl TracerImpl for LeakTracer {
        fn element_change_state_pre(
            &self,
            _ts: u64,
            element: &gst::Element,
            change: gst::StateChange,
        ) {
            if change == gst::StateChange::NullToReady {
                with_tracker(element, |tracker, _| tracker.starting());
            }
        }

        fn element_change_state_post(
            &self,
            ts: u64,
            element: &gst::Element,
            change: gst::StateChange,
            result: Result<gst::StateChangeSuccess, gst::StateChangeError>,
        ) {
            let action = with_tracker(element, |tracker, top| {
                tracker.transition(element, change, result, ts);
                if element != top {
                    return None;
                }
                match change {
                    gst::StateChange::PausedToReady => {
                        Some((Some(tracker.interim_report()), None, Outlet::of(tracker)))
                    }
                    gst::StateChange::ReadyToNull => {
                        tracker.running = false;
                        Some((None, Some(tracker.settings.grace), Outlet::of(tracker)))
                    }
                    _ => None,
                }
            })
            .flatten();
            match action {
                // The bus still delivers at PAUSED->READY: say what is known.
                Some((Some(report), _, outlet)) => outlet.post_report(&report),
                Some((None, Some(grace), _)) => schedule_judgement(key(element), grace),
                _ => (),
            }
        }

        fn bin_add_post(&self, _ts: u64, bin: &gst::Bin, element: &gst::Element, success: bool) {
            if !success {
                return;
            }
            with_tracker(bin.upcast_ref(), |tracker, _| tracker.add(element));
            // A leakcheck element (or a bin holding one) joined a pipeline:
            // track that pipeline from now on, before its first state change.
            let mut checks: Vec<super::super::LeakCheck> = Vec::new();
            if let Some(check) = element.downcast_ref::<super::super::LeakCheck>() {
                checks.push(check.clone());
            } else if let Some(inner) = element.downcast_ref::<gst::Bin>() {
                checks.extend(
                    inner
                        .iterate_recurse()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.downcast::<super::super::LeakCheck>().ok()),
                );
            }
            for check in checks {
                check.track_top_level();
            }
        }

        fn bin_remove_pre(&self, _ts: u64, bin: &gst::Bin, element: &gst::Element) {
            let found = with_tracker(bin.upcast_ref(), |tracker, _| {
                tracker.removing(element).map(|f| (f, Outlet::of(tracker)))
            })
            .flatten();
            if let Some((finding, outlet)) = found {
                gst::warning!(CAT, "{}", finding.describe());
                outlet.post_finding(&finding);
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
