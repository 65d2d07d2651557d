// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use parking_lot::Mutex;
use std::sync::atomic::Ordering;
use std::sync::{LazyLock, OnceLock};

use super::Mode;
use super::candidates;
use super::gop_window::GopWindow;
use crate::factory_caps;
use crate::guard::child_props;
use crate::guard::children;
use crate::guard::core::{self as guard_core, Core, count_vpu, monotonic_now};
use crate::guard::frame::Frame;
use crate::guard::input::Input;
use crate::guard::kind::{Candidates, ChainError, DecideError, Seen};
use crate::metrics;
use crate::vpu::budget::{BudgetSettings, Held, Patience, VpuCount};
use crate::vpu::decision::{self, Budget, GuardKind, Inputs, Outcome, Reason};
use crate::vpu::ledger::Slot;
use crate::vpu::listing::SessionKind;
use crate::vpu::properties;

mod chain;
mod kind;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vpuguarddec",
        gst::DebugColorFlags::empty(),
        Some("VPU session-budgeted decoder bin"),
    )
});

const DEFAULT_HW_DECODER: &str = "mppvideodec";
const DEFAULT_SW_DECODER: &str = "auto";
const DEFAULT_MODE: Mode = Mode::Auto;

#[derive(Debug, Clone)]
pub struct Settings {
    hw_decoder: String,
    sw_decoder: String,
    budget: BudgetSettings,
    mode: Mode,
    hw_properties: String,
    sw_properties: String,
    reclaim_interval: gst::ClockTime,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hw_decoder: DEFAULT_HW_DECODER.into(),
            sw_decoder: DEFAULT_SW_DECODER.into(),
            budget: BudgetSettings::default(),
            mode: DEFAULT_MODE,
            hw_properties: String::new(),
            sw_properties: String::new(),
            reclaim_interval: gst::ClockTime::ZERO,
        }
    }
}

impl Settings {
    /// Decoders are budgeted by sessions only: the pixel budget is the
    /// encoders'.
    fn budget(&self) -> Budget {
        Budget {
            max_pixel_rate: 0,
            ..self.budget.budget()
        }
    }
}

// The settings, and the state the guard core keeps (its lock rules are in
// guard::core): `settings` is only cloned out, never held with the core's.
#[derive(Default)]
pub struct VpuGuardDec {
    settings: Mutex<Settings>,
    core: Core<GopWindow<Frame>>,
    metrics: OnceLock<metrics::Handle>,
}

#[glib::object_subclass]
impl ObjectSubclass for VpuGuardDec {
    const NAME: &'static str = "GstVpuGuardDec";
    type Type = super::VpuGuardDec;
    type ParentType = gst::Bin;
}

