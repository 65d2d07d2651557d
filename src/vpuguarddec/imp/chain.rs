// SPDX-License-Identifier: MPL-2.0
//! The decoder chain inside the bin, `[parser !] decoder [! videoconvert !
//! capsfilter]`: creating it, starting it, linking it to the ghost pads,
//! removing it, and telling the application what was chosen.

use super::*;
use crate::guard::watch::Keep;
use crate::vpuguarddec::units;
use std::time::Duration;

/// Why a chain could not be built.
pub(super) enum ChainError {
    /// The settings are wrong: no other decoder would fix it.
    Config(String),
    /// The decoder failed to start: another decoder may work.
    Start(String),
}

impl ChainError {
    pub fn into_message(self, factory: &gst::ElementFactory) -> gst::ErrorMessage {
        match self {
            ChainError::Config(msg) => gst::error_msg!(gst::LibraryError::Settings, ("{}", msg)),
            ChainError::Start(why) => gst::error_msg!(
                gst::LibraryError::Init,
                ("Decoder {} failed to start", factory.name()),
                ["{}", why]
            ),
        }
    }

    pub fn why(self) -> String {
        match self {
            ChainError::Config(why) | ChainError::Start(why) => why,
        }
    }
}

/// A chain created and linked inside the bin, not yet linked to the ghost pads.
pub(super) struct Chain {
    pub elements: Vec<gst::Element>,
    pub decoder: gst::Element,
    pub factory: String,
    pub hardware: bool,
    /// Whether the chain may be replaced mid-stream (failover or reclaim).
    pub switchable: bool,
}

impl Chain {
    pub fn last(&self) -> &gst::Element {
        self.elements.last().expect("a chain has a decoder")
    }

    /// A watch for the chain when the guard must follow it: a hardware one
    /// always (it may fail over), a software one that may be reclaimed.
    pub fn watch(&self) -> Option<Arc<Watch>> {
        let keep = if self.switchable {
            Keep::WholeStream
        } else {
            Keep::UntilFirstOutput
        };
        (self.hardware || self.switchable)
            .then(|| units::watch(self.decoder.clone(), self.hardware, keep, self.last()))
    }
}

/// Time on a monotonic clock, for the reclaim schedule.
pub(super) fn monotonic_now() -> Duration {
    static START: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);
    START.elapsed()
}

impl VpuGuardDec {
    /// Builds the stream's first chain, links it to the ghost pads and starts
    /// it. `slot` is Some for the hardware decoder.
    pub(super) fn build_chain(
        &self,
        settings: &Settings,
        factory: &gst::ElementFactory,
        caps: &gst::CapsRef,
        slot: Option<Slot>,
        seen: &Seen,
    ) -> Result<(), ChainError> {
        let hardware = slot.is_some();
        let chain = self.create_chain(settings, factory, caps, hardware, None)?;
        self.attach_chain(&chain)?;
        let watch = chain.watch();
        let previous = std::mem::replace(&mut self.watches.lock().current, watch.clone());
        drop(previous);
        let new_state = Some(State {
            elements: chain.elements.clone(),
            factory: chain.factory.clone(),
            hardware,
            seen: seen.clone(),
            slot,
            switches: 0,
            frames_lost: 0,
            awaiting_keyframe: false,
            untold: None,
            reclaim: ReclaimSchedule::new(
                Duration::from(settings.reclaim_interval),
                monotonic_now(),
            ),
        });
        let previous = std::mem::replace(&mut *self.state.lock(), new_state);
        drop(previous);
        let failure = self
            .start_chain(&chain)
            .and_then(|()| self.prime_chain(&chain, Some(caps)))
            .err()
            .or_else(|| watch.and_then(|w| w.failure()));
        if let Some(why) = failure {
            self.teardown();
            return Err(ChainError::Start(why));
        }
        self.notify_chain_properties();
        Ok(())
    }

    /// Primes the chain with the stream's sticky events (see
    /// `guard::chain::prime`): mppvideodec refuses caps it cannot open MPP
    /// for, without an ERROR.
    pub(super) fn prime_chain(
        &self,
        chain: &Chain,
        caps: Option<&gst::CapsRef>,
    ) -> Result<(), String> {
        crate::guard::chain::prime(self.sinkpad(), &chain.elements, caps)
    }

