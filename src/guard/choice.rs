// SPDX-License-Identifier: MPL-2.0
//! What a decision saw and chose, as the guard core and the elements pass
//! it: the candidates, what was seen of the VPU, the chain decided, a
//! replacement and the announcement of a switch.

use super::chain::Role;
use super::frame::SwitchReport;
use crate::vpu::budget::Held;
use crate::vpu::budget_source::BudgetSource;
use crate::vpu::decision::{self, GuardKind, Inputs, Reason, VpuView};
use crate::vpu::ledger::Slot;

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
    /// The budget source counted (`auto` resolved); "" when none was.
    pub source: &'static str,
    /// The engine's load in percent; -1 when not measured.
    pub load: i32,
}

impl Seen {
    pub fn of(inputs: &Inputs, session_file: String, source: BudgetSource) -> Self {
        let load = inputs.load();
        Seen {
            source: match inputs.vpu {
                VpuView::Counted { .. } | VpuView::Starting => source.as_str(),
                _ => "",
            },
            load: load.percent.map_or(-1, |p| p.min(100) as i32),
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