impl ObjectImpl for VpuGuardDec {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let children = [
                glib::ParamSpecString::builder("hw-decoder")
                    .nick("Hardware decoder")
                    .blurb("Factory name of the VPU decoder used while a session slot is free")
                    .default_value(Some(DEFAULT_HW_DECODER))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("sw-decoder")
                    .nick("Software decoder")
                    .blurb(
                        "Factory name of the CPU decoder used when the VPU budget is spent and \
                         when the hardware decoder fails; auto = the best ranked software \
                         decoder of the input's codec (avdec_h264, avdec_h265, ...)",
                    )
                    .default_value(Some(DEFAULT_SW_DECODER))
                    .mutable_ready()
                    .build(),
            ];
            let rest = [
                glib::ParamSpecEnum::builder_with_default("mode", DEFAULT_MODE)
                    .nick("Mode")
                    .blurb("Whether the guard may choose, or is forced to one decoder kind")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("hw-properties")
                    .nick("Hardware decoder properties")
                    .blurb(
                        "Properties for the hardware decoder as a GstStructure string, \
                         e.g. \"props,fast-mode=true\"",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("sw-properties")
                    .nick("Software decoder properties")
                    .blurb(
                        "Properties for the software decoder as a GstStructure string, applied \
                         after its defaults on a live stream (avdec_*: thread-type=slice, \
                         std-compliance=normal), e.g. \"props,max-threads=2\"",
                    )
                    .mutable_ready()
                    .build(),
                properties::reclaim_interval_spec(GuardKind::Decoder),
                glib::ParamSpecUInt::builder("switches")
                    .nick("Switches")
                    .blurb("How many times the decoder changed in this stream (failover, reclaim)")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("active-decoder")
                    .nick("Active decoder")
                    .blurb("Factory name of the decoder chosen for this stream (empty before)")
                    .read_only()
                    .build(),
                glib::ParamSpecBoolean::builder("hardware")
                    .nick("Hardware")
                    .blurb("Whether the chosen decoder is the hardware one")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("sessions")
                    .nick("Sessions")
                    .blurb("VPU sessions in use that the last decision saw")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-lost")
                    .nick("Frames lost")
                    .blurb(
                        "Frames no decoder could output in this stream: let go from a full \
                         window at a switch, or skipped until a keyframe after one",
                    )
                    .read_only()
                    .build(),
                properties::stats_spec(GuardKind::Decoder),
            ];
            let budget = properties::budget_param_specs(GuardKind::Decoder);
            children.into_iter().chain(budget).chain(rest).collect()
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock();
        let string = || value.get::<Option<String>>().unwrap().unwrap_or_default();
        match pspec.name() {
            name if properties::set_budget_property(&mut settings.budget, name, value) => (),
            "hw-decoder" => settings.hw_decoder = string(),
            "sw-decoder" => settings.sw_decoder = string(),
            "mode" => settings.mode = value.get().unwrap(),
            "hw-properties" => settings.hw_properties = string(),
            "sw-properties" => settings.sw_properties = string(),
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
            "hw-decoder" => settings.hw_decoder.to_value(),
            "sw-decoder" => settings.sw_decoder.to_value(),
            "mode" => settings.mode.to_value(),
            "hw-properties" => settings.hw_properties.to_value(),
            "sw-properties" => settings.sw_properties.to_value(),
            "reclaim-interval" => settings.reclaim_interval.nseconds().to_value(),
            "stats" => {
                drop(settings);
                let stats = self.core.stats.lock().clone();
                stats
                    .to_structure("vpuguarddec-stats", "decoder")
                    .to_value()
            }
            name => {
                drop(settings);
                let state = self.core.state.lock();
                match name {
                    "active-decoder" => state
                        .as_ref()
                        .map_or_else(String::new, |s| s.factory.clone())
                        .to_value(),
                    "hardware" => state.as_ref().is_some_and(|s| s.hardware).to_value(),
                    "sessions" => state.as_ref().map_or(0, |s| s.seen.sessions).to_value(),
                    "switches" => state.as_ref().map_or(0, |s| s.switches).to_value(),
                    "frames-lost" => state.as_ref().map_or(0, |s| s.frames_lost).to_value(),
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
            metrics::Sample::Decoder(obj.imp().core.stats.lock().clone())
        });
        let _ = self.metrics.set(handle);
    }
}

impl crate::guard::pads::GuardPads for VpuGuardDec {
    fn sink_event(&self, pad: &gst::GhostPad, event: gst::Event) -> bool {
        VpuGuardDec::sink_event(self, pad, event)
    }

    fn sink_query(&self, pad: &gst::GhostPad, query: &mut gst::QueryRef) -> bool {
        VpuGuardDec::sink_query(self, pad, query)
    }

    fn sink_chain(
        &self,
        pad: &gst::GhostPad,
        input: Input,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        crate::guard::failover::sink_chain(self, pad, input)
    }

    fn src_query(&self, pad: &gst::GhostPad, query: &mut gst::QueryRef) -> bool {
        VpuGuardDec::src_query(self, pad, query)
    }

    fn rebuilding(&self) -> bool {
        self.core.rebuilding.load(Ordering::SeqCst)
    }

