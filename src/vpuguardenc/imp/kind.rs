// SPDX-License-Identifier: MPL-2.0
//! vpuguardenc as a kind of guard: what the shared core asks of an encoder
//! bin.

use super::chain::hw_codec;
use super::*;
use crate::guard::frame::SwitchReport;
use crate::guard::kind::{Announcement, Chain, Decided, Kind, Role};
use crate::vpu::decision::Budget;

impl Kind for VpuGuardEnc {
    const GUARD: GuardKind = GuardKind::Encoder;
    const SESSION: SessionKind = SessionKind::Encoder;
    const PRIMES_FIRST_CHAIN: bool = false;
    type Settings = Settings;
    type Window = Window<Frame>;

    fn cat() -> gst::DebugCategory {
        *CAT
    }

    fn core(&self) -> &Core<Window<Frame>> {
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
        settings.budget.budget()
    }

    fn hw_name(settings: &Settings) -> &str {
        &settings.hw_encoder
    }

    fn stream_pixel_rate(caps: &gst::CapsRef) -> u64 {
        stream_pixel_rate(caps)
    }

    fn own_flow_error(err: gst::FlowError) -> bool {
        err == gst::FlowError::Error
    }

    fn create_chain(
        &self,
        settings: &Settings,
        factory: &gst::ElementFactory,
        caps: &gst::CapsRef,
        role: Role,
        replacing: bool,
    ) -> Result<Chain, ChainError> {
        self.create_encoder_chain(settings, factory, caps, role, replacing)
    }

    fn switchable(&self, settings: &Settings, role: Role, factory: &gst::ElementFactory) -> bool {
        Codec::of_factory(factory).is_some_and(|codec| self.switchable_codec(settings, role, codec))
    }

    /// Before the stream started, the software encoder (it could not start;
    /// downstream has seen nothing yet); after it, the failover encoder of
    /// the same codec, never sw-encoder.
    fn takeover(
        &self,
        settings: &Settings,
        stream_started: bool,
        _caps: Option<&gst::CapsRef>,
    ) -> Option<(gst::ElementFactory, Role)> {
        match stream_started {
            true => failover_factory(settings)
                .ok()
                .flatten()
                .map(|f| (f, Role::Failover)),
            false => {
                crate::guard::children::find(&settings.sw_encoder).map(|f| (f, Role::Software))
            }
        }
    }

    fn reclaim_factory(
        &self,
        settings: &Settings,
        _caps: &gst::CapsRef,
    ) -> Option<gst::ElementFactory> {
        hw_codec(settings).and(crate::guard::children::find(&settings.hw_encoder))
    }

    /// The replacement starts on a keyframe with its parameter sets; the
    /// event also delivers the sticky stream-start, caps and segment first.
    fn before_replay(&self, internal: &gst::ProxyPad) {
        let key_unit = gst_video::DownstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        internal.push_event(key_unit);
    }

    fn decision_structure(
        &self,
        settings: &Settings,
        decided: &Decided,
        switch: Option<&SwitchReport>,
    ) -> gst::Structure {
        VpuGuardEnc::decision_structure(self, settings, decided, switch)
    }

    fn chain_properties() -> &'static [&'static str] {
        &[
            "active-encoder",
            "hardware",
            "sessions",
            "pixel-rate",
            "switches",
        ]
    }

    fn warn_failure(&self, settings: &Settings, failure: &str, a: &Announcement) {
        let (what, detail) = match a.reason {
            Reason::HwStartFailed => ("failed to start", "before its first output"),
            _ => ("failed mid-stream", "after output had flowed"),
        };
        gst::element_imp_warning!(
            self,
            gst::StreamError::Encode,
            (
                "Hardware encoder {} {}, encoding with {}",
                settings.hw_encoder,
                what,
                a.factory
            ),
            [
                "{} ({}); {} frames in flight sent to {}, {} lost past the window",
                failure,
                detail,
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
        match attempt {
            None => gst::error_msg!(
                gst::StreamError::Encode,
                (
                    "Hardware encoder {} failed and no encoder can take over \
                     (failover-encoder={}, sw-encoder={})",
                    settings.hw_encoder,
                    settings.failover_encoder,
                    settings.sw_encoder
                ),
                ["{}", failure]
            ),
            Some((factory, why)) => gst::error_msg!(
                gst::StreamError::Encode,
                (
                    "Hardware encoder {} failed and {} could not take over",
                    settings.hw_encoder,
                    factory
                ),
                ["{}; then: {}", failure, why]
            ),
        }
    }
}