    /// Whether a chain may be replaced mid-stream: a hardware one by the
    /// software decoder (failover), a software one by the hardware decoder
    /// again (`reclaim-interval`).
    pub(super) fn switchable(&self, settings: &Settings, hardware: bool) -> bool {
        hardware || (settings.mode == Mode::Auto && !settings.reclaim_interval.is_zero())
    }

    /// Creates `[parser !] decoder [! videoconvert ! capsfilter]` in the bin,
    /// linked, in NULL. `output` pins what the chain outputs (a replacement
    /// outputs what downstream negotiated with the chain it replaces).
    pub(super) fn create_chain(
        &self,
        settings: &Settings,
        factory: &gst::ElementFactory,
        caps: &gst::CapsRef,
        hardware: bool,
        output: Option<&gst::Caps>,
    ) -> Result<Chain, ChainError> {
        let make = |name: &str| {
            gst::ElementFactory::make(name)
                .build()
                .map_err(|e| ChainError::Config(format!("cannot create {name}: {e}")))
        };
        let decoder = factory
            .create()
            .build()
            .map_err(|e| ChainError::Config(format!("cannot create {}: {e}", factory.name())))?;
        let (origin, text) = if hardware {
            ("hw-properties", &settings.hw_properties)
        } else {
            ("sw-properties", &settings.sw_properties)
        };
        if let Some(props) =
            child_props::parse_structure(origin, text).map_err(ChainError::Config)?
        {
            child_props::apply_structure(&decoder, origin, &props).map_err(ChainError::Config)?;
        }
        let mut elements = Vec::with_capacity(4);
        let decoder_sink = decoder
            .static_pad("sink")
            .expect("decoders have a sink pad");
        if !decoder_sink.query_accept_caps(&caps.to_owned())
            && let Some(parser) = candidates::parser_for(caps)
        {
            elements.push(make(parser)?);
        }
        elements.push(decoder.clone());
        if let Some(output) = output {
            elements.push(make("videoconvert")?);
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
            decoder,
            factory: factory.name().to_string(),
            hardware,
            switchable: self.switchable(settings, hardware),
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
            "active-decoder",
            "hardware",
            "sessions",
            "switches",
            "frames-lost",
        ] {
            obj.notify(name);
        }
    }

    /// Posts the `vpuguarddec-decision` message for the chain now in place;
    /// `frames_lost` is what the switch that led to it could not recover.
    /// `switch` tells what a mid-stream switch did with the access units in
    /// flight; None for the stream's first decision.
    pub(super) fn post_decision(
        &self,
        settings: &Settings,
        reason: Reason,
        switch: Option<metrics::Switch>,
    ) {
        let frames_lost = switch.map_or(0, |s| s.lost);
        let (decoder, hardware, seen, switches) = {
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
            "chose {decoder} (hardware: {hardware}, reason: {}, sessions {} of {}, \
             switch {switches}, {frames_lost} frames lost)",
            reason.as_str(),
            seen.sessions,
            settings.budget.max_sessions,
        );
        self.stats.lock().record(metrics::Decision {
            factory: decoder.clone(),
            hardware,
            reason: reason.as_str(),
            sessions: seen.sessions,
            max_sessions: settings.budget.max_sessions,
            pixel_rate: 0,
            switch,
        });
        let structure = gst::Structure::builder("vpuguarddec-decision")
            .field("decoder", decoder)
            .field("hardware", hardware)
            .field("sessions", seen.sessions)
            .field("max-sessions", settings.budget.max_sessions)
            .field("session-file", seen.session_file)
            .field("reason", reason.as_str())
            .field("switches", switches)
            .field("frames-lost", frames_lost)
            .build();
        let _ = self.obj().post_message(
            gst::message::Element::builder(structure)
                .src(&*self.obj())
                .build(),
        );
    }

    /// Stops and removes the chain, then releases its VPU slot.
    pub(super) fn teardown(&self) {
        let state = self.state.lock().take();
        // Dropped outside the lock: it holds the decoder and access units.
        let watch = self.watches.lock().current.take();
        drop(watch);
        if let Some(state) = state {
            let _ = self.sinkpad().set_target(None::<&gst::Pad>);
            let _ = self.srcpad().set_target(None::<&gst::Pad>);
            self.remove_elements(&state.elements);
            // Only now, with the decoder in NULL, is its VPU session closed.
            drop(state.slot);
            gst::debug!(CAT, imp = self, "removed the {} chain", state.factory);
        }
        crate::guard::chain::remove_all(self.obj().upcast_ref());
    }
}
