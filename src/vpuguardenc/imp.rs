// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use super::Mode;
use super::child_props;
use super::codec::Codec;
use super::decision::{self, CountSource, Inputs, Outcome, Reason};
use super::ledger::{self, Ledger, Slot};
use super::sessions;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vpuguardenc",
        gst::DebugColorFlags::empty(),
        Some("VPU session-budgeted encoder bin"),
    )
});

const DEFAULT_HW_ENCODER: &str = "mpph265enc";
const DEFAULT_SW_ENCODER: &str = "x264enc";
const DEFAULT_MAX_SESSIONS: u32 = 6;
const DEFAULT_MODE: Mode = Mode::Auto;
const DEFAULT_BITRATE: u32 = 0;
const DEFAULT_GOP: i32 = 0;

#[derive(Debug, Clone)]
struct Settings {
    hw_encoder: String,
    sw_encoder: String,
    max_sessions: u32,
    session_file: String,
    lock_dir: String,
    mode: Mode,
    bitrate: u32,
    gop: i32,
    hw_properties: String,
    sw_properties: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hw_encoder: DEFAULT_HW_ENCODER.into(),
            sw_encoder: DEFAULT_SW_ENCODER.into(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            session_file: String::new(),
            lock_dir: String::new(),
            mode: DEFAULT_MODE,
            bitrate: DEFAULT_BITRATE,
            gop: DEFAULT_GOP,
            hw_properties: String::new(),
            sw_properties: String::new(),
        }
    }
}

impl Settings {
    fn lock_dir(&self) -> PathBuf {
        if self.lock_dir.is_empty() {
            ledger::default_lock_dir()
        } else {
            PathBuf::from(&self.lock_dir)
        }
    }

    fn session_file(&self) -> Option<&Path> {
        (!self.session_file.is_empty()).then(|| Path::new(&self.session_file))
    }
}

/// The encoder chain built for the current stream; None until the first CAPS
/// event and again after the bin went back to READY.
struct State {
    /// In stream order: [videoconvert,] encoder, parser.
    elements: Vec<gst::Element>,
    factory: String,
    hardware: bool,
    sessions: u32,
    caps: gst::Caps,
    /// Held from the hardware child's start until it is back in NULL.
    slot: Option<Slot>,
}

/// Watches a hardware child until its first output buffer: an error it posts
/// before then means it could not start, and software takes over.
#[derive(Debug)]
struct HwWatch {
    encoder: gst::Element,
    output_seen: AtomicBool,
    failure: Mutex<Option<String>>,
}

/// Why a chain could not be built.
enum ChainError {
    /// The settings are wrong: no other encoder would fix it.
    Config(String),
    /// The encoder failed to start: another encoder may work.
    Start(String),
}

// Lock order: state, then hw_watch. Settings are only cloned.
#[derive(Default)]
pub struct VpuGuardEnc {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    hw_watch: Mutex<Option<Arc<HwWatch>>>,
    warned_unreadable: AtomicBool,
    /// Set while the chain is built in the streaming thread.
    rebuilding: AtomicBool,
    /// Sink caps of candidate encoders by factory name, for caps queries
    /// answered before the decision.
    sink_caps_cache: Mutex<Vec<(String, gst::Caps)>>,
    sinkpad: OnceLock<gst::GhostPad>,
    srcpad: OnceLock<gst::GhostPad>,
}

#[glib::object_subclass]
impl ObjectSubclass for VpuGuardEnc {
    const NAME: &'static str = "GstVpuGuardEnc";
    type Type = super::VpuGuardEnc;
    type ParentType = gst::Bin;
}

