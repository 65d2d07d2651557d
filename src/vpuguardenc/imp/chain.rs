// SPDX-License-Identifier: MPL-2.0
//! The encoder chain inside the bin, `[videoconvert !] encoder ! parser
//! [! capsfilter]`: creating it, starting it, linking it to the ghost pads,
//! removing it, and telling the application what was chosen.

use super::*;
use crate::guard::watch::Keep;
use crate::vpuguardenc::frames;
use crate::vpuguardenc::stream_format;

/// What an encoder is there for, which decides the properties it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Hardware,
    Software,
    /// A software encoder of the hardware encoder's codec, taking over mid-stream.
    Failover,
}

/// A chain created and linked inside the bin, not yet linked to the ghost pads.
pub(super) struct Chain {
    pub elements: Vec<gst::Element>,
    pub encoder: gst::Element,
    pub factory: String,
    pub role: Role,
    /// Whether the chain may be replaced mid-stream (failover or reclaim).
    pub switchable: bool,
}

impl Chain {
    pub fn last(&self) -> &gst::Element {
        self.elements
            .last()
            .expect("a chain has an encoder and a parser")
    }

    /// A watch for the chain, when the guard must follow it: a hardware child
    /// until its first output at least, any chain that may be replaced
    /// mid-stream for the whole stream.
    pub fn watch(&self) -> Option<Arc<Watch>> {
        let hardware = self.role == Role::Hardware;
        let keep = if self.switchable {
            Keep::WholeStream
        } else {
            Keep::UntilFirstOutput
        };
        (hardware || self.switchable)
            .then(|| frames::watch(self.encoder.clone(), hardware, keep, self.last()))
    }
}

/// Time on a monotonic clock, for the reclaim schedule.
pub(super) fn monotonic_now() -> Duration {
    static START: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);
    START.elapsed()
}

impl VpuGuardEnc {
    /// Builds the stream's first chain, links it to the ghost pads and starts
    /// it. `slot` is Some for the hardware encoder.
    pub(super) fn build_chain(
        &self,
        settings: &Settings,
        factory: &gst::ElementFactory,
        caps: &gst::CapsRef,
        slot: Option<Slot>,
        seen: &Seen,
    ) -> Result<(), ChainError> {
        let role = if slot.is_some() {
            Role::Hardware
        } else {
            Role::Software
        };
        let codec = codec_of(factory)?;
        let switchable = self.switchable(settings, role, codec);
        // A chain that may be replaced outputs parameter sets in band: its
        // replacement brings new ones.
        let output = switchable
            .then(|| stream_format::in_band_caps(codec, &self.srcpad().peer_query_caps(None)))
            .flatten();
        let chain =
            self.create_chain(settings, factory, caps, role, switchable, output.as_ref())?;
        self.attach_chain(&chain)?;
        let watch = chain.watch();
        let previous = std::mem::replace(&mut self.watches.lock().current, watch.clone());
        drop(previous);
        let reclaim =
            ReclaimSchedule::new(Duration::from(settings.reclaim_interval), monotonic_now());
        let new_state = Some(State {
            elements: chain.elements.clone(),
            factory: chain.factory.clone(),
            hardware: role == Role::Hardware,
            codec,
            seen: seen.clone(),
            caps: caps.to_owned(),
            slot,
            switches: 0,
            reclaim,
            untold: None,
        });
        let previous = std::mem::replace(&mut *self.state.lock(), new_state);
        drop(previous);
        let failure = self
            .start_chain(&chain)
            .err()
            .or_else(|| watch.and_then(|w| w.failure()));
        if let Some(why) = failure {
            self.teardown();
            return Err(ChainError::Start(why));
        }
        self.notify_chain_properties();
        Ok(())
    }

