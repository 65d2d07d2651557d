// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

use super::CAT;
use super::events;
use super::fds;
use super::following::{Claim, Following};
use super::judge::{self, Demand};
use super::ledger;
use super::patterns::{DEFAULT_PATTERNS, DevicePatterns};
use super::registry::REGISTRY;
use super::report::{Finding, Report};
use super::watch::{self, Attachment};
use super::worker;
use crate::metrics::{self, LeakStats};

const DEFAULT_GRACE: u64 = gst::ClockTime::SECOND.nseconds();
const DEFAULT_FAIL_ON_LEAK: bool = false;

#[derive(Debug, Clone)]
struct Settings {
    report_file: String,
    device_patterns: String,
    session_file: String,
    grace: u64,
    fail_on_leak: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            report_file: String::new(),
            device_patterns: DEFAULT_PATTERNS.into(),
            session_file: String::new(),
            grace: DEFAULT_GRACE,
            fail_on_leak: DEFAULT_FAIL_ON_LEAK,
        }
    }
}

impl Settings {
    fn to_ledger(&self) -> Result<ledger::Settings, String> {
        let path = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        Ok(ledger::Settings {
            patterns: DevicePatterns::parse(&self.device_patterns)?,
            grace: gst::ClockTime::from_nseconds(self.grace),
            fail_on_leak: self.fail_on_leak,
            report_file: path(&self.report_file),
            session_file: path(&self.session_file),
        })
    }
}

/// What this element watches. Never held together with the registry lock,
/// and nothing is called into GStreamer with it held: taken out, then acted on.
#[derive(Default)]
struct Watching {
    /// The tracked top-level pipeline, and who is switching to another one.
    following: Following,
    /// Handlers on that pipeline and its bus (none in GST_TRACERS mode).
    attachment: Option<Attachment>,
}

pub struct LeakCheck {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    watching: Mutex<Watching>,
    /// A look for the top-level pipeline is queued on the worker.
    look_queued: AtomicBool,
    metrics: OnceLock<metrics::Handle>,
}

#[glib::object_subclass]
impl ObjectSubclass for LeakCheck {
    const NAME: &'static str = "GstLeakCheck";
    type Type = super::LeakCheck;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        // Inline it is a pass-through: no per-buffer work beyond the push.
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|_pad, parent, buffer| {
                LeakCheck::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.srcpad.push(buffer),
                )
            })
            .chain_list_function(|_pad, parent, list| {
                LeakCheck::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.srcpad.push_list(list),
                )
            })
            .flags(
                gst::PadFlags::PROXY_CAPS
                    | gst::PadFlags::PROXY_ALLOCATION
                    | gst::PadFlags::PROXY_SCHEDULING,
            )
            .build();
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
            .flags(
                gst::PadFlags::PROXY_CAPS
                    | gst::PadFlags::PROXY_ALLOCATION
                    | gst::PadFlags::PROXY_SCHEDULING,
            )
            .build();
        LeakCheck {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            watching: Mutex::new(Watching::default()),
            look_queued: AtomicBool::new(false),
            metrics: OnceLock::new(),
        }
    }
}

