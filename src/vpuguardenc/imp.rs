// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use parking_lot::Mutex;
use std::sync::{LazyLock, OnceLock};

use super::Mode;
use super::codec::Codec;
use super::window::Window;
use crate::guard::chain::ChainError;
use crate::guard::child_props;
use crate::guard::children;
use crate::guard::choice::Candidates;
use crate::guard::core as guard_core;
use crate::guard::frame::Frame;
use crate::guard::state::Core;
use crate::metrics;
use crate::vpu::budget::BudgetSettings;
use crate::vpu::decision::{GuardKind, Reason};
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

impl crate::guard::pads::GuardPads for VpuGuardEnc {}

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
        guard_core::change_state(self, transition, |t| self.parent_change_state(t))
    }
}

impl BinImpl for VpuGuardEnc {
    fn handle_message(&self, message: gst::Message) {
        if let Some(message) = crate::guard::failover::claim_error(self, message) {
            self.parent_handle_message(message)
        }
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
}
