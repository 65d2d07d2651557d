// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use parking_lot::Mutex;
use std::sync::atomic::Ordering;
use std::sync::{LazyLock, OnceLock};

use super::Mode;
use super::codec::Codec;
use super::window::Window;
use crate::factory_caps;
use crate::guard::child_props;
use crate::guard::children;
use crate::guard::core::{self as guard_core, Core, count_vpu, monotonic_now};
use crate::guard::frame::Frame;
use crate::guard::input::Input;
use crate::guard::kind::{Candidates, ChainError, DecideError, Seen};
use crate::metrics;
use crate::vpu::budget::{BudgetSettings, Held, Patience, VpuCount};
use crate::vpu::decision::{self, GuardKind, Inputs, Outcome, Reason};
use crate::vpu::ledger::Slot;
use crate::vpu::listing::SessionKind;
use crate::vpu::properties;

mod chain;
mod kind;

use chain::failover_factory;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vpuguardenc",
        gst::DebugColorFlags::empty(),
        Some("VPU session-budgeted encoder bin"),
    )
});

/// The name of the src pad's template (see `pad_templates`).
const ENCODED_TEMPLATE: &str = "encoded";
const DEFAULT_HW_ENCODER: &str = "mpph265enc";
const DEFAULT_SW_ENCODER: &str = "x264enc";
const DEFAULT_MODE: Mode = Mode::Auto;
const DEFAULT_BITRATE: u32 = 0;
const DEFAULT_GOP: i32 = 0;
/// Counted for a stream whose caps give no frame rate (variable rate).
const FALLBACK_FPS: u64 = 30;
const DEFAULT_FAILOVER_ENCODER: &str = "auto";
const DEFAULT_RECLAIM_INTERVAL: gst::ClockTime = gst::ClockTime::ZERO;

#[derive(Debug, Clone)]
pub struct Settings {
    hw_encoder: String,
    sw_encoder: String,
    budget: BudgetSettings,
    mode: Mode,
    bitrate: u32,
    gop: i32,
    hw_properties: String,
    sw_properties: String,
    failover_encoder: String,
    failover_properties: String,
    reclaim_interval: gst::ClockTime,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hw_encoder: DEFAULT_HW_ENCODER.into(),
            sw_encoder: DEFAULT_SW_ENCODER.into(),
            budget: BudgetSettings::default(),
            mode: DEFAULT_MODE,
            bitrate: DEFAULT_BITRATE,
            gop: DEFAULT_GOP,
            hw_properties: String::new(),
            sw_properties: String::new(),
            failover_encoder: DEFAULT_FAILOVER_ENCODER.into(),
            failover_properties: String::new(),
            reclaim_interval: DEFAULT_RECLAIM_INTERVAL,
        }
    }
}

