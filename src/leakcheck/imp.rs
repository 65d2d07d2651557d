// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::LazyLock;

use super::ledger;
use super::patterns::{DEFAULT_PATTERNS, DevicePatterns};
use super::report::Report;
use super::tracer::{self, CAT, REGISTRY};

const DEFAULT_GRACE: u64 = gst::ClockTime::SECOND.nseconds();
const DEFAULT_FAIL_ON_LEAK: bool = false;

#[derive(Debug, Clone)]
struct Settings {
    report_file: String,
    device_patterns: String,
    grace: u64,
    fail_on_leak: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            report_file: String::new(),
            device_patterns: DEFAULT_PATTERNS.into(),
            grace: DEFAULT_GRACE,
            fail_on_leak: DEFAULT_FAIL_ON_LEAK,
        }
    }
}

impl Settings {
    fn to_ledger(&self) -> Result<ledger::Settings, String> {
        Ok(ledger::Settings {
            patterns: DevicePatterns::parse(&self.device_patterns)?,
            grace: gst::ClockTime::from_nseconds(self.grace),
            fail_on_leak: self.fail_on_leak,
            report_file: (!self.report_file.is_empty()).then(|| PathBuf::from(&self.report_file)),
        })
    }
}

pub struct LeakCheck {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    /// Address of the top-level pipeline this element reports for.
    tracked: Mutex<Option<usize>>,
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
            tracked: Mutex::new(None),
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
                glib::ParamSpecUInt64::builder("grace")
                    .nick("Grace")
                    .blurb(
                        "How long after the pipeline reached NULL before judging (ns); \
                         0 judges at once, in the thread that set NULL",
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
                    .blurb("Findings in the last judged report")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
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
            "grace" => settings.grace.to_value(),
            "fail-on-leak" => settings.fail_on_leak.to_value(),
            "leaks" => {
                drop(settings);
                (self.report().findings.len() as u32).to_value()
            }
            _ => unreachable!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
        // The tracer's bin-add hook tracks the pipeline as soon as this element
        // is added to it, before any element's first state change.
        tracer::ensure_hooks();
    }

    fn dispose(&self) {
        // The final word: the pipeline is being destroyed with this element.
        let (report, file) = {
            let registry = REGISTRY.lock();
            let tracker = self.tracked.lock().and_then(|k| registry.trackers.get(&k));
            (
                tracker.map(|t| t.report.clone()),
                tracker.and_then(|t| t.settings.report_file.clone()),
            )
        };
        if let (Some(report), Some(file)) = (report, file)
            && let Err(err) = std::fs::write(&file, report.to_json())
        {
            gst::error!(CAT, imp = self, "report-file {}: {err}", file.display());
        }
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
            // The pipeline may have been nested since the element was added.
            self.track_top_level();
        }
        self.parent_change_state(transition)
    }
}

impl super::LeakCheck {
    pub(super) fn track_top_level(&self) {
        self.imp().track_top_level();
    }
}

impl LeakCheck {
    /// Registers this element's top-level pipeline with the tracer.
    fn track_top_level(&self) {
        let obj = self.obj();
        let top = ledger::top_level(obj.upcast_ref());
        if &top == obj.upcast_ref::<gst::Element>() {
            return;
        }
        let k = tracer::key(&top);
        let settings = self.settings.lock().to_ledger().unwrap_or_default();
        {
            let mut registry = REGISTRY.lock();
            let tracker = registry.insert_tracker(&top, settings);
            tracker.watcher = Some(obj.upcast_ref::<gst::Element>().downgrade());
        }
        gst::debug!(CAT, imp = self, "tracking {}", top.name());
        *self.tracked.lock() = Some(k);
    }

    fn push_settings(&self) {
        let Ok(settings) = self.settings.lock().to_ledger() else {
            return;
        };
        let Some(k) = *self.tracked.lock() else {
            return;
        };
        if let Some(tracker) = REGISTRY.lock().trackers.get_mut(&k) {
            tracker.settings = settings;
        }
    }

    /// The last judged report, with what was found since.
    fn report(&self) -> Report {
        let Some(k) = *self.tracked.lock() else {
            return Report::default();
        };
        REGISTRY
            .lock()
            .trackers
            .get(&k)
            .map(|t| t.report.clone())
            .unwrap_or_default()
    }
}
