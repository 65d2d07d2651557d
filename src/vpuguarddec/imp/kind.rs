// SPDX-License-Identifier: MPL-2.0
//! vpuguarddec as a kind of guard: what the shared core asks of a decoder
//! bin.

use super::*;
use crate::guard::chain::{Chain, Role};
use crate::guard::choice::{Announcement, Candidates, Decided};
use crate::guard::frame::SwitchReport;
use crate::guard::kind::Kind;
use crate::guard::validate::installed_child;
use crate::vpu::decision;

impl Kind for VpuGuardDec {
    const GUARD: GuardKind = GuardKind::Decoder;
    const SESSION: SessionKind = SessionKind::Decoder;
    const PRIMES_FIRST_CHAIN: bool = true;
    type Settings = Settings;
    type Window = GopWindow<Frame>;

    fn cat() -> gst::DebugCategory {
        *CAT
    }

    fn core(&self) -> &Core<GopWindow<Frame>> {
        &self.core
    }

    fn element(&self) -> gst::Element {
        self.obj().clone().upcast()
    }

    fn settings(&self) -> Settings {
        self.settings.lock().clone()
    }

    fn budget(settings: &Settings) -> &BudgetSettings {
        &settings.budget
    }

    fn decision_budget(settings: &Settings) -> Budget {
        settings.budget()
    }

    fn mode(settings: &Settings) -> decision::Mode {
        settings.mode.into()
    }

    fn hw_name(settings: &Settings) -> &str {
        &settings.hw_decoder
    }

    fn sw_name(settings: &Settings) -> &str {
        &settings.sw_decoder
    }

    fn reclaim_interval(settings: &Settings) -> gst::ClockTime {
        settings.reclaim_interval
    }

    /// Decoders are budgeted by sessions only.
    fn stream_pixel_rate(_caps: &gst::CapsRef) -> u64 {
        0
    }

    /// A decoder that refuses the caps it was primed with mid-stream returns
    /// NOT_NEGOTIATED; downstream's own refusal is noted.
    fn own_flow_error(err: gst::FlowError) -> bool {
        matches!(err, gst::FlowError::Error | gst::FlowError::NotNegotiated)
    }

    fn structure_properties(settings: &Settings) -> Vec<(&'static str, &str)> {
        vec![
            ("hw-properties", &settings.hw_properties),
            ("sw-properties", &settings.sw_properties),
        ]
    }

    fn child_properties(settings: &Settings) -> Vec<(&'static str, &str)> {
        vec![
            ("hw-decoder", &settings.hw_decoder),
            ("sw-decoder", &settings.sw_decoder),
        ]
    }

    /// A named `sw-decoder`, and the `hw-decoder` that `mode=hardware`
    /// must run, are installed decoders.
    fn validate_children(&self, settings: &Settings) -> Result<(), gst::ErrorMessage> {
        if settings.sw_decoder != "auto" {
            installed_child("sw-decoder", &settings.sw_decoder, GuardKind::Decoder)?;
        }
        if settings.mode == Mode::Hardware {
            installed_child("hw-decoder", &settings.hw_decoder, GuardKind::Decoder)?;
        }
        Ok(())
    }

    /// The installed decoders for these caps and whether downstream takes
    /// what they output.
    fn candidates(
        &self,
        settings: &Settings,
        caps: &gst::CapsRef,
    ) -> Result<Candidates, gst::ErrorMessage> {
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
            return Err(gst::error_msg!(
                gst::CoreError::MissingPlugin,
                (
                    "No decoder of {} takes {}: hw-decoder={}, sw-decoder={}",
                    self.obj().name(),
                    caps,
                    settings.hw_decoder,
                    settings.sw_decoder
                )
            ));
        }
        Ok(candidates)
    }

    /// The software decoder of the stream's codec, when there is one.
    fn start_failure_fallback(
        &self,
        settings: &Settings,
        candidates: &Candidates,
        caps: &gst::CapsRef,
        why: &str,
    ) -> Result<gst::ElementFactory, gst::ErrorMessage> {
        candidates.sw.clone().ok_or_else(|| {
            gst::error_msg!(
                gst::LibraryError::Init,
                (
                    "hw-decoder: {} failed to start and no sw-decoder takes {}",
                    settings.hw_decoder,
                    caps
                ),
                ["{}", why]
            )
        })
    }

    fn no_choice_text(&self, why: &str) -> String {
        format!("{}: {}", self.obj().name(), why)
    }

    fn hardware_start_error(
        &self,
        _settings: &Settings,
        hw: &gst::ElementFactory,
        why: &str,
    ) -> gst::ErrorMessage {
        ChainError::Start(why.to_string()).into_message(GuardKind::Decoder, hw)
    }

    /// A replacement outputs what downstream negotiated with the chain it
    /// replaces: no renegotiation at a switch.
    fn create_chain(
        &self,
        settings: &Settings,
        factory: &gst::ElementFactory,
        caps: &gst::CapsRef,
        role: Role,
        replacing: bool,
    ) -> Result<Chain, ChainError> {
        let output = replacing.then(|| self.srcpad().current_caps()).flatten();
        self.create_decoder_chain(settings, factory, caps, role, output.as_ref())
    }

    fn switchable(&self, settings: &Settings, role: Role, _: &gst::ElementFactory) -> bool {
        self.may_switch(settings, role == Role::Hardware)
    }

    /// The software decoder of the stream's codec, fed from the last keyframe.
    fn takeover(
        &self,
        settings: &Settings,
        _stream_started: bool,
        caps: Option<&gst::CapsRef>,
    ) -> Option<(gst::ElementFactory, Role)> {
        let factory = candidates::software_decoder(&settings.sw_decoder, caps?)?;
        Some((factory, Role::Failover))
    }

    fn reclaim_factory(
        &self,
        settings: &Settings,
        caps: &gst::CapsRef,
    ) -> Option<gst::ElementFactory> {
        crate::guard::children::find(&settings.hw_decoder).filter(|f| candidates::takes(f, caps))
    }

    /// Nothing: the replay starts on a keyframe, or the input is dropped
    /// until one comes.
    fn before_replay(&self, _internal: &gst::ProxyPad) {}

    fn decision_structure(
        &self,
        settings: &Settings,
        decided: &Decided,
        switch: Option<&SwitchReport>,
    ) -> gst::Structure {
        VpuGuardDec::decision_structure(self, settings, decided, switch)
    }

    fn chain_properties() -> &'static [&'static str] {
        &[
            "active-decoder",
            "hardware",
            "sessions",
            "switches",
            "frames-lost",
        ]
    }

    fn warn_failure(&self, settings: &Settings, failure: &str, a: &Announcement) {
        gst::element_imp_warning!(
            self,
            gst::StreamError::Decode,
            (
                "Hardware decoder {} failed, decoding with {}",
                settings.hw_decoder,
                a.factory
            ),
            [
                "{}; {} access units since the last keyframe sent to {}, {} frames lost",
                failure,
                a.report.replayed,
                a.factory,
                a.report.lost
            ]
        );
    }

    fn takeover_error(
        &self,
        settings: &Settings,
        failure: &str,
        attempt: Option<(&str, &str)>,
    ) -> gst::ErrorMessage {
        let why = attempt.map_or("no software decoder takes the stream", |(_, why)| why);
        gst::error_msg!(
            gst::StreamError::Decode,
            (
                "Hardware decoder {} failed and no decoder can take over (sw-decoder={})",
                settings.hw_decoder,
                settings.sw_decoder
            ),
            ["{}; {}", failure, why]
        )
    }
}
