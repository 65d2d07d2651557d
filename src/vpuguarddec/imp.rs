// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use parking_lot::Mutex;
use std::sync::{LazyLock, OnceLock};

use super::Mode;
use super::candidates;
use super::gop_window::GopWindow;
use crate::guard::chain::ChainError;
use crate::guard::child_props;
use crate::guard::children;
use crate::guard::core as guard_core;
use crate::guard::frame::Frame;
use crate::guard::state::Core;
use crate::metrics;
use crate::vpu::budget::BudgetSettings;
use crate::vpu::decision::{Budget, GuardKind};
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
            name => {
                drop(settings);
                crate::guard::readout::read_only_property(self, name)
                    .expect("a property of the guard")
            }
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let _ = self.metrics.set(crate::guard::pads::construct(self));
    }
}

impl crate::guard::pads::GuardPads for VpuGuardDec {
    fn src_query(&self, pad: &gst::GhostPad, query: &mut gst::QueryRef) -> bool {
        VpuGuardDec::src_query(self, pad, query)
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
        guard_core::change_state(self, transition, |t| self.parent_change_state(t))
    }
}

impl BinImpl for VpuGuardDec {
    fn handle_message(&self, message: gst::Message) {
        if let Some(message) = crate::guard::failover::claim_error(self, message) {
            self.parent_handle_message(message)
        }
    }
}

impl VpuGuardDec {
    fn srcpad(&self) -> &gst::GhostPad {
        self.core.srcpad()
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
        let names = crate::guard::sink::candidate_names::<Self>(&settings);
        let mut caps = gst::Caps::new_empty();
        for factory in names.into_iter().filter_map(gst::ElementFactory::find) {
            caps.merge(candidates::output_caps(&factory));
        }
        caps.merge(pad.pad_template_caps());
        q.set_result(&crate::guard::sink::filtered(caps, q.filter()));
        true
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
}
