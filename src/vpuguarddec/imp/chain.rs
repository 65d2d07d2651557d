// SPDX-License-Identifier: MPL-2.0
//! The decoder chain inside the bin, `[parser !] decoder [! videoconvert !
//! capsfilter]`: creating it, starting it, linking it to the ghost pads,
//! removing it, and telling the application what was chosen.

use super::*;
use crate::guard::chain::{Chain, Role};
use crate::guard::choice::Decided;

impl VpuGuardDec {
    /// Whether a chain may be replaced mid-stream: a hardware one by the
    /// software decoder (failover), a software one by the hardware decoder
    /// again (`reclaim-interval`).
    pub(super) fn may_switch(&self, settings: &Settings, hardware: bool) -> bool {
        hardware || (settings.mode == Mode::Auto && !settings.reclaim_interval.is_zero())
    }

    /// Creates `[parser !] decoder [! videoconvert ! capsfilter]` in the bin,
    /// linked, in NULL. `output` pins what the chain outputs (a replacement
    /// outputs what downstream negotiated with the chain it replaces).
    pub(super) fn create_decoder_chain(
        &self,
        settings: &Settings,
        factory: &gst::ElementFactory,
        caps: &gst::CapsRef,
        role: Role,
        output: Option<&gst::Caps>,
    ) -> Result<Chain, ChainError> {
        let hardware = role == Role::Hardware;
        let make = crate::guard::chain::make;
        let decoder = crate::guard::chain::create(factory)?;
        let (origin, text) = if hardware {
            ("hw-properties", &settings.hw_properties)
        } else {
            ("sw-properties", &settings.sw_properties)
        };
        if !hardware {
            self.apply_live_defaults(&decoder)
                .map_err(ChainError::Config)?;
        }
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
        crate::guard::chain::add_linked(self.obj().upcast_ref(), &elements, factory)?;
        Ok(Chain {
            elements,
            child: decoder,
            factory: factory.name().to_string(),
            role,
            switchable: self.may_switch(settings, hardware),
        })
    }

    /// On a live stream, what the software decoder would choose by itself if
    /// it could see the stream is live when it gets its caps (a replacement
    /// gets them before it is linked); `sw-properties` come after.
    fn apply_live_defaults(&self, decoder: &gst::Element) -> Result<(), String> {
        let factory = decoder.factory().map(|f| f.name()).unwrap_or_default();
        let Some(text) = crate::guard::live::decoder_defaults(&factory) else {
            return Ok(());
        };
        if !self.core.stream_is_live() {
            return Ok(());
        }
        let Some(defaults) = child_props::parse_structure("sw-properties", text)? else {
            return Ok(());
        };
        let defaults = crate::guard::live::known_to(decoder, &defaults);
        child_props::apply_structure(decoder, "sw-properties", &defaults)
    }

    /// The `vpuguarddec-decision` message's structure; `frames-lost` is what
    /// the switch that led to the chain could not recover.
    pub(super) fn decision_structure(
        &self,
        settings: &Settings,
        decided: &Decided,
        switch: Option<&SwitchReport>,
    ) -> gst::Structure {
        gst::Structure::builder("vpuguarddec-decision")
            .field("decoder", &decided.factory)
            .field("hardware", decided.hardware)
            .field("sessions", decided.seen.sessions)
            .field("max-sessions", settings.budget.max_sessions)
            .field("session-file", &decided.seen.session_file)
            .field("budget-source", decided.seen.source)
            .field("load", decided.seen.load)
            .field("reason", decided.reason.as_str())
            .field("switches", decided.switches)
            .field("frames-lost", switch.map_or(0, |s| s.lost))
            .build()
    }
}

use crate::guard::frame::SwitchReport;