    fn downstream_failed(&self) {
        self.core.downstream_error.store(true, Ordering::SeqCst);
    }
}

impl GstObjectImpl for VpuGuardDec {}

impl ElementImpl for VpuGuardDec {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "VPU session guard decoder",
                // "Hardware": playbin's force-sw-decoders (and decodebin's,
                // uridecodebin's) leave out factories whose klass says so. A
                // user asking for software decoding means no VPU at all, so
                // the guard, which may choose the VPU, steps aside for the
                // software decoder instead of being plugged and forced.
                "Codec/Decoder/Video/Hardware/Bin",
                "Decodes with the hardware decoder while the machine's VPU session budget \
                 has a free slot, with a software decoder otherwise; fails over mid-stream \
                 from the last keyframe",
                "edgeguard developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // Parsed access units: keyframes are flagged, so a failover
            // knows where the replacement can start.
            let parsed = |media_type| {
                gst::Structure::builder(media_type)
                    .field("parsed", true)
                    .field("alignment", "au")
                    .build()
            };
            let sink_caps = gst::Caps::builder_full()
                .structure(parsed("video/x-h264"))
                .structure(parsed("video/x-h265"))
                .structure(gst::Structure::new_empty("video/x-vp8"))
                .structure(gst::Structure::new_empty("video/x-vp9"))
                .build();
            let src_caps = gst::Caps::builder("video/x-raw").any_features().build();
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
        self.core.state_changing(transition);
        let result = self.parent_change_state(transition);
        if matches!(
            transition,
            gst::StateChange::PausedToReady | gst::StateChange::ReadyToNull
        ) {
            // The children are READY now: release them so the next stream decides anew.
            guard_core::teardown(self);
            self.core.stats.lock().stopped();
        }
        result
    }
}

impl BinImpl for VpuGuardDec {
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
            gst::warning!(CAT, imp = self, "hardware decoder failed: {what}");
            // Replaced at once, not when the next access unit arrives.
            self.obj()
                .call_async(|obj| crate::guard::switch::fail_over_now(obj.imp()));
            return;
        }
        // Anything else goes out as the child posted it: its source, debug
        // and details are what the application needs to act on.
        self.parent_handle_message(message)
    }
}

