// SPDX-License-Identifier: MPL-2.0
//! What differs between the guards, as the shared core sees it: the trait
//! each guard element implements.

use super::chain::{Chain, ChainError, Role};
use super::choice::{Announcement, Candidates, Decided};
use super::frame::SwitchReport;
use super::state::Core;
use super::watch::Coverage;
use crate::vpu::budget::BudgetSettings;
use crate::vpu::decision::{self, Budget, GuardKind};
use crate::vpu::listing::SessionKind;

/// A guard element (vpuguardenc, vpuguarddec) as the core drives it: its
/// settings, its window, how it builds a chain, and what it tells.
pub trait Kind: Sized + Send + Sync + 'static {
    const GUARD: GuardKind;
    const SESSION: SessionKind;
    /// Whether the stream's first chain gets the stream's sticky events
    /// before the CAPS event goes on: a decoder that refuses the caps
    /// (mppvideodec opens its context on caps) is found out while the
    /// software decoder can still take over; an encoder opens in `start`.
    const PRIMES_FIRST_CHAIN: bool;
    type Settings: Clone;
    /// What the watch keeps of the chain's input for a replacement.
    type Window: Coverage + std::fmt::Debug;

    fn cat() -> gst::DebugCategory;
    fn core(&self) -> &Core<Self::Window>;
    fn element(&self) -> gst::Element;
    fn settings(&self) -> Self::Settings;
    fn budget(settings: &Self::Settings) -> &BudgetSettings;
    /// The budget a decision of this kind is held to.
    fn decision_budget(settings: &Self::Settings) -> Budget;
    /// How the guard may choose.
    fn mode(settings: &Self::Settings) -> decision::Mode;
    fn hw_name(settings: &Self::Settings) -> &str;
    fn sw_name(settings: &Self::Settings) -> &str;
    fn reclaim_interval(settings: &Self::Settings) -> gst::ClockTime;
    /// The stream's load on this kind of child.
    fn stream_pixel_rate(caps: &gst::CapsRef) -> u64;
    /// Whether a flow error the chain returned (downstream not having
    /// returned it) is the child's own failure.
    fn own_flow_error(err: gst::FlowError) -> bool;

    /// The properties holding a child's properties as a GstStructure string.
    fn structure_properties(settings: &Self::Settings) -> Vec<(&'static str, &str)>;
    /// The properties naming a child.
    fn child_properties(settings: &Self::Settings) -> Vec<(&'static str, &str)>;
    /// The checks of this kind's children, after the shared checks of
    /// `validate::validate_settings`.
    fn validate_children(&self, settings: &Self::Settings) -> Result<(), gst::ErrorMessage>;

    /// The installed children the decision for `caps` chooses from, and
    /// what downstream takes of them; an error when none can serve.
    fn candidates(
        &self,
        settings: &Self::Settings,
        caps: &gst::CapsRef,
    ) -> Result<Candidates, gst::ErrorMessage>;
    /// The software child that takes the stream when the hardware one the
    /// decision chose failed to start (`why`); the ERROR when there is none.
    fn start_failure_fallback(
        &self,
        settings: &Self::Settings,
        candidates: &Candidates,
        caps: &gst::CapsRef,
        why: &str,
    ) -> Result<gst::ElementFactory, gst::ErrorMessage>;
    /// The ERROR's text when the decision chose no child (`why`).
    fn no_choice_text(&self, why: &str) -> String;
    /// The ERROR when the hardware child `hw` failed to start (`why`) in
    /// `mode=hardware`.
    fn hardware_start_error(
        &self,
        settings: &Self::Settings,
        hw: &gst::ElementFactory,
        why: &str,
    ) -> gst::ErrorMessage;

    /// Creates the chain for `factory` in the bin, linked, in NULL. A
    /// `replacing` chain takes over a stream downstream has seen.
    fn create_chain(
        &self,
        settings: &Self::Settings,
        factory: &gst::ElementFactory,
        caps: &gst::CapsRef,
        role: Role,
        replacing: bool,
    ) -> Result<Chain, ChainError>;
    /// Whether a chain of `role` made by `factory` may be replaced mid-stream.
    fn switchable(
        &self,
        settings: &Self::Settings,
        role: Role,
        factory: &gst::ElementFactory,
    ) -> bool;
    /// What takes over from a failed hardware child: once the stream
    /// started, a child downstream already takes.
    fn takeover(
        &self,
        settings: &Self::Settings,
        stream_started: bool,
        caps: Option<&gst::CapsRef>,
    ) -> Option<(gst::ElementFactory, Role)>;
    /// The hardware child to reclaim for the stream with `caps`.
    fn reclaim_factory(
        &self,
        settings: &Self::Settings,
        caps: &gst::CapsRef,
    ) -> Option<gst::ElementFactory>;
    /// Sent before the replayed frames (an encoder's key-unit request).
    fn before_replay(&self, internal: &gst::ProxyPad);

    /// The decision message's structure.
    fn decision_structure(
        &self,
        settings: &Self::Settings,
        decided: &Decided,
        switch: Option<&SwitchReport>,
    ) -> gst::Structure;
    /// The read-only properties a decision changes.
    fn chain_properties() -> &'static [&'static str];
    /// The WARNING for a switch away from a failed hardware child.
    fn warn_failure(&self, settings: &Self::Settings, failure: &str, a: &Announcement);
    /// The ERROR when no chain could take over from a failed hardware child:
    /// `attempt` names the one that could not start, and why.
    fn takeover_error(
        &self,
        settings: &Self::Settings,
        failure: &str,
        attempt: Option<(&str, &str)>,
    ) -> gst::ErrorMessage;
}
