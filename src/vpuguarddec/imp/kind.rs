// SPDX-License-Identifier: MPL-2.0
//! vpuguarddec as a kind of guard: what the shared core asks of a decoder
//! bin.

use super::*;
use crate::guard::frame::SwitchReport;
use crate::guard::kind::{Announcement, Chain, Decided, Kind, Role};

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

    fn hw_name(settings: &Settings) -> &str {
        &settings.hw_decoder
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