impl ObjectImpl for LeakCheck {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("report-file")
                    .nick("Report file")
                    .blurb(
                        "Where to write the report as JSON, each time the pipeline is judged \
                         after returning to NULL and when this element is finalized",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("device-patterns")
                    .nick("Device patterns")
                    .blurb(
                        "Comma-separated globs of the open fds that count as device handles; \
                         'dmabuf' matches DMABuf fds",
                    )
                    .default_value(Some(DEFAULT_PATTERNS))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("session-file")
                    .nick("Session file")
                    .blurb(
                        "The kernel's MPP session listing, read once per judgement to report \
                         VPU sessions this process opened while the pipeline ran and left open \
                         (empty = /proc/mpp_service/sessions-summary, then the debugfs one)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("grace")
                    .nick("Grace")
                    .blurb(
                        "How long after the pipeline reached NULL before judging (ns); with 0 \
                         the judgement is due as soon as the pipeline is in NULL. Reading \
                         'leaks' or 'get-report' once it is due judges at once",
                    )
                    .default_value(DEFAULT_GRACE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("fail-on-leak")
                    .nick("Fail on leak")
                    .blurb(
                        "Findings become errors: an ERROR message while the bus delivers, \
                         a critical warning after the pipeline is in NULL",
                    )
                    .default_value(DEFAULT_FAIL_ON_LEAK)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("leaks")
                    .nick("Leaks")
                    .blurb(
                        "Findings in the last judged report. Reading it judges first what is \
                         due; it never waits for a judgement under way in another thread, but \
                         judges the same cycles alongside it",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "The last judged report counted (leaks, findings by kind, cycles) and \
                         the matching device handles open now (the metrics' values)",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                // Judges first what is due, as reading `leaks` does: never
                // waiting for a judgement under way in another thread.
                glib::subclass::Signal::builder("get-report")
                    .action()
                    .return_type::<gst::Structure>()
                    .class_handler(|args| {
                        let this = args[0].get::<super::LeakCheck>().unwrap();
                        Some(this.imp().report().to_structure().to_value())
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        {
            let mut settings = self.settings.lock();
            match pspec.name() {
                "report-file" => {
                    settings.report_file =
                        value.get::<Option<String>>().unwrap().unwrap_or_default()
                }
                "device-patterns" => {
                    settings.device_patterns =
                        value.get::<Option<String>>().unwrap().unwrap_or_default()
                }
                "session-file" => {
                    settings.session_file =
                        value.get::<Option<String>>().unwrap().unwrap_or_default()
                }
                "grace" => settings.grace = value.get().unwrap(),
                "fail-on-leak" => settings.fail_on_leak = value.get().unwrap(),
                _ => unreachable!(),
            }
        }
        // Bad patterns are reported when the element starts, as an error.
        self.push_settings();
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock();
        match pspec.name() {
            "report-file" => settings.report_file.to_value(),
            "device-patterns" => settings.device_patterns.to_value(),
            "session-file" => settings.session_file.to_value(),
            "grace" => settings.grace.to_value(),
            "fail-on-leak" => settings.fail_on_leak.to_value(),
            "leaks" => {
                drop(settings);
                (self.report().findings.len() as u32).to_value()
            }
            "stats" => {
                drop(settings);
                self.stats(&self.report()).to_structure().to_value()
            }
            _ => unreachable!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
        // A scrape reads the last judged report: it never triggers a judgement.
        let handle = metrics::publish(&*obj, |obj| {
            let imp = obj.imp();
            metrics::Sample::Leak(imp.stats(&imp.last_report()))
        });
        let _ = self.metrics.set(handle);
    }

    fn dispose(&self) {
        let watching = std::mem::take(&mut *self.watching.lock());
        if let Some(attachment) = watching.attachment {
            watch::detach(attachment);
        }
        let Some(tracker) = watching.following.tracker else {
            return;
        };
        // The final word: the last judged report (a pipeline being disposed
        // was judged at its first child's removal, before this element's).
        let (report, file) = {
            let registry = REGISTRY.lock();
            let t = registry.trackers.get(&tracker);
            (
                t.map(|t| t.report.clone()),
                t.and_then(|t| t.settings.report_file.clone()),
            )
        };
        if let Some(report) = report {
            judge::write_report_file(file.as_deref(), &report);
        }
        events::untrack(tracker);
    }
}

impl GstObjectImpl for LeakCheck {}

impl ElementImpl for LeakCheck {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Leak checker",
                "Generic/Debug",
                "Tracks every state transition in its pipeline and reports elements that never \
                 went back to NULL, and the objects and device handles they left behind",
                "edgeguard developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let any = gst::Caps::new_any();
            crate::pad_templates::always_sink_and_src(&any, &any)
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::NullToReady {
            let settings = self.settings.lock().clone();
            if let Err(msg) = settings.to_ledger() {
                gst::element_imp_error!(self, gst::LibraryError::Settings, ("{}", msg));
                return Err(gst::StateChangeError);
            }
        }
        // GStreamer tells an element nothing when it, or a bin holding it,
        // is added to a bin (the parent property is not notified), and
        // playbin readies its sink bins before adding them: the pipeline is
        // looked for at every transition, before it is posted.
        self.follow_top_level();
        self.parent_change_state(transition)
    }

    fn set_clock(&self, clock: Option<&gst::Clock>) -> bool {
        // Called when this element, or a bin holding it, joins a running
        // pipeline (and when a pipeline hands out its clock): a late joiner
        // in a PLAYING pipeline goes through no state change. The bin's
        // object lock is held here, so its ancestors are walked elsewhere.
        // No clock: not a running pipeline; its start is a state change.
        if clock.is_some()
            && !self.parent_is_watched()
            && !self.look_queued.swap(true, Ordering::AcqRel)
        {
            let weak = self.obj().downgrade();
            worker::defer(move || {
                if let Some(obj) = weak.upgrade() {
                    obj.imp().look_queued.store(false, Ordering::Release);
                    obj.imp().follow_top_level();
                }
            });
        }
        self.parent_set_clock(clock)
    }
}

impl LeakCheck {
    /// Tracks this element's top-level pipeline when it has one it does not
    /// track yet, catching up on what it holds; without a pipeline above it
    /// (not yet added, or taken out) it keeps reporting the last one. Never
    /// waits for another thread switching pipelines: that one looks again.
    fn follow_top_level(&self) {
        while let Some(pipeline) = self.top_level_pipeline() {
            if !self.switch_to(&pipeline) {
                return;
            }
        }
    }

    fn top_level_pipeline(&self) -> Option<gst::Pipeline> {
        let obj = self.obj();
        super::observe::top_level(obj.upcast_ref())
            .downcast::<gst::Pipeline>()
            .ok()
            .filter(|pipeline| !super::identity::is_gone(pipeline))
    }

    /// Whether the parent is the pipeline already tracked (the common case),
    /// told without locking the parent: its lock may be held by our caller.
    fn parent_is_watched(&self) -> bool {
        let Some(parent) = self.obj().parent() else {
            return false;
        };
        let tracker = self.watching.lock().following.tracker;
        tracker.is_some() && super::identity::peek(&parent) == tracker
    }

    /// Follows `pipeline` unless it is followed already or another thread
    /// is switching. Returns whether to look for the top-level pipeline
    /// again: another thread asked while this one switched.
    fn switch_to(&self, pipeline: &gst::Pipeline) -> bool {
        let serial = super::identity::serial(pipeline);
        if self.watching.lock().following.tracker == Some(serial) {
            return false;
        }
        // Read before the switch is claimed: the handles and sessions open
        // now (the baseline), however long that takes.
        let settings = self.settings.lock().to_ledger().unwrap_or_default();
        let fresh = events::prepare(pipeline.upcast_ref(), &settings);
        let claim = self.watching.lock().following.claim(serial);
        if claim != Claim::Switch {
            return false;
        }
        // Registered and watched before its elements are read: a transition
        // made meanwhile (this element's own, on a thread the switch must
        // not hold up) is recorded by the handlers.
        let obj = self.obj();
        events::register(
            pipeline.upcast_ref(),
            settings,
            Some(obj.upcast_ref()),
            fresh,
        );
        // GST_TRACERS mode already sees every transition through its hooks.
        let watch_all = REGISTRY.lock().watch_all;
        let attachment = (!watch_all).then(|| watch::attach(pipeline, serial));
        let old = {
            let mut watching = self.watching.lock();
            let tracker = watching.following.tracker.replace(serial);
            (
                tracker,
                std::mem::replace(&mut watching.attachment, attachment),
            )
        };
        Self::release(old);
        gst::debug!(CAT, imp = self, "catching up on {}", pipeline.name());
        events::catch_up(serial, pipeline.upcast_ref());
        gst::info!(
            CAT,
            imp = self,
            "watching {} (in {:?})",
            pipeline.name(),
            pipeline.current_state()
        );
        self.watching.lock().following.finish()
    }

    /// Lets go of a pipeline watched before.
    fn release((tracker, attachment): (Option<u64>, Option<Attachment>)) {
        if let Some(attachment) = attachment {
            watch::detach(attachment);
        }
        if let Some(tracker) = tracker {
            events::untrack(tracker);
        }
    }

    fn push_settings(&self) {
        let Ok(settings) = self.settings.lock().to_ledger() else {
            return;
        };
        let Some(tracker) = self.watching.lock().following.tracker else {
            return;
        };
        if let Some(t) = REGISTRY.lock().trackers.get_mut(&tracker) {
            t.settings = settings;
        }
    }

    /// The last judged report, judging first what is due.
    fn report(&self) -> Arc<Report> {
        // A reader may ask before any hook has run since a late join.
        self.follow_top_level();
        if let Some(tracker) = self.watching.lock().following.tracker {
            worker::judge_now(tracker, Demand::Ask);
        }
        self.last_report()
    }

    /// The last judged report as it is.
    fn last_report(&self) -> Arc<Report> {
        let Some(tracker) = self.watching.lock().following.tracker else {
            return Arc::default();
        };
        REGISTRY
            .lock()
            .trackers
            .get(&tracker)
            .map(|t| t.report.clone())
            .unwrap_or_default()
    }

    /// The `stats` property's values and the metrics'.
    fn stats(&self, report: &Report) -> LeakStats {
        // Every kind, zeros too: a dashboard tells "none found" from "not exported".
        let mut findings: BTreeMap<&'static str, u64> =
            Finding::KINDS.iter().map(|kind| (*kind, 0)).collect();
        for finding in &report.findings {
            *findings.entry(finding.kind()).or_default() += 1;
        }
        let patterns = self
            .settings
            .lock()
            .to_ledger()
            .unwrap_or_default()
            .patterns;
        LeakStats {
            findings,
            cycles: report.cycles.into(),
            device_handles: fds::snapshot(&patterns).len() as u64,
        }
    }
}
