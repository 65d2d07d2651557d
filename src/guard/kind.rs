// SPDX-License-Identifier: MPL-2.0
//! What differs between the guards, as the shared core sees it: the trait
//! each guard element implements, and the types the core and the element
//! pass each other.

use gst::prelude::*;
use std::sync::Arc;

use super::core::Core;
use super::frame::SwitchReport;
use super::watch::{ChainWatch, Coverage, Keep};
use crate::vpu::budget::{BudgetSettings, Held};
use crate::vpu::decision::{self, Budget, GuardKind, Inputs, Reason};
use crate::vpu::ledger::Slot;
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

/// What a child is there for, which decides the properties it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Hardware,
    Software,
    /// A software child taking over mid-stream from a failed hardware one.
    Failover,
}

/// A chain created and linked inside the bin, not yet linked to the ghost pads.
pub struct Chain {
    /// In stream order.
    pub elements: Vec<gst::Element>,
    /// The encoder or decoder: its ERRORs are the chain's.
    pub child: gst::Element,
    pub factory: String,
    pub role: Role,
    /// Whether the chain may be replaced mid-stream (failover or reclaim).
    pub switchable: bool,
}

impl Chain {
    pub fn last(&self) -> &gst::Element {
        self.elements.last().expect("a chain has a child")
    }

    /// A watch for the chain, when the guard must follow it: a hardware child
    /// until its first output at least, any chain that may be replaced
    /// mid-stream for the whole stream.
    pub fn watch<W: Coverage + std::fmt::Debug>(&self) -> Option<Arc<ChainWatch<W>>> {
        let hardware = self.role == Role::Hardware;
        let keep = if self.switchable {
            Keep::WholeStream
        } else {
            Keep::UntilFirstOutput
        };
        (hardware || self.switchable)
            .then(|| ChainWatch::new(self.child.clone(), hardware, keep, self.last()))
    }
}

/// Why a chain could not be built.
#[derive(Debug)]
pub enum ChainError {
    /// The settings are wrong: no other child would fix it.
    Config(String),
    /// The child failed to start: another one may work.
    Start(String),
}

impl ChainError {
    pub fn why(self) -> String {
        match self {
            ChainError::Config(why) | ChainError::Start(why) => why,
        }
    }

    /// The ERROR for a chain of `factory` (a `kind`) that could not be built.
    pub fn into_message(self, kind: GuardKind, factory: &gst::ElementFactory) -> gst::ErrorMessage {
        match self {
            ChainError::Config(msg) => gst::error_msg!(gst::LibraryError::Settings, ("{}", msg)),
            ChainError::Start(why) => gst::error_msg!(
                gst::LibraryError::Init,
                (
                    "{} {} failed to start",
                    capitalized(kind.noun()),
                    factory.name()
                ),
                ["{}", why]
            ),
        }
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Why no chain came out of a decision.
pub enum DecideError {
    /// Posted as an ERROR.
    Failed(gst::ErrorMessage),
    /// The element is going to READY: give up quietly.
    Stopping,
}

impl From<gst::ErrorMessage> for DecideError {
    fn from(err: gst::ErrorMessage) -> Self {
        DecideError::Failed(err)
    }
}

/// The children a decision chooses from, and what downstream takes.
pub struct Candidates {
    /// The hardware child, when installed and fit for the stream.
    pub hw: Option<gst::ElementFactory>,
    pub sw: Option<gst::ElementFactory>,
    pub downstream_takes_hw: bool,
    pub downstream_takes_sw: bool,
    pub downstream: gst::Caps,
}

/// What the decision saw of the VPU, for the decision message and the
/// read-only properties.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub sessions: u32,
    /// The encoders' load without this stream; 0 for a decoder, whose
    /// budget is sessions only.
    pub pixel_rate: u64,
    pub stream_pixel_rate: u64,
    /// The listing that was read; empty when none was.
    pub session_file: String,
}

impl Seen {
    pub fn of(inputs: &Inputs, session_file: String) -> Self {
        let load = inputs.load();
        Seen {
            sessions: load.sessions,
            pixel_rate: match inputs.kind {
                GuardKind::Encoder => load.pixel_rate,
                GuardKind::Decoder => 0,
            },
            stream_pixel_rate: inputs.stream_pixel_rate,
            session_file,
        }
    }
}

/// The chain in place, as the decision message tells it.
#[derive(Debug, Clone)]
pub struct Decided {
    pub factory: String,
    pub hardware: bool,
    pub seen: Seen,
    pub switches: u32,
    pub reason: Reason,
}

/// The chain that takes over mid-stream.
pub struct Replacement {
    pub factory: gst::ElementFactory,
    pub role: Role,
    /// Held by a hardware chain from its start until it is back in NULL.
    pub slot: Option<Slot>,
    /// The decision lock, held until a hardware chain has started.
    pub held: Option<Held>,
    pub seen: Seen,
    /// Why the old chain is replaced, when it failed.
    pub failure: Option<String>,
}

/// What the application is told of a switch: a WARNING for a failure, and
/// the decision.
#[derive(Debug)]
pub struct Announcement {
    pub reason: Reason,
    pub failure: Option<String>,
    pub report: SwitchReport,
    /// The child that took over.
    pub factory: String,
}

/// The mode a reclaim decides in: the guard may choose.
pub const RECLAIM_MODE: decision::Mode = decision::Mode::Auto;