    /// Whether a chain of `role` and `codec` may be replaced mid-stream: a
    /// hardware one by the failover encoder, a software one of the hardware
    /// encoder's codec by the hardware encoder again (`reclaim-interval`).
    pub(super) fn switchable(&self, settings: &Settings, role: Role, codec: Codec) -> bool {
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
    /// linked, in NULL. `output` pins what the chain outputs.
    pub(super) fn create_chain(
        &self,
        settings: &Settings,
        factory: &gst::ElementFactory,
        caps: &gst::CapsRef,
        role: Role,
        switchable: bool,
        output: Option<&gst::Caps>,
    ) -> Result<Chain, ChainError> {
        let codec = codec_of(factory)?;
        let make = |name: &str| {
            gst::ElementFactory::make(name)
                .build()
                .map_err(|e| ChainError::Config(format!("cannot create {name}: {e}")))
        };
        let encoder = factory
            .create()
            .build()
            .map_err(|e| ChainError::Config(format!("cannot create {}: {e}", factory.name())))?;
        self.configure_encoder(settings, &encoder, role, switchable)
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
        let obj = self.obj();
        crate::guard::chain::add(obj.upcast_ref(), &elements)
            .map_err(|e| ChainError::Config(e.to_string()))?;
        if let Err(e) = gst::Element::link_many(&elements) {
            let _ = obj.remove_many(&elements);
            return Err(ChainError::Config(format!(
                "cannot link the {} chain: {e}",
                factory.name()
            )));
        }
        Ok(Chain {
            elements,
            encoder,
            factory: factory.name().to_string(),
            role,
            switchable,
        })
    }

    pub(super) fn start_chain(&self, chain: &Chain) -> Result<(), String> {
        crate::guard::chain::start(&chain.elements)
    }

    /// Makes the chain the one the ghost pads lead to.
    pub(super) fn attach_chain(&self, chain: &Chain) -> Result<(), ChainError> {
        let (sinkpad, srcpad) = (self.sinkpad(), self.srcpad());
        crate::guard::chain::attach(sinkpad, srcpad, &chain.elements, &self.rebuilding)
            .map_err(ChainError::Config)
    }

    pub(super) fn remove_elements(&self, elements: &[gst::Element]) {
        crate::guard::chain::remove(self.obj().upcast_ref(), elements);
    }

    pub(super) fn notify_chain_properties(&self) {
        let obj = self.obj();
        for name in [
            "active-encoder",
            "hardware",
            "sessions",
            "pixel-rate",
            "switches",
        ] {
            obj.notify(name);
        }
    }

    fn configure_encoder(
        &self,
        settings: &Settings,
        encoder: &gst::Element,
        role: Role,
        switchable: bool,
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
        // A failover encoder takes over a stream with no B-frames; a software
        // one that may be replaced must leave frames in input order too.
        let needs_defaults = role == Role::Failover || (role == Role::Software && switchable);
        let defaults = needs_defaults
            .then(|| child_props::switchable_defaults(&factory))
            .flatten();
        for text in defaults.into_iter().chain([text.as_str()]) {
            if let Some(props) = child_props::parse_structure(origin, text)? {
                child_props::apply_structure(encoder, origin, &props)?;
            }
        }
        Ok(())
    }

    /// Posts the `vpuguardenc-decision` message for the chain now in place.
    pub(super) fn post_decision(
        &self,
        settings: &Settings,
        reason: Reason,
        switch: Option<&SwitchReport>,
    ) {
        let (encoder, hardware, seen, switches) = {
            let state = self.state.lock();
            let state = state.as_ref().expect("posted after a chain was built");
            (
                state.factory.clone(),
                state.hardware,
                state.seen.clone(),
                state.switches,
            )
        };
        gst::info!(
            CAT,
            imp = self,
            "chose {encoder} (hardware: {hardware}, reason: {}, sessions {} of {}, \
             {} + {} px/s of {}, switch {switch:?})",
            reason.as_str(),
            seen.sessions,
            settings.budget.max_sessions,
            seen.pixel_rate,
            seen.stream_pixel_rate,
            settings.budget.max_pixel_rate
        );
        self.stats.lock().record(metrics::Decision {
            factory: encoder.clone(),
            hardware,
            reason: reason.as_str(),
            sessions: seen.sessions,
            max_sessions: settings.budget.max_sessions,
            pixel_rate: seen.pixel_rate,
            switch: switch.map(|r| metrics::Switch {
                replayed: r.replayed,
                lost: r.lost,
            }),
        });
        let report = switch.cloned().unwrap_or_default();
        let mut structure = gst::Structure::builder("vpuguardenc-decision")
            .field("encoder", encoder)
            .field("hardware", hardware)
            .field("sessions", seen.sessions)
            .field("max-sessions", settings.budget.max_sessions)
            .field("pixel-rate", seen.pixel_rate)
            .field("stream-pixel-rate", seen.stream_pixel_rate)
            .field("max-pixel-rate", settings.budget.max_pixel_rate)
            .field("session-file", seen.session_file)
            .field("reason", reason.as_str())
            .field("switches", switches)
            .field("frames-replayed", report.replayed)
            .field("frames-lost", report.lost)
            .build();
        if let Some(running_time) = report.first_running_time {
            structure.set("switch-running-time", running_time.nseconds());
        }
        let _ = self.obj().post_message(
            gst::message::Element::builder(structure)
                .src(&*self.obj())
                .build(),
        );
    }

    /// Stops and removes the chain, then releases its VPU slot.
    pub(super) fn teardown(&self) {
        let state = self.state.lock().take();
        // Dropped outside the lock: it holds the encoder and frames.
        let watch = self.watches.lock().current.take();
        drop(watch);
        if let Some(state) = state {
            let _ = self.sinkpad().set_target(None::<&gst::Pad>);
            let _ = self.srcpad().set_target(None::<&gst::Pad>);
            self.remove_elements(&state.elements);
            // Only now, with the encoder in NULL, is its VPU session closed.
            if let Some(slot) = state.slot {
                gst::debug!(CAT, imp = self, "releasing slot {}", slot.path().display());
            }
            gst::debug!(CAT, imp = self, "removed the {} chain", state.factory);
        }
        crate::guard::chain::remove_all(self.obj().upcast_ref());
    }
}

/// What a mid-stream switch did with the frames in flight.
#[derive(Debug, Clone, Default)]
pub(super) struct SwitchReport {
    /// Frames the old encoder never output, sent to the new one.
    pub replayed: u64,
    /// Frames let go because the window was full: neither encoder had them.
    pub lost: u64,
    /// The running time of the first frame the new encoder got.
    pub first_running_time: Option<gst::ClockTime>,
}

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
    gst::ElementFactory::find(&settings.hw_encoder).and_then(|f| Codec::of_factory(&f))
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