// The settings, and the state the guard core keeps (its lock rules are in
// guard::core): `settings` is only cloned out, never held with the core's.
#[derive(Default)]
pub struct VpuGuardEnc {
    settings: Mutex<Settings>,
    core: Core<Window<Frame>>,
    metrics: OnceLock<metrics::Handle>,
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
            let children = [
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
            ];
            let rest = [
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
                        "Properties for the software encoder as a GstStructure string, applied \
                         after its defaults on a live stream (x264enc/x265enc: tune=zerolatency, \
                         a speed-preset for the pixel rate), e.g. \"props,speed-preset=superfast\"",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("failover-encoder")
                    .nick("Failover encoder")
                    .blurb(
                        "Software encoder of the hardware encoder's codec that takes over when \
                         the hardware encoder fails mid-stream, fed the frames it never output; \
                         auto = x265enc for an H.265 hardware encoder, x264enc for H.264; \
                         none = post the child's ERROR instead",
                    )
                    .default_value(Some(DEFAULT_FAILOVER_ENCODER))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("failover-properties")
                    .nick("Failover encoder properties")
                    .blurb(
                        "Properties for the failover encoder as a GstStructure string, applied \
                         after its low-latency defaults (x264enc/x265enc: tune=zerolatency, a \
                         fast speed-preset), e.g. \"props,speed-preset=veryfast\"",
                    )
                    .mutable_ready()
                    .build(),
                properties::reclaim_interval_spec(GuardKind::Encoder),
                glib::ParamSpecUInt::builder("switches")
                    .nick("Switches")
                    .blurb("How many times the encoder changed in this stream (failover, reclaim)")
                    .read_only()
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
                glib::ParamSpecUInt64::builder("pixel-rate")
                    .nick("Pixel rate")
                    .blurb(
                        "Encoder load in pixels per second that the last decision saw, \
                         without this stream",
                    )
                    .read_only()
                    .build(),
                properties::stats_spec(GuardKind::Encoder),
            ];
            let budget = properties::budget_param_specs(GuardKind::Encoder);
            children.into_iter().chain(budget).chain(rest).collect()
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock();
        let string = || value.get::<Option<String>>().unwrap().unwrap_or_default();
        match pspec.name() {
            name if properties::set_budget_property(&mut settings.budget, name, value) => (),
            "hw-encoder" => settings.hw_encoder = string(),
            "sw-encoder" => settings.sw_encoder = string(),
            "mode" => settings.mode = value.get().unwrap(),
            "bitrate" => settings.bitrate = value.get().unwrap(),
            "gop" => settings.gop = value.get().unwrap(),
            "hw-properties" => settings.hw_properties = string(),
            "sw-properties" => settings.sw_properties = string(),
            "failover-encoder" => settings.failover_encoder = string(),
            "failover-properties" => settings.failover_properties = string(),
            "reclaim-interval" => {
                settings.reclaim_interval = gst::ClockTime::from_nseconds(value.get().unwrap())
            }
            _ => unreachable!(),
        }
        drop(settings);
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock();
        if let Some(value) = properties::budget_property(&settings.budget, pspec.name()) {
            return value;
        }
        match pspec.name() {
            "hw-encoder" => settings.hw_encoder.to_value(),
            "sw-encoder" => settings.sw_encoder.to_value(),
            "mode" => settings.mode.to_value(),
            "bitrate" => settings.bitrate.to_value(),
            "gop" => settings.gop.to_value(),
            "hw-properties" => settings.hw_properties.to_value(),
            "sw-properties" => settings.sw_properties.to_value(),
            "failover-encoder" => settings.failover_encoder.to_value(),
            "failover-properties" => settings.failover_properties.to_value(),
            "reclaim-interval" => settings.reclaim_interval.nseconds().to_value(),
            "stats" => {
                drop(settings);
                let stats = self.core.stats.lock().clone();
                stats
                    .to_structure("vpuguardenc-stats", "encoder")
                    .to_value()
            }
            name => {
                drop(settings);
                let state = self.core.state.lock();
                match name {
                    "active-encoder" => state
                        .as_ref()
                        .map_or_else(String::new, |s| s.factory.clone())
                        .to_value(),
                    "hardware" => state.as_ref().is_some_and(|s| s.hardware).to_value(),
                    "sessions" => state.as_ref().map_or(0, |s| s.seen.sessions).to_value(),
                    "pixel-rate" => state.as_ref().map_or(0, |s| s.seen.pixel_rate).to_value(),
                    "switches" => state.as_ref().map_or(0, |s| s.switches).to_value(),
                    _ => unreachable!(),
                }
            }
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        let (sinkpad, srcpad) = crate::guard::pads::ghost_pads::<Self>(obj.upcast_ref());
        obj.add_pad(&sinkpad).unwrap();
        obj.add_pad(&srcpad).unwrap();
        self.core.sinkpad.set(sinkpad).unwrap();
        self.core.continuity.install(&srcpad);
        self.core.srcpad.set(srcpad).unwrap();
        let handle = metrics::publish(&*obj, |obj| {
            metrics::Sample::Encoder(obj.imp().core.stats.lock().clone())
        });
        let _ = self.metrics.set(handle);
    }
}

impl crate::guard::pads::GuardPads for VpuGuardEnc {
    fn sink_event(&self, pad: &gst::GhostPad, event: gst::Event) -> bool {
        VpuGuardEnc::sink_event(self, pad, event)
    }

    fn sink_query(&self, pad: &gst::GhostPad, query: &mut gst::QueryRef) -> bool {
        VpuGuardEnc::sink_query(self, pad, query)
    }

    fn sink_chain(
        &self,
        pad: &gst::GhostPad,
        input: Input,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        crate::guard::failover::sink_chain(self, pad, input)
    }

    fn rebuilding(&self) -> bool {
        self.core.rebuilding.load(Ordering::SeqCst)
    }

