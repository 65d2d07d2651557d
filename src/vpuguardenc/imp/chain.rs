// SPDX-License-Identifier: MPL-2.0
//! The encoder chain inside the bin, `[videoconvert !] encoder ! parser
//! [! capsfilter]`: creating it, starting it, linking it to the ghost pads,
//! removing it, and telling the application what was chosen.

use super::*;
use crate::guard::chain::{Chain, Role};
use crate::guard::choice::Decided;
use crate::vpuguardenc::stream_format;

impl VpuGuardEnc {
    /// What the chain outputs: for a `replacing` chain the stream format
    /// downstream negotiated with the chain before (no codec or format
    /// change); for a switchable chain parameter sets in band, since its
    /// replacement brings new ones.
    fn output_caps(&self, codec: Codec, switchable: bool, replacing: bool) -> Option<gst::Caps> {
        let negotiated = self
            .srcpad()
            .current_caps()
            .filter(|caps| replacing && codec.accepted_by(caps));
        match negotiated {
            Some(caps) => stream_format::pinned_caps(&caps),
            None if switchable => {
                stream_format::in_band_caps(codec, &self.srcpad().peer_query_caps(None))
            }
            None => None,
        }
    }

    /// Whether a chain of `role` and `codec` may be replaced mid-stream: a
    /// hardware one by the failover encoder, a software one of the hardware
    /// encoder's codec by the hardware encoder again (`reclaim-interval`).
    pub(super) fn switchable_codec(&self, settings: &Settings, role: Role, codec: Codec) -> bool {
        match role {
            Role::Hardware => matches!(failover_factory(settings), Ok(Some(_))),
            Role::Software | Role::Failover => {
                settings.mode == Mode::Auto
                    && !settings.reclaim_interval.is_zero()
                    && hw_codec(settings) == Some(codec)
            }
        }
    }

    /// Creates `[videoconvert !] encoder ! parser [! capsfilter]` in the bin,
    /// linked, in NULL; a `replacing` chain outputs what downstream has.
    pub(super) fn create_encoder_chain(
        &self,
        settings: &Settings,
        factory: &gst::ElementFactory,
        caps: &gst::CapsRef,
        role: Role,
        replacing: bool,
    ) -> Result<Chain, ChainError> {
        let codec = codec_of(factory)?;
        let switchable = self.switchable_codec(settings, role, codec);
        let output = self.output_caps(codec, switchable, replacing);
        let output = output.as_ref();
        let make = crate::guard::chain::make;
        let encoder = crate::guard::chain::create(factory)?;
        // Asked at each software choice: negotiation, failover.
        let live_pixel_rate =
            (role != Role::Hardware && self.core.stream_is_live()).then(|| stream_pixel_rate(caps));
        self.configure_encoder(settings, &encoder, role, switchable, live_pixel_rate)
            .map_err(ChainError::Config)?;
        let parser = make(codec.parser())?;

        let mut elements = Vec::with_capacity(4);
        if needs_converter(&encoder, caps) {
            elements.push(make("videoconvert")?);
        }
        elements.push(encoder.clone());
        elements.push(parser.clone());
        if let Some(output) = output {
            // Parameter sets with every keyframe: the first frame of a
            // replacement encoder is one, and carries its own.
            parser.set_property("config-interval", -1i32);
            let filter = make("capsfilter")?;
            filter.set_property("caps", output);
            elements.push(filter);
        }
        crate::guard::chain::add_linked(self.obj().upcast_ref(), &elements, factory)?;
        Ok(Chain {
            elements,
            child: encoder,
            factory: factory.name().to_string(),
            role,
            switchable,
        })
    }

    fn configure_encoder(
        &self,
        settings: &Settings,
        encoder: &gst::Element,
        role: Role,
        switchable: bool,
        live_pixel_rate: Option<u64>,
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
        let (origin, text) = match role {
            Role::Hardware => ("hw-properties", &settings.hw_properties),
            Role::Software => ("sw-properties", &settings.sw_properties),
            Role::Failover => ("failover-properties", &settings.failover_properties),
        };
        // On a live stream a software encoder keeps the latency class of the
        // hardware one (no lookahead, no B-frames, a preset that keeps up).
        // Otherwise a failover encoder takes over a stream with no B-frames,
        // and a software one that may be replaced must leave frames in input
        // order too.
        let needs_defaults = role == Role::Failover || (role == Role::Software && switchable);
        let defaults = match live_pixel_rate {
            Some(pixel_rate) => crate::guard::live::encoder_defaults(&factory, pixel_rate),
            None => needs_defaults
                .then(|| child_props::switchable_defaults(&factory).map(str::to_string))
                .flatten(),
        };
        for text in defaults.iter().map(String::as_str).chain([text.as_str()]) {
            if let Some(props) = child_props::parse_structure(origin, text)? {
                child_props::apply_structure(encoder, origin, &props)?;
            }
        }
        Ok(())
    }

