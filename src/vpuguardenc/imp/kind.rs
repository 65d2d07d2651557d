// SPDX-License-Identifier: MPL-2.0
//! vpuguardenc as a kind of guard: what the shared core asks of an encoder
//! bin.

use super::chain::hw_codec;
use super::*;
use crate::guard::chain::{Chain, Role};
use crate::guard::choice::{Announcement, Decided};
use crate::guard::frame::SwitchReport;
use crate::guard::kind::Kind;
use crate::guard::validate::{installed_child, settings_error};
use crate::vpu::decision::{self, Budget};

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

    fn mode(settings: &Settings) -> decision::Mode {
        settings.mode.into()
    }

    fn hw_name(settings: &Settings) -> &str {
        &settings.hw_encoder
    }

    fn sw_name(settings: &Settings) -> &str {
        &settings.sw_encoder
    }

    fn reclaim_interval(settings: &Settings) -> gst::ClockTime {
        settings.reclaim_interval
    }

    fn stream_pixel_rate(caps: &gst::CapsRef) -> u64 {
        stream_pixel_rate(caps)
    }

    fn own_flow_error(err: gst::FlowError) -> bool {
        err == gst::FlowError::Error
    }

    fn structure_properties(settings: &Settings) -> Vec<(&'static str, &str)> {
        vec![
            ("hw-properties", &settings.hw_properties),
            ("sw-properties", &settings.sw_properties),
            ("failover-properties", &settings.failover_properties),
        ]
    }

    fn child_properties(settings: &Settings) -> Vec<(&'static str, &str)> {
        vec![
            ("hw-encoder", &settings.hw_encoder),
            ("sw-encoder", &settings.sw_encoder),
            ("failover-encoder", &settings.failover_encoder),
        ]
    }

    /// The failover encoder, and the encoders the mode may run: each must
    /// make H.264 or H.265.
    fn validate_children(&self, settings: &Settings) -> Result<(), gst::ErrorMessage> {
        if settings.mode != Mode::Software {
            failover_factory(settings).map_err(settings_error)?;
        }
        let check_codec = |property: &str, name: &str| {
            let factory = installed_child(property, name, GuardKind::Encoder)?;
            match Codec::of_factory(&factory) {
                Some(_) => Ok(()),
                None => Err(settings_error(format!(
                    "{property}: '{name}' outputs neither H.264 nor H.265, so {} cannot \
                     encode with it",
                    self.obj().name()
                ))),
            }
        };
        match settings.mode {
            Mode::Hardware => check_codec("hw-encoder", &settings.hw_encoder),
            _ => check_codec("sw-encoder", &settings.sw_encoder),
        }
    }

    /// The installed encoders and which of their codecs downstream takes.
    fn candidates(
        &self,
        settings: &Settings,
        _caps: &gst::CapsRef,
    ) -> Result<Candidates, gst::ErrorMessage> {
        let usable = |name: &str| {
            children::find(name).and_then(|f| Codec::of_factory(&f).map(|codec| (f, codec)))
        };
        if settings.mode == Mode::Auto {
            let obj = self.obj();
            crate::guard::missing::warn_if_missing(
                obj.upcast_ref(),
                "hw-encoder",
                &settings.hw_encoder,
            );
        }
        let hw = usable(&settings.hw_encoder);
        let sw = usable(&settings.sw_encoder);
        let downstream = self.srcpad().peer_query_caps(None);
        let takes = |c: &Option<(gst::ElementFactory, Codec)>| {
            c.as_ref()
                .is_some_and(|(_, codec)| codec.accepted_by(&downstream))
        };
        let candidates = Candidates {
            downstream_takes_hw: takes(&hw),
            downstream_takes_sw: takes(&sw),
            hw: hw.map(|(f, _)| f),
            sw: sw.map(|(f, _)| f),
            downstream,
        };
        if !candidates.downstream_takes_hw && !candidates.downstream_takes_sw {
            return Err(gst::error_msg!(
                gst::CoreError::Negotiation,
                (
                    "Downstream of {} accepts neither H.265 nor H.264",
                    self.obj().name()
                ),
                ["downstream wants {}", candidates.downstream]
            ));
        }
        Ok(candidates)
    }

    /// `sw-encoder`, found again: a hardware encoder's start failure is
    /// only known once the decision chose it.
    fn start_failure_fallback(
        &self,
        settings: &Settings,
        _candidates: &Candidates,
        _caps: &gst::CapsRef,
        _why: &str,
    ) -> Result<gst::ElementFactory, gst::ErrorMessage> {
        children::find(&settings.sw_encoder).ok_or_else(|| {
            gst::error_msg!(
                gst::CoreError::MissingPlugin,
                (
                    "sw-encoder: no element '{}' is installed",
                    settings.sw_encoder
                )
            )
        })
    }

    fn no_choice_text(&self, why: &str) -> String {
        why.to_string()
    }

    fn hardware_start_error(
        &self,
        settings: &Settings,
        _hw: &gst::ElementFactory,
        why: &str,
    ) -> gst::ErrorMessage {
        gst::error_msg!(
            gst::LibraryError::Init,
            ("Hardware encoder {} failed to start", settings.hw_encoder),
            ["{}", why]
        )
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