impl ObjectImpl for VpuGuardEnc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("hw-encoder")
                    .nick("Hardware encoder")
                    .blurb("Factory name of the VPU encoder used while a session slot is free")
                    .default_value(Some(DEFAULT_HW_ENCODER))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("sw-encoder")
                    .nick("Software encoder")
                    .blurb("Factory name of the CPU encoder used when the VPU budget is spent")
                    .default_value(Some(DEFAULT_SW_ENCODER))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-sessions")
                    .nick("Maximum VPU sessions")
                    .blurb(
                        "VPU session budget of the whole machine, encoders and decoders \
                         together (RK3588: 6 is safe, 8 is the practical limit)",
                    )
                    .maximum(1024)
                    .default_value(DEFAULT_MAX_SESSIONS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("session-file")
                    .nick("Session file")
                    .blurb(
                        "Kernel listing of VPU sessions; empty = /proc/mpp_service/sessions-summary, \
                         then /sys/kernel/debug/mpp_service/session",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("lock-dir")
                    .nick("Lock directory")
                    .blurb(
                        "Directory of the machine-wide decision lock and hardware slots; every \
                         guard sharing a budget must use the same one (empty = /run/lock/edgeguard)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", DEFAULT_MODE)
                    .nick("Mode")
                    .blurb("Whether the guard may choose, or is forced to one encoder kind")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("bitrate")
                    .nick("Bitrate")
                    .blurb(
                        "Target bitrate in kbit/s, set on the chosen encoder in its own \
                         property and unit (0 = the encoder's default)",
                    )
                    .maximum(u32::MAX / 1000)
                    .default_value(DEFAULT_BITRATE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("gop")
                    .nick("GOP")
                    .blurb(
                        "Keyframe interval in frames, set on the chosen encoder's own \
                         property (0 = the encoder's default)",
                    )
                    .minimum(0)
                    .default_value(DEFAULT_GOP)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("hw-properties")
                    .nick("Hardware encoder properties")
                    .blurb(
                        "Properties for the hardware encoder as a GstStructure string, \
                         e.g. \"props,rc-mode=cbr\"; applied after bitrate and gop",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("sw-properties")
                    .nick("Software encoder properties")
                    .blurb(
                        "Properties for the software encoder as a GstStructure string, \
                         e.g. \"props,speed-preset=superfast,tune=zerolatency\"",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("active-encoder")
                    .nick("Active encoder")
                    .blurb("Factory name of the encoder chosen for this stream (empty before)")
                    .read_only()
                    .build(),
                glib::ParamSpecBoolean::builder("hardware")
                    .nick("Hardware")
                    .blurb("Whether the chosen encoder is the hardware one")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("sessions")
                    .nick("Sessions")
                    .blurb("VPU sessions in use that the last decision saw")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        let string = || value.get::<Option<String>>().unwrap().unwrap_or_default();
        match pspec.name() {
            "hw-encoder" => settings.hw_encoder = string(),
            "sw-encoder" => settings.sw_encoder = string(),
            "max-sessions" => settings.max_sessions = value.get().unwrap(),
            "session-file" => settings.session_file = string(),
            "lock-dir" => settings.lock_dir = string(),
            "mode" => settings.mode = value.get().unwrap(),
            "bitrate" => settings.bitrate = value.get().unwrap(),
            "gop" => settings.gop = value.get().unwrap(),
            "hw-properties" => settings.hw_properties = string(),
            "sw-properties" => settings.sw_properties = string(),
            _ => unreachable!(),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "hw-encoder" => settings.hw_encoder.to_value(),
            "sw-encoder" => settings.sw_encoder.to_value(),
            "max-sessions" => settings.max_sessions.to_value(),
            "session-file" => settings.session_file.to_value(),
            "lock-dir" => settings.lock_dir.to_value(),
            "mode" => settings.mode.to_value(),
            "bitrate" => settings.bitrate.to_value(),
            "gop" => settings.gop.to_value(),
            "hw-properties" => settings.hw_properties.to_value(),
            "sw-properties" => settings.sw_properties.to_value(),
            name => {
                drop(settings);
                let state = self.state.lock().unwrap();
                match name {
                    "active-encoder" => state
                        .as_ref()
                        .map_or_else(String::new, |s| s.factory.clone())
                        .to_value(),
                    "hardware" => state.as_ref().is_some_and(|s| s.hardware).to_value(),
                    "sessions" => state.as_ref().map_or(0, |s| s.sessions).to_value(),
                    _ => unreachable!(),
                }
            }
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        let klass = obj.element_class();

        let sinkpad = gst::GhostPad::builder_from_template(&klass.pad_template("sink").unwrap())
            .name("sink")
            .event_function(|pad, parent, event| {
                VpuGuardEnc::catch_panic_pad_function(
                    parent,
                    || false,
                    |guard| guard.sink_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                VpuGuardEnc::catch_panic_pad_function(
                    parent,
                    || false,
                    |guard| guard.sink_query(pad, query),
                )
            })
            .chain_function(|pad, parent, buffer| {
                VpuGuardEnc::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |guard| guard.sink_chain(pad, buffer),
                )
            })
            // Linking the chain sends RECONFIGURE upstream through this
            // internal pad. The chain is built in the CAPS handler, before
            // upstream's ALLOCATION query, so there is nothing to renegotiate;
            // and behind a non-live tee a renegotiation deadlocks: the source's
            // new ALLOCATION query waits in the queue of a branch whose sink
            // is prerolled, while this branch cannot preroll without more data.
            .proxy_pad_event_function(|pad, parent, event| {
                let guard = parent
                    .and_then(|p| p.parent())
                    .and_then(|b| b.downcast::<super::VpuGuardEnc>().ok());
                let rebuilding = guard
                    .as_ref()
                    .is_some_and(|g| g.imp().rebuilding.load(Ordering::SeqCst));
                if rebuilding && event.type_() == gst::EventType::Reconfigure {
                    return true;
                }
                gst::Pad::event_default(pad, parent, event)
            })
            .build();
        let srcpad = gst::GhostPad::builder_from_template(&klass.pad_template("src").unwrap())
            .name("src")
            .build();
        obj.add_pad(&sinkpad).unwrap();
        obj.add_pad(&srcpad).unwrap();
        self.sinkpad.set(sinkpad).unwrap();
        self.srcpad.set(srcpad).unwrap();
    }
}

impl GstObjectImpl for VpuGuardEnc {}

impl ElementImpl for VpuGuardEnc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "VPU session guard encoder",
                "Codec/Encoder/Video/Bin",
                "Encodes with the hardware encoder while the machine's VPU session budget \
                 has a free slot, with a software encoder otherwise",
                "edgeguard developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink_caps = gst::Caps::builder("video/x-raw").any_features().build();
            let src_caps = gst::Caps::builder_full()
                .structure(gst::Structure::new_empty("video/x-h265"))
                .structure(gst::Structure::new_empty("video/x-h264"))
                .build();
            crate::pad_templates::always_sink_and_src(&sink_caps, &src_caps)
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::NullToReady {
            self.validate_settings().map_err(|err| {
                self.post_error_message(err);
                gst::StateChangeError
            })?;
        }
        let result = self.parent_change_state(transition);
        match transition {
            // The children are READY now: release them so the next stream decides anew.
            gst::StateChange::PausedToReady | gst::StateChange::ReadyToNull => {
                self.teardown();
            }
            _ => (),
        }
        result
    }
}

impl BinImpl for VpuGuardEnc {
    fn handle_message(&self, message: gst::Message) {
        if let gst::MessageView::Error(err) = message.view() {
            let watch = self.hw_watch.lock().unwrap().clone();
            if let Some(watch) = watch {
                let from_hw = message
                    .src()
                    .is_some_and(|src| is_same_or_inside(src, watch.encoder.upcast_ref()));
                if from_hw && !watch.output_seen.load(Ordering::SeqCst) {
                    let what = format!(
                        "{} ({})",
                        err.error(),
                        err.debug().as_deref().unwrap_or("no details")
                    );
                    gst::warning!(
                        CAT,
                        imp = self,
                        "hardware encoder failed before its first output: {what}"
                    );
                    *watch.failure.lock().unwrap() = Some(what);
                    return;
                }
            }
            // Name the guard as the source, so the application sees which
            // guard's stream failed; the child's path stays in the details.
            if let Some(src) = message
                .src()
                .filter(|s| *s != self.obj().upcast_ref::<gst::Object>())
            {
                let debug = format!(
                    "{}: {}",
                    src.path_string(),
                    err.debug().as_deref().unwrap_or("")
                );
                let renamed = gst::message::Error::builder_from_error(err.error())
                    .src(&*self.obj())
                    .debug(&debug)
                    .build();
                self.parent_handle_message(renamed);
                return;
            }
        }
        self.parent_handle_message(message)
    }
}

fn is_same_or_inside(object: &gst::Object, ancestor: &gst::Object) -> bool {
    let mut current = Some(object.clone());
    while let Some(o) = current {
        if &o == ancestor {
            return true;
        }
        current = o.parent();
    }
    false
}

impl VpuGuardEnc {
    fn sinkpad(&self) -> &gst::GhostPad {
        self.sinkpad.get().unwrap()
    }

    fn srcpad(&self) -> &gst::GhostPad {
        self.srcpad.get().unwrap()
    }

    /// Settings errors are reported when the element starts, not mid-stream.
    fn validate_settings(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let settings_error =
            |msg: String| gst::error_msg!(gst::LibraryError::Settings, ["{}", msg]);
        child_props::parse_structure("hw-properties", &settings.hw_properties)
            .map_err(settings_error)?;
        child_props::parse_structure("sw-properties", &settings.sw_properties)
            .map_err(settings_error)?;
        if settings.mode != Mode::Hardware {
            let factory = gst::ElementFactory::find(&settings.sw_encoder).ok_or_else(|| {
                gst::error_msg!(
                    gst::CoreError::MissingPlugin,
                    (
                        "sw-encoder: no element '{}' is installed",
                        settings.sw_encoder
                    )
                )
            })?;
            if Codec::of_factory(&factory).is_none() {
                return Err(settings_error(format!(
                    "sw-encoder: '{}' outputs neither H.264 nor H.265",
                    settings.sw_encoder
                )));
            }
        }
        if settings.mode == Mode::Hardware
            && gst::ElementFactory::find(&settings.hw_encoder).is_none()
        {
            return Err(gst::error_msg!(
                gst::CoreError::MissingPlugin,
                (
                    "hw-encoder: no element '{}' is installed and mode=hardware",
                    settings.hw_encoder
                )
            ));
        }
        Ok(())
    }

    fn sink_event(&self, pad: &gst::GhostPad, event: gst::Event) -> bool {
        if let gst::EventView::Caps(caps) = event.view() {
            let needs_chain = self.state.lock().unwrap().is_none();
            if needs_chain && let Err(err) = self.decide_and_build(caps.caps()) {
                self.post_error_message(err);
                return false;
            }
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    /// Before the decision there is no encoder to ask: offer what the candidate
    /// encoders take, the hardware one first so upstream fixates to a format it
    /// takes without conversion, then anything (a converter is inserted).
    fn sink_query(&self, pad: &gst::GhostPad, query: &mut gst::QueryRef) -> bool {
        if pad.target().is_some() {
            return gst::Pad::query_default(pad, Some(&*self.obj()), query);
        }
        match query.view_mut() {
            gst::QueryViewMut::Caps(q) => {
                let settings = self.settings.lock().unwrap().clone();
                let mut candidates = Vec::with_capacity(2);
                if settings.mode != Mode::Software {
                    candidates.push(settings.hw_encoder.as_str());
                }
                if settings.mode != Mode::Hardware {
                    candidates.push(settings.sw_encoder.as_str());
                }
                let mut caps = gst::Caps::new_empty();
                for factory in candidates {
                    if let Some(sink_caps) = self.encoder_sink_caps(factory) {
                        caps.merge(sink_caps);
                    }
                }
                caps.merge(pad.pad_template_caps());
                let caps = match q.filter() {
                    Some(filter) => {
                        filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First)
                    }
                    None => caps,
                };
                q.set_result(&caps);
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    /// What an encoder's sink pad takes, in its own order of preference. An
    /// element is created to ask (creating an MPP encoder opens no session),
    /// once per factory name.
    fn encoder_sink_caps(&self, factory: &str) -> Option<gst::Caps> {
        let mut cache = self.sink_caps_cache.lock().unwrap();
        if let Some((_, caps)) = cache.iter().find(|(name, _)| name == factory) {
            return Some(caps.clone());
        }
        let element = gst::ElementFactory::make(factory).build().ok()?;
        let caps = element.static_pad("sink")?.query_caps(None);
        cache.push((factory.to_string(), caps.clone()));
        Some(caps)
    }

    fn sink_chain(
        &self,
        pad: &gst::GhostPad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let watch = self.hw_watch.lock().unwrap().clone();
        let Some(watch) = watch.filter(|w| !w.output_seen.load(Ordering::SeqCst)) else {
            return gst::ProxyPad::chain_default(pad, Some(&*self.obj()), buffer);
        };
        // Until the hardware child has produced output it may still fail to
        // start; keep a reference so the buffer can go to the software child.
        let retry = buffer.clone();
        let result = gst::ProxyPad::chain_default(pad, Some(&*self.obj()), buffer);
        let failure = watch.failure.lock().unwrap().clone();
        match (result, failure) {
            (Err(_), Some(failure)) => {
                self.fall_back_to_software(&failure).map_err(|err| {
                    self.post_error_message(err);
                    gst::FlowError::Error
                })?;
                gst::ProxyPad::chain_default(pad, Some(&*self.obj()), retry)
            }
            (result, _) => result,
        }
    }

    /// Takes the decision for a new stream and builds the chosen chain. Runs in
    /// the CAPS event handler: a buffer reaching a target-less ghost pad would
    /// be NOT_LINKED, so the chain must exist before the event is forwarded.
    fn decide_and_build(&self, caps: &gst::CapsRef) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let hw_factory = gst::ElementFactory::find(&settings.hw_encoder);
        let hw_codec = hw_factory.as_ref().and_then(Codec::of_factory);
        let sw_factory = gst::ElementFactory::find(&settings.sw_encoder);
        let sw_codec = sw_factory.as_ref().and_then(Codec::of_factory);

        let downstream = self.srcpad().peer_query_caps(None);
        let downstream_takes_hw = hw_codec.is_some_and(|c| c.accepted_by(&downstream));
        let downstream_takes_sw = sw_codec.is_some_and(|c| c.accepted_by(&downstream));
        if !downstream_takes_hw && !downstream_takes_sw {
            return Err(gst::error_msg!(
                gst::CoreError::Negotiation,
                (
                    "Downstream of {} accepts neither H.265 nor H.264",
                    self.obj().name()
                ),
                ["downstream wants {}", downstream]
            ));
        }

        let mut inputs = Inputs {
            mode: settings.mode,
            hw_available: hw_codec.is_some(),
            downstream_takes_hw,
            downstream_takes_sw,
            sessions: None,
            source: CountSource::SessionFile,
            max_sessions: settings.max_sessions,
        };
        // Held until the hardware child has opened its session (or failed to).
        let mut decision_lock = None;
        if decision::needs_session_count(settings.mode, inputs.hw_available, downstream_takes_hw) {
            let lock_dir = settings.lock_dir();
            let resource_error = |what: &str, e: std::io::Error| {
                gst::error_msg!(
                    gst::ResourceError::OpenReadWrite,
                    ("lock-dir: cannot use '{}'", lock_dir.display()),
                    ["{}: {}", what, e]
                )
            };
            let ledger = Ledger::open(&lock_dir).map_err(|e| resource_error("create", e))?;
            let lock = ledger
                .lock_decision()
                .map_err(|e| resource_error("decision lock", e))?;
            let held = lock
                .held_slots(&ledger)
                .map_err(|e| resource_error("count slots", e))?;
            match sessions::read_sessions(settings.session_file()) {
                Ok((path, count)) => {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "{}: {} encoder, {} decoder, {} jpeg, {} other sessions; {held} guard slots",
                        path.display(),
                        count.encoders,
                        count.decoders,
                        count.jpeg,
                        count.other
                    );
                    // The listing is the truth; slots cover a listing that lags.
                    inputs.sessions = Some(count.total().max(held));
                }
                Err(err) => {
                    if !self.warned_unreadable.swap(true, Ordering::SeqCst) {
                        gst::element_imp_warning!(
                            self,
                            gst::ResourceError::OpenRead,
                            ("No VPU session listing is readable: counting only the hardware encoders held by vpuguardenc instances"),
                            ["{}", err]
                        );
                    }
                    inputs.sessions = Some(held);
                    inputs.source = CountSource::Ledger;
                }
            }
            decision_lock = Some((ledger, lock));
        }

        let outcome = decision::decide(&inputs);
        gst::info!(CAT, imp = self, "decision for {:?}: {:?}", inputs, outcome);
        let sessions = inputs.sessions.unwrap_or(0);
        match outcome {
            Outcome::Fail(why) => Err(if settings.mode == Mode::Hardware {
                gst::error_msg!(gst::ResourceError::Busy, ("{}", why))
            } else {
                gst::error_msg!(
                    gst::CoreError::Negotiation,
                    ("{}", why),
                    ["downstream wants {}", downstream]
                )
            }),
            Outcome::Software(reason) => {
                self.build_or_error(
                    &settings,
                    sw_factory.as_ref().unwrap(),
                    caps,
                    None,
                    sessions,
                )?;
                self.post_decision(&settings, reason, sessions);
                Ok(())
            }
            Outcome::Hardware(reason) => {
                let (ledger, lock) = decision_lock
                    .as_ref()
                    .expect("hardware needs the decision lock");
                let slot = lock
                    .take_slot(ledger, &self.obj().path_string())
                    .map_err(|e| {
                        gst::error_msg!(
                            gst::ResourceError::OpenReadWrite,
                            (
                                "lock-dir: cannot record a hardware slot in '{}'",
                                ledger.dir().display()
                            ),
                            ["{}", e]
                        )
                    })?;
                let hw_factory = hw_factory.as_ref().unwrap();
                match self.build_chain(&settings, hw_factory, caps, Some(slot), sessions) {
                    Ok(()) => {
                        drop(decision_lock);
                        self.post_decision(&settings, reason, sessions);
                        Ok(())
                    }
                    Err(ChainError::Config(msg)) => {
                        Err(gst::error_msg!(gst::LibraryError::Settings, ("{}", msg)))
                    }
                    Err(ChainError::Start(why)) => {
                        drop(decision_lock);
                        if settings.mode == Mode::Hardware {
                            return Err(gst::error_msg!(
                                gst::LibraryError::Init,
                                ("Hardware encoder {} failed to start", settings.hw_encoder),
                                ["{}", why]
                            ));
                        }
                        self.software_after_hw_failure(&settings, caps, sessions, &why)
                    }
                }
            }
        }
    }

    fn build_or_error(
        &self,
        settings: &Settings,
        factory: &gst::ElementFactory,
        caps: &gst::CapsRef,
        slot: Option<Slot>,
        sessions: u32,
    ) -> Result<(), gst::ErrorMessage> {
        self.build_chain(settings, factory, caps, slot, sessions)
            .map_err(|err| match err {
                ChainError::Config(msg) => {
                    gst::error_msg!(gst::LibraryError::Settings, ("{}", msg))
                }
                ChainError::Start(why) => gst::error_msg!(
                    gst::LibraryError::Init,
                    ("Encoder {} failed to start", factory.name()),
                    ["{}", why]
                ),
            })
    }

    fn software_after_hw_failure(
        &self,
        settings: &Settings,
        caps: &gst::CapsRef,
        sessions: u32,
        why: &str,
    ) -> Result<(), gst::ErrorMessage> {
        gst::element_imp_warning!(
            self,
            gst::LibraryError::Init,
            (
                "Hardware encoder {} failed to start, encoding with {}",
                settings.hw_encoder,
                settings.sw_encoder
            ),
            ["{}", why]
        );
        let sw_factory = gst::ElementFactory::find(&settings.sw_encoder).ok_or_else(|| {
            gst::error_msg!(
                gst::CoreError::MissingPlugin,
                (
                    "sw-encoder: no element '{}' is installed",
                    settings.sw_encoder
                )
            )
        })?;
        self.build_or_error(settings, &sw_factory, caps, None, sessions)?;
        self.post_decision(settings, Reason::HwStartFailed, sessions);
        Ok(())
    }

    /// Called from the streaming thread when the hardware child failed on its
    /// first buffers: swaps it for the software chain.
    fn fall_back_to_software(&self, why: &str) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let (caps, sessions) = {
            let state = self.state.lock().unwrap();
            let state = state.as_ref().expect("a chain exists while buffers flow");
            (state.caps.clone(), state.sessions)
        };
        self.teardown();
        self.software_after_hw_failure(&settings, &caps, sessions, why)
    }

    /// Builds [videoconvert !] encoder ! parser, links it to the ghost pads and
    /// starts it. `slot` is Some for the hardware encoder.
    fn build_chain(
        &self,
        settings: &Settings,
        factory: &gst::ElementFactory,
        caps: &gst::CapsRef,
        slot: Option<Slot>,
        sessions: u32,
    ) -> Result<(), ChainError> {
        self.rebuilding.store(true, Ordering::SeqCst);
        let result = self.link_and_start_chain(settings, factory, caps, slot, sessions);
        self.rebuilding.store(false, Ordering::SeqCst);
        result
    }

    fn link_and_start_chain(
        &self,
        settings: &Settings,
        factory: &gst::ElementFactory,
        caps: &gst::CapsRef,
        slot: Option<Slot>,
        sessions: u32,
    ) -> Result<(), ChainError> {
        let hardware = slot.is_some();
        let codec = Codec::of_factory(factory).ok_or_else(|| {
            ChainError::Config(format!(
                "{} outputs neither H.264 nor H.265",
                factory.name()
            ))
        })?;
        let encoder = factory
            .create()
            .build()
            .map_err(|e| ChainError::Config(format!("cannot create {}: {e}", factory.name())))?;
        self.configure_encoder(settings, &encoder, hardware)
            .map_err(ChainError::Config)?;
        let parser = gst::ElementFactory::make(codec.parser())
            .build()
            .map_err(|e| ChainError::Config(format!("cannot create {}: {e}", codec.parser())))?;

        let mut elements = Vec::with_capacity(3);
        // A system-memory format the encoder cannot take (x265enc and NV12)
        // gets a converter; hardware memory goes to the encoder untouched.
        let encoder_sink = encoder
            .static_pad("sink")
            .expect("encoders have a sink pad");
        let in_system_memory = caps.features(0).is_none_or(|f| {
            f.is_equal(gst::CapsFeatures::new_empty().as_ref())
                || f.contains(gst::CAPS_FEATURE_MEMORY_SYSTEM_MEMORY)
        });
        if in_system_memory && !encoder_sink.query_caps(None).can_intersect(caps) {
            let convert = gst::ElementFactory::make("videoconvert")
                .build()
                .map_err(|e| ChainError::Config(format!("cannot create videoconvert: {e}")))?;
            elements.push(convert);
        }
        elements.push(encoder.clone());
        elements.push(parser.clone());

        let obj = self.obj();
        obj.add_many(&elements)
            .map_err(|e| ChainError::Config(e.to_string()))?;
        gst::Element::link_many(&elements).map_err(|e| {
            ChainError::Config(format!("cannot link the {} chain: {e}", factory.name()))
        })?;
        self.srcpad()
            .set_target(Some(&parser.static_pad("src").unwrap()))
            .map_err(|e| ChainError::Config(e.to_string()))?;
        self.sinkpad()
            .set_target(Some(&elements[0].static_pad("sink").unwrap()))
            .map_err(|e| ChainError::Config(e.to_string()))?;

        let watch = hardware.then(|| {
            let watch = Arc::new(HwWatch {
                encoder: encoder.clone(),
                output_seen: AtomicBool::new(false),
                failure: Mutex::new(None),
            });
            let weak = Arc::downgrade(&watch);
            encoder.static_pad("src").unwrap().add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                move |_, _| {
                    if let Some(watch) = weak.upgrade() {
                        watch.output_seen.store(true, Ordering::SeqCst);
                    }
                    gst::PadProbeReturn::Remove
                },
            );
            *self.hw_watch.lock().unwrap() = Some(watch.clone());
            watch
        });

        *self.state.lock().unwrap() = Some(State {
            elements: elements.clone(),
            factory: factory.name().to_string(),
            hardware,
            sessions,
            caps: caps.to_owned(),
            slot,
        });

        // Downstream first, so each element has a running peer when it starts.
        let start_error = elements.iter().rev().find_map(|element| {
            element
                .sync_state_with_parent()
                .err()
                .map(|_| format!("{} failed to change state", element.name()))
        });
        let failure = start_error.or_else(|| watch.and_then(|w| w.failure.lock().unwrap().clone()));
        if let Some(why) = failure {
            self.teardown();
            return Err(ChainError::Start(why));
        }
        obj.notify("active-encoder");
        obj.notify("hardware");
        obj.notify("sessions");
        Ok(())
    }

    fn configure_encoder(
        &self,
        settings: &Settings,
        encoder: &gst::Element,
        hardware: bool,
    ) -> Result<(), String> {
        let factory = encoder
            .factory()
            .map(|f| f.name().to_string())
            .unwrap_or_default();
        let has = |name: &str| encoder.find_property(name).is_some();
        if settings.bitrate > 0 {
            let (name, unit) = child_props::bitrate_property(&factory, has("bps"), has("bitrate"))
                .ok_or_else(|| format!("bitrate: {factory} has no bitrate property"))?;
            let value = match unit {
                child_props::BitrateUnit::BitsPerSecond => i64::from(settings.bitrate) * 1000,
                child_props::BitrateUnit::KilobitsPerSecond => i64::from(settings.bitrate),
            };
            child_props::set_number(encoder, name, value).map_err(|e| format!("bitrate: {e}"))?;
        }
        if settings.gop > 0 {
            let name = child_props::gop_property(has)
                .ok_or_else(|| format!("gop: {factory} has no keyframe interval property"))?;
            child_props::set_number(encoder, name, i64::from(settings.gop))
                .map_err(|e| format!("gop: {e}"))?;
        }
        let (origin, text) = if hardware {
            ("hw-properties", &settings.hw_properties)
        } else {
            ("sw-properties", &settings.sw_properties)
        };
        if let Some(props) = child_props::parse_structure(origin, text)? {
            child_props::apply_structure(encoder, origin, &props)?;
        }
        Ok(())
    }

    fn post_decision(&self, settings: &Settings, reason: Reason, sessions: u32) {
        let (encoder, hardware) = {
            let state = self.state.lock().unwrap();
            let state = state.as_ref().expect("posted after a chain was built");
            (state.factory.clone(), state.hardware)
        };
        gst::info!(
            CAT,
            imp = self,
            "chose {encoder} (hardware: {hardware}, reason: {}, sessions {sessions} of {})",
            reason.as_str(),
            settings.max_sessions
        );
        let structure = gst::Structure::builder("vpuguardenc-decision")
            .field("encoder", encoder)
            .field("hardware", hardware)
            .field("sessions", sessions)
            .field("max-sessions", settings.max_sessions)
            .field("reason", reason.as_str())
            .build();
        let _ = self.obj().post_message(
            gst::message::Element::builder(structure)
                .src(&*self.obj())
                .build(),
        );
    }

    /// Stops and removes the chain, then releases its VPU slot.
    fn teardown(&self) {
        let state = self.state.lock().unwrap().take();
        *self.hw_watch.lock().unwrap() = None;
        let Some(state) = state else { return };
        let _ = self.sinkpad().set_target(None::<&gst::Pad>);
        let _ = self.srcpad().set_target(None::<&gst::Pad>);
        for element in &state.elements {
            let _ = element.set_state(gst::State::Null);
        }
        let _ = self.obj().remove_many(&state.elements);
        // Only now, with the encoder in NULL, is its VPU session closed.
        if let Some(slot) = state.slot {
            gst::debug!(CAT, imp = self, "releasing slot {}", slot.path().display());
        }
        gst::debug!(CAT, imp = self, "removed the {} chain", state.factory);
    }
}