    fn downstream_failed(&self) {
        self.core.downstream_error.store(true, Ordering::SeqCst);
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
            // The src pad is still called `src`, but its template is not:
            // encodebin (1.22 `_get_parser`) picks the parser after an encoder
            // from the encoder's template named "src", which lists both
            // codecs, so it plugged h264parse (the higher ranked) after the
            // guard for an H.265 profile and failed to link. Without a "src"
            // template it picks the parser of the profile's format. Factory
            // filters (encodebin's choice of encoder) read templates by
            // direction and still see both codecs.
            crate::pad_templates::always_sink_and_named_src(&sink_caps, ENCODED_TEMPLATE, &src_caps)
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
        self.core.state_changing(transition);
        let result = self.parent_change_state(transition);
        match transition {
            // The children are READY now: release them so the next stream decides anew.
            gst::StateChange::PausedToReady | gst::StateChange::ReadyToNull => {
                guard_core::teardown(self);
                self.core.stats.lock().stopped();
            }
            _ => (),
        }
        result
    }
}

impl BinImpl for VpuGuardEnc {
    fn handle_message(&self, message: gst::Message) {
        if message.type_() != gst::MessageType::Error {
            return self.parent_handle_message(message);
        }
        let watches = {
            let watches = self.core.watches.lock();
            [watches.current.clone(), watches.starting.clone()]
        };
        let downstream_failed = self.core.downstream_error.load(Ordering::SeqCst);
        if let Some(what) = crate::guard::watch::claim_failure(&message, watches, downstream_failed)
        {
            gst::warning!(CAT, imp = self, "hardware encoder failed: {what}");
            // Replaced at once, not when the next frame arrives.
            self.obj()
                .call_async(|obj| crate::guard::switch::fail_over_now(obj.imp()));
            return;
        }
        // Anything else goes out as the child posted it: its source, debug
        // and details are what the application needs to act on.
        self.parent_handle_message(message)
    }
}

/// The stream's load on an encoder: width x height x frames per second.
/// A variable frame rate (0/1) counts at its max-framerate, else at
/// FALLBACK_FPS.
pub(super) fn stream_pixel_rate(caps: &gst::CapsRef) -> u64 {
    let Some(s) = caps.structure(0) else { return 0 };
    let dimension = |name| {
        s.get::<i32>(name)
            .map_or(0, |v| u64::try_from(v).unwrap_or(0))
    };
    let rate = |name| {
        s.get::<gst::Fraction>(name)
            .ok()
            .filter(|f| f.numer() > 0 && f.denom() > 0)
    };
    let pixels = dimension("width") * dimension("height");
    match rate("framerate").or_else(|| rate("max-framerate")) {
        Some(fps) => (pixels * fps.numer() as u64).div_ceil(fps.denom() as u64),
        None => pixels * FALLBACK_FPS,
    }
}

impl VpuGuardEnc {
    fn srcpad(&self) -> &gst::GhostPad {
        self.core.srcpad()
    }

    /// Settings errors are reported when the element starts, not mid-stream.
    fn validate_settings(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().clone();
        let settings_error =
            |msg: String| gst::error_msg!(gst::LibraryError::Settings, ("{}", msg));
        settings.budget.validate().map_err(settings_error)?;
        child_props::parse_structure("hw-properties", &settings.hw_properties)
            .map_err(settings_error)?;
        child_props::parse_structure("sw-properties", &settings.sw_properties)
            .map_err(settings_error)?;
        child_props::parse_structure("failover-properties", &settings.failover_properties)
            .map_err(settings_error)?;
        for (property, name) in [
            ("hw-encoder", &settings.hw_encoder),
            ("sw-encoder", &settings.sw_encoder),
            ("failover-encoder", &settings.failover_encoder),
        ] {
            children::refuse_guard(property, name).map_err(settings_error)?;
        }
        if settings.mode != Mode::Software {
            failover_factory(&settings).map_err(settings_error)?;
        }
        let missing = |property: &str, name: &str| {
            gst::error_msg!(
                gst::CoreError::MissingPlugin,
                ("{}: no element '{}' is installed", property, name)
            )
        };
        // An element that makes neither codec cannot be the guard's encoder.
        let check_codec = |property: &str, name: &str| {
            let factory = gst::ElementFactory::find(name).ok_or_else(|| missing(property, name))?;
            if !factory.has_type(gst::ElementFactoryType::ENCODER) {
                return Err(settings_error(format!(
                    "{property}: '{name}' is not an encoder"
                )));
            }
            match Codec::of_factory(&factory) {
                Some(_) => Ok(()),
                None => Err(settings_error(format!(
                    "{property}: '{name}' outputs neither H.264 nor H.265, so {} cannot \
                     encode with it",
                    self.obj().name()
                ))),
            }
        };
        if settings.mode != Mode::Hardware {
            check_codec("sw-encoder", &settings.sw_encoder)?;
        }
        if settings.mode == Mode::Hardware {
            check_codec("hw-encoder", &settings.hw_encoder)?;
        }
        Ok(())
    }