impl VpuGuardDec {
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
        children::refuse_guard("hw-decoder", &settings.hw_decoder).map_err(settings_error)?;
        children::refuse_guard("sw-decoder", &settings.sw_decoder).map_err(settings_error)?;
        let missing = |property: &str, name: &str| {
            gst::error_msg!(
                gst::CoreError::MissingPlugin,
                ("{}: no element '{}' is installed", property, name)
            )
        };
        if settings.sw_decoder != "auto" {
            let factory = gst::ElementFactory::find(&settings.sw_decoder)
                .ok_or_else(|| missing("sw-decoder", &settings.sw_decoder))?;
            if !factory.has_type(gst::ElementFactoryType::DECODER) {
                return Err(settings_error(format!(
                    "sw-decoder: '{}' is not a decoder",
                    settings.sw_decoder
                )));
            }
        }
        if settings.mode == Mode::Hardware {
            let factory = gst::ElementFactory::find(&settings.hw_decoder)
                .ok_or_else(|| missing("hw-decoder", &settings.hw_decoder))?;
            if !factory.has_type(gst::ElementFactoryType::DECODER) {
                return Err(settings_error(format!(
                    "hw-decoder: '{}' is not a decoder",
                    settings.hw_decoder
                )));
            }
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
        if let gst::EventView::Caps(caps) = event.view()
            && self.core.state.lock().is_none()
        {
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
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    /// Before the decision there is no decoder to ask: offer what the
    /// candidates take, the hardware one first, as the template allows
    /// (parsed access units), then the template itself (a parser in the
    /// chain converts the stream format).
    fn sink_query(&self, pad: &gst::GhostPad, query: &mut gst::QueryRef) -> bool {
        if pad.target().is_some() {
            return gst::Pad::query_default(pad, Some(&*self.obj()), query);
        }
        let gst::QueryViewMut::Caps(q) = query.view_mut() else {
            return gst::Pad::query_default(pad, Some(&*self.obj()), query);
        };
        let settings = self.settings.lock().clone();
        let template = pad.pad_template_caps();
        let mut candidates = Vec::with_capacity(2);
        if settings.mode != Mode::Software {
            candidates.push(settings.hw_decoder.as_str());
        }
        if settings.mode != Mode::Hardware && settings.sw_decoder != "auto" {
            candidates.push(settings.sw_decoder.as_str());
        }
        let mut caps = gst::Caps::new_empty();
        for factory in candidates {
            if let Some(sink_caps) = factory_caps::sink_caps(factory) {
                caps.merge(sink_caps.intersect_with_mode(&template, gst::CapsIntersectMode::First));
            }
        }
        caps.merge(template);
        let caps = match q.filter() {
            Some(filter) => filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
            None => caps,
        };
        q.set_result(&caps);
        true
    }

    /// Before the decision: what the candidates output, the hardware one
    /// first, then anything raw (`auto` is chosen by the input caps).
    fn src_query(&self, pad: &gst::GhostPad, query: &mut gst::QueryRef) -> bool {
        if pad.target().is_some() {
            return gst::Pad::query_default(pad, Some(&*self.obj()), query);
        }
        let gst::QueryViewMut::Caps(q) = query.view_mut() else {
            return gst::Pad::query_default(pad, Some(&*self.obj()), query);
        };
        let settings = self.settings.lock().clone();
        let mut names = Vec::with_capacity(2);
        if settings.mode != Mode::Software {
            names.push(settings.hw_decoder.as_str());
        }
        if settings.mode != Mode::Hardware {
            names.push(settings.sw_decoder.as_str());
        }
        let mut caps = gst::Caps::new_empty();
        for factory in names.into_iter().filter_map(gst::ElementFactory::find) {
            caps.merge(candidates::output_caps(&factory));
        }
        caps.merge(pad.pad_template_caps());
        let caps = match q.filter() {
            Some(filter) => filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
            None => caps,
        };
        q.set_result(&caps);
        true
    }

    /// Takes the decision for a new stream and builds the chosen chain, in
    /// the CAPS event handler: the chain must exist before the event goes on.
    fn decide_and_build(&self, caps: &gst::CapsRef) -> Result<(), DecideError> {
        let settings = self.settings.lock().clone();
        gst::debug!(CAT, imp = self, "deciding for {caps}");
        let candidates = self.candidates(&settings, caps)?;
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
            kind: GuardKind::Decoder,
            mode: settings.mode.into(),
            hw_available: candidates.hw.is_some(),
            downstream_takes_hw: candidates.downstream_takes_hw,
            downstream_takes_sw: candidates.downstream_takes_sw,
            vpu: count.view,
            budget: settings.budget(),
            stream_pixel_rate: 0,
        };
        let outcome = decision::decide(&inputs);
        gst::info!(CAT, imp = self, "decision for {:?}: {:?}", inputs, outcome);
        let seen = Seen::of(&inputs, count.session_file_string());
        self.carry_out(&settings, &candidates, caps, outcome, count.held, seen)
            .map_err(DecideError::Failed)
    }

    /// The installed decoders for these caps and whether downstream takes
    /// what they output.
    fn candidates(
        &self,
        settings: &Settings,
        caps: &gst::CapsRef,
    ) -> Result<Candidates, DecideError> {
        let hw = self
            .hardware_decoder(settings)
            .filter(|f| candidates::takes(f, caps));
        let sw = candidates::software_decoder(&settings.sw_decoder, caps);
        let downstream = self.srcpad().peer_query_caps(None);
        let takes = |f: &Option<gst::ElementFactory>| {
            f.as_ref()
                .is_some_and(|f| candidates::output_caps(f).can_intersect(&downstream))
        };
        let candidates = Candidates {
            downstream_takes_hw: takes(&hw),
            downstream_takes_sw: takes(&sw),
            hw,
            sw,
            downstream,
        };
        if candidates.hw.is_none() && candidates.sw.is_none() {
            return Err(DecideError::Failed(gst::error_msg!(
                gst::CoreError::MissingPlugin,
                (
                    "No decoder of {} takes {}: hw-decoder={}, sw-decoder={}",
                    self.obj().name(),
                    caps,
                    settings.hw_decoder,
                    settings.sw_decoder
                )
            )));
        }
        Ok(candidates)
    }

    /// The installed `hw-decoder` when it is a decoder and no guard; in
    /// `mode=auto` a missing one is said once per process.
    fn hardware_decoder(&self, settings: &Settings) -> Option<gst::ElementFactory> {
        if settings.mode == Mode::Auto {
            let obj = self.obj();
            crate::guard::missing::warn_if_missing(
                obj.upcast_ref(),
                "hw-decoder",
                &settings.hw_decoder,
            );
        }
        children::find(&settings.hw_decoder)
            .filter(|f| f.has_type(gst::ElementFactoryType::DECODER))
    }

    /// Builds the chain the decision chose. `held` is the decision lock,
    /// held until a hardware child has started.
    fn carry_out(
        &self,
        settings: &Settings,
        candidates: &Candidates,
        caps: &gst::CapsRef,
        outcome: Outcome,
        held: Option<Held>,
        seen: Seen,
    ) -> Result<(), gst::ErrorMessage> {
        let hardware = match outcome {
            Outcome::Fail(why) if settings.mode == Mode::Hardware => {
                return Err(gst::error_msg!(
                    gst::ResourceError::Busy,
                    ("{}: {}", self.obj().name(), why)
                ));
            }
            Outcome::Fail(why) => {
                return Err(gst::error_msg!(
                    gst::CoreError::Negotiation,
                    ("{}: {}", self.obj().name(), why),
                    ["downstream wants {}", candidates.downstream]
                ));
            }
            Outcome::Software(reason) => {
                drop(held);
                let sw = candidates
                    .sw
                    .as_ref()
                    .expect("decided for an installed decoder");
                self.build_chain(settings, sw, caps, None, &seen)
                    .map_err(|e| e.into_message(GuardKind::Decoder, sw))?;
                guard_core::post_decision(self, settings, reason, None);
                return Ok(());
            }
            Outcome::Hardware(reason) => (reason, held.expect("hardware needs the decision lock")),
        };
        let (reason, held) = hardware;
        let slot = held
            .take_slot(&self.obj().path_string(), SessionKind::Decoder, 0)
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
            .expect("decided for an installed decoder");
        let built = self.build_chain(settings, hw, caps, Some(slot), &seen);
        // The child has started (its session is open, or counted by its slot).
        drop(held);
        match built {
            Ok(()) => {
                guard_core::post_decision(self, settings, reason, None);
                Ok(())
            }
            Err(ChainError::Start(why)) if settings.mode != Mode::Hardware => {
                self.software_after_start_failure(settings, candidates, caps, &seen, &why)
            }
            Err(err) => Err(err.into_message(GuardKind::Decoder, hw)),
        }
    }

    fn software_after_start_failure(
        &self,
        settings: &Settings,
        candidates: &Candidates,
        caps: &gst::CapsRef,
        seen: &Seen,
        why: &str,
    ) -> Result<(), gst::ErrorMessage> {
        let Some(sw) = candidates.sw.as_ref() else {
            return Err(gst::error_msg!(
                gst::LibraryError::Init,
                (
                    "hw-decoder: {} failed to start and no sw-decoder takes {}",
                    settings.hw_decoder,
                    caps
                ),
                ["{}", why]
            ));
        };
        gst::element_imp_warning!(
            self,
            gst::LibraryError::Init,
            (
                "Hardware decoder {} failed to start, decoding with {}",
                settings.hw_decoder,
                sw.name()
            ),
            ["{}", why]
        );
        self.build_chain(settings, sw, caps, None, seen)
            .map_err(|e| e.into_message(GuardKind::Decoder, sw))?;
        let now = monotonic_now();
        self.core
            .with_state(|state| state.reclaim.hardware_failed(now));
        guard_core::post_decision(self, settings, Reason::HwStartFailed, None);
        Ok(())
    }
}