    /// The `vpuguardenc-decision` message's structure.
    pub(super) fn decision_structure(
        &self,
        settings: &Settings,
        decided: &Decided,
        switch: Option<&SwitchReport>,
    ) -> gst::Structure {
        let report = switch.cloned().unwrap_or_default();
        let seen = &decided.seen;
        let mut structure = gst::Structure::builder("vpuguardenc-decision")
            .field("encoder", &decided.factory)
            .field("hardware", decided.hardware)
            .field("sessions", seen.sessions)
            .field("max-sessions", settings.budget.max_sessions)
            .field("pixel-rate", seen.pixel_rate)
            .field("stream-pixel-rate", seen.stream_pixel_rate)
            .field("max-pixel-rate", settings.budget.max_pixel_rate)
            .field("session-file", &seen.session_file)
            .field("budget-source", seen.source)
            .field("load", seen.load)
            .field("reason", decided.reason.as_str())
            .field("switches", decided.switches)
            .field("frames-replayed", report.replayed)
            .field("frames-lost", report.lost)
            .build();
        if let Some(running_time) = report.first_running_time {
            structure.set("switch-running-time", running_time.nseconds());
        }
        structure
    }
}

use crate::guard::frame::SwitchReport;

fn codec_of(factory: &gst::ElementFactory) -> Result<Codec, ChainError> {
    Codec::of_factory(factory).ok_or_else(|| {
        ChainError::Config(format!(
            "{} outputs neither H.264 nor H.265",
            factory.name()
        ))
    })
}

/// A system-memory format the encoder cannot take (x265enc and NV12) needs a
/// converter; hardware memory goes to the encoder untouched.
fn needs_converter(encoder: &gst::Element, caps: &gst::CapsRef) -> bool {
    let in_system_memory = caps.features(0).is_none_or(|f| {
        f.is_equal(gst::CapsFeatures::new_empty().as_ref())
            || f.contains(gst::CAPS_FEATURE_MEMORY_SYSTEM_MEMORY)
    });
    let encoder_sink = encoder
        .static_pad("sink")
        .expect("encoders have a sink pad");
    in_system_memory && !encoder_sink.query_caps(None).can_intersect(caps)
}

/// The codec of the hardware encoder, when it is installed.
pub(super) fn hw_codec(settings: &Settings) -> Option<Codec> {
    crate::guard::children::find(&settings.hw_encoder).and_then(|f| Codec::of_factory(&f))
}

/// The encoder that takes over from a failed hardware encoder, None for no
/// failover; an error names a `failover-encoder` that cannot serve.
pub(super) fn failover_factory(settings: &Settings) -> Result<Option<gst::ElementFactory>, String> {
    let Some(hw) = hw_codec(settings) else {
        // No hardware encoder: nothing to fail over from.
        return Ok(None);
    };
    let name = match settings.failover_encoder.as_str() {
        "none" => return Ok(None),
        // A missing default is no failover, as a missing hw-encoder is software.
        "auto" | "" => {
            return Ok(gst::ElementFactory::find(hw.failover_encoder()));
        }
        name => name,
    };
    crate::guard::children::refuse_guard("failover-encoder", name)?;
    let factory = gst::ElementFactory::find(name)
        .ok_or_else(|| format!("failover-encoder: no element '{name}' is installed"))?;
    if crate::guard::is_hardware(&factory) {
        return Err(format!(
            "failover-encoder: '{name}' is a hardware encoder; it would run outside the VPU \
             budget: name a software encoder of the hardware encoder's codec"
        ));
    }
    match Codec::of_factory(&factory) {
        Some(codec) if codec == hw => Ok(Some(factory)),
        Some(codec) => Err(format!(
            "failover-encoder: '{name}' outputs {} but hw-encoder '{}' outputs {}; \
             downstream must not see the codec change",
            codec.media_type(),
            settings.hw_encoder,
            hw.media_type()
        )),
        None => Err(format!(
            "failover-encoder: '{name}' outputs neither H.264 nor H.265"
        )),
    }
}