    fn sink_event(&self, pad: &gst::GhostPad, event: gst::Event) -> bool {
        match event.type_() {
            gst::EventType::Eos => return crate::guard::eos::sink_eos(self, pad, event),
            gst::EventType::FlushStart => {
                let forwarded = gst::Pad::event_default(pad, Some(&*self.obj()), event);
                self.core.flush_started();
                return forwarded;
            }
            gst::EventType::FlushStop => self.core.flush_stopped(),
            _ => (),
        }
        if let gst::EventView::Caps(caps) = event.view() {
            let (needs_chain, old_caps) = {
                let mut state = self.core.state.lock();
                match state.as_mut() {
                    // Renegotiation: the chain follows; a reclaim counts the new size.
                    Some(state) => (
                        false,
                        Some(std::mem::replace(&mut state.caps, caps.caps_owned())),
                    ),
                    None => (true, None),
                }
            };
            drop(old_caps);
            if needs_chain {
                match self.decide_and_build(caps.caps()) {
                    Ok(()) => (),
                    Err(DecideError::Failed(err)) => {
                        self.post_error_message(err);
                        return false;
                    }
                    Err(DecideError::Stopping) => {
                        gst::debug!(CAT, imp = self, "stopping: no decision taken");
                        return false;
                    }
                }
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
                let settings = self.settings.lock().clone();
                let mut candidates = Vec::with_capacity(2);
                if settings.mode != Mode::Software {
                    candidates.push(settings.hw_encoder.as_str());
                }
                if settings.mode != Mode::Hardware {
                    candidates.push(settings.sw_encoder.as_str());
                }
                let mut caps = gst::Caps::new_empty();
                for factory in candidates {
                    if let Some(sink_caps) = factory_caps::sink_caps(factory) {
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

    /// Takes the decision for a new stream and builds the chosen chain. Runs in
    /// the CAPS event handler: a buffer reaching a target-less ghost pad would
    /// be NOT_LINKED, so the chain must exist before the event is forwarded.
    fn decide_and_build(&self, caps: &gst::CapsRef) -> Result<(), DecideError> {
        let settings = self.settings.lock().clone();
        let candidates = self.candidates(&settings)?;
        let count = if decision::needs_session_count(
            settings.mode.into(),
            candidates.hw.is_some(),
            candidates.downstream_takes_hw,
        ) {
            count_vpu(self, &settings, Patience::LockTimeout)?
        } else {
            VpuCount::not_consulted()
        };
        let inputs = Inputs {
            kind: GuardKind::Encoder,
            mode: settings.mode.into(),
            hw_available: candidates.hw.is_some(),
            downstream_takes_hw: candidates.downstream_takes_hw,
            downstream_takes_sw: candidates.downstream_takes_sw,
            vpu: count.view,
            budget: settings.budget.budget(),
            stream_pixel_rate: stream_pixel_rate(caps),
        };
        let outcome = decision::decide(&inputs);
        gst::info!(CAT, imp = self, "decision for {:?}: {:?}", inputs, outcome);
        let seen = Seen::of(&inputs, count.session_file_string());
        self.carry_out(&settings, &candidates, caps, outcome, count.held, seen)
            .map_err(DecideError::Failed)
    }

    /// The installed encoders and which of their codecs downstream takes.
    fn candidates(&self, settings: &Settings) -> Result<Candidates, gst::ErrorMessage> {
        let usable = |name: &str| {
            children::find(name).and_then(|f| Codec::of_factory(&f).map(|codec| (f, codec)))
        };
        if settings.mode == Mode::Auto {
            let obj = self.obj();
            crate::guard::missing::warn_if_missing(
                obj.upcast_ref(),
                "hw-encoder",
                &settings.hw_encoder,
            );
        }
        let hw = usable(&settings.hw_encoder);
        let sw = usable(&settings.sw_encoder);
        let downstream = self.srcpad().peer_query_caps(None);
        let takes = |c: &Option<(gst::ElementFactory, Codec)>| {
            c.as_ref()
                .is_some_and(|(_, codec)| codec.accepted_by(&downstream))
        };
        let candidates = Candidates {
            downstream_takes_hw: takes(&hw),
            downstream_takes_sw: takes(&sw),
            hw: hw.map(|(f, _)| f),
            sw: sw.map(|(f, _)| f),
            downstream,
        };
        if !candidates.downstream_takes_hw && !candidates.downstream_takes_sw {
            return Err(gst::error_msg!(
                gst::CoreError::Negotiation,
                (
                    "Downstream of {} accepts neither H.265 nor H.264",
                    self.obj().name()
                ),
                ["downstream wants {}", candidates.downstream]
            ));
        }
        Ok(candidates)
    }

    /// Builds the chain the decision chose. `lock` is the decision lock, held
    /// until a hardware child has opened its session.
    fn carry_out(
        &self,
        settings: &Settings,
        candidates: &Candidates,
        caps: &gst::CapsRef,
        outcome: Outcome,
        held: Option<Held>,
        seen: Seen,
    ) -> Result<(), gst::ErrorMessage> {
        match outcome {
            Outcome::Fail(why) => Err(if settings.mode == Mode::Hardware {
                gst::error_msg!(gst::ResourceError::Busy, ("{}", why))
            } else {
                gst::error_msg!(
                    gst::CoreError::Negotiation,
                    ("{}", why),
                    ["downstream wants {}", candidates.downstream]
                )
            }),
            Outcome::Software(reason) => {
                drop(held);
                let sw = candidates
                    .sw
                    .as_ref()
                    .expect("decided for an installed encoder");
                self.build_or_error(settings, sw, caps, None, &seen)?;
                guard_core::post_decision(self, settings, reason, None);
                Ok(())
            }
            Outcome::Hardware(reason) => {
                let held = held.expect("hardware needs the decision lock");
                let slot = held
                    .take_slot(
                        &self.obj().path_string(),
                        SessionKind::Encoder,
                        seen.stream_pixel_rate,
                    )
                    .map_err(|e| {
                        gst::error_msg!(
                            gst::ResourceError::OpenReadWrite,
                            (
                                "lock-dir: cannot record a hardware slot in '{}'",
                                held.dir().display()
                            ),
                            ["{}", e]
                        )
                    })?;
                let hw = candidates
                    .hw
                    .as_ref()
                    .expect("decided for an installed encoder");
                let built = self.build_chain(settings, hw, caps, Some(slot), &seen);
                // The child has opened its session, or failed to.
                drop(held);
                match built {
                    Ok(()) => {
                        guard_core::post_decision(self, settings, reason, None);
                        Ok(())
                    }
                    Err(ChainError::Config(msg)) => {
                        Err(gst::error_msg!(gst::LibraryError::Settings, ("{}", msg)))
                    }
                    Err(ChainError::Start(why)) if settings.mode == Mode::Hardware => {
                        Err(gst::error_msg!(
                            gst::LibraryError::Init,
                            ("Hardware encoder {} failed to start", settings.hw_encoder),
                            ["{}", why]
                        ))
                    }
                    Err(ChainError::Start(why)) => {
                        self.software_after_hw_failure(settings, caps, &seen, &why)
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
        seen: &Seen,
    ) -> Result<(), gst::ErrorMessage> {
        self.build_chain(settings, factory, caps, slot, seen)
            .map_err(|err| err.into_message(GuardKind::Encoder, factory))
    }

    fn software_after_hw_failure(
        &self,
        settings: &Settings,
        caps: &gst::CapsRef,
        seen: &Seen,
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
        let sw_factory = children::find(&settings.sw_encoder).ok_or_else(|| {
            gst::error_msg!(
                gst::CoreError::MissingPlugin,
                (
                    "sw-encoder: no element '{}' is installed",
                    settings.sw_encoder
                )
            )
        })?;
        self.build_or_error(settings, &sw_factory, caps, None, seen)?;
        let now = monotonic_now();
        self.core
            .with_state(|state| state.reclaim.hardware_failed(now));
        guard_core::post_decision(self, settings, Reason::HwStartFailed, None);
        Ok(())
    }
}
