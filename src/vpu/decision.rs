// SPDX-License-Identifier: MPL-2.0
//! The hardware or software choice of a guard, as a pure function of what it
//! saw at negotiation: the same rule for encoders and decoders.

use super::load::Load;

/// How a guard may choose (each element's `mode` property converts to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Hardware,
    Software,
}

/// What a guard chooses between: names in its messages and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardKind {
    Encoder,
    Decoder,
}

impl GuardKind {
    pub fn noun(self) -> &'static str {
        match self {
            GuardKind::Encoder => "encoder",
            GuardKind::Decoder => "decoder",
        }
    }

    /// The guard element of this kind: the prefix of its message names.
    pub fn element(self) -> &'static str {
        match self {
            GuardKind::Encoder => "vpuguardenc",
            GuardKind::Decoder => "vpuguarddec",
        }
    }

    /// What a child of this kind is doing: "encoding with ...".
    pub fn gerund(self) -> &'static str {
        match self {
            GuardKind::Encoder => "encoding",
            GuardKind::Decoder => "decoding",
        }
    }

    /// The property naming the hardware child.
    pub fn hw_property(self) -> &'static str {
        match self {
            GuardKind::Encoder => "hw-encoder",
            GuardKind::Decoder => "hw-decoder",
        }
    }

    /// What downstream must accept of a child: an encoder's codec, a
    /// decoder's raw output.
    fn output(self) -> &'static str {
        match self {
            GuardKind::Encoder => "codec",
            GuardKind::Decoder => "output",
        }
    }
}

/// Why the guard chose the child it chose; the `reason` field of the
/// `vpuguardenc-decision` and `vpuguarddec-decision` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A VPU slot was free.
    Budget,
    /// Every slot of `max-sessions` was taken.
    OverBudget,
    /// The new stream would take the encoder load past `max-pixel-rate`.
    OverPixelBudget,
    /// The source measured the engine at or past `max-load` percent busy.
    OverLoad,
    /// Another guard held the decision lock for all of `lock-timeout`.
    LockTimeout,
    /// Downstream cannot take the hardware encoder's codec.
    DownstreamCaps,
    /// The hardware encoder factory is not installed.
    NoHwEncoder,
    /// The hardware decoder factory is not installed.
    NoHwDecoder,
    /// The hardware child failed to start, software took over.
    HwStartFailed,
    /// The hardware child failed after its first output; a software encoder
    /// of the same codec took over.
    HwFailedMidStream,
    /// `reclaim-interval` found room on the VPU again: back to hardware.
    Reclaimed,
    /// No session listing could be read: only guards' own slots were counted.
    SessionFileUnreadable,
    /// `mode` forced the choice.
    Forced,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Budget => "budget",
            Reason::OverBudget => "over-budget",
            Reason::OverPixelBudget => "over-pixel-budget",
            Reason::OverLoad => "over-load",
            Reason::LockTimeout => "lock-timeout",
            Reason::DownstreamCaps => "downstream-caps",
            Reason::NoHwEncoder => "no-hw-encoder",
            Reason::NoHwDecoder => "no-hw-decoder",
            Reason::HwStartFailed => "hw-start-failed",
            Reason::HwFailedMidStream => "hw-failed-mid-stream",
            Reason::Reclaimed => "reclaimed",
            Reason::SessionFileUnreadable => "session-file-unreadable",
            Reason::Forced => "forced",
        }
    }
}

/// What the guard learnt of the VPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpuView {
    /// Not consulted: software is forced or the only possible choice.
    NotConsulted,
    /// The decision lock stayed held by another guard past `lock-timeout`,
    /// or what is at its name cannot be used as the lock (planted).
    LockTimedOut,
    /// The load counted under the decision lock; `listed` is false when no
    /// listing was readable and only guards' slots were counted.
    Counted { load: Load, listed: bool },
    /// The source has given no reading yet (NVML still initialising): the
    /// hardware's sessions are unknown, so software.
    Starting,
}

/// The VPU's capacity, from the properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max_sessions: u32,
    /// Pixels per second of encoder load; 0 = no pixel budget.
    pub max_pixel_rate: u64,
    /// Percent of the engine that may be busy; 100 = no load limit.
    pub max_load: u32,
}

/// What the guard knows when it decides.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub kind: GuardKind,
    pub mode: Mode,
    pub hw_available: bool,
    pub downstream_takes_hw: bool,
    pub downstream_takes_sw: bool,
    pub vpu: VpuView,
    pub budget: Budget,
    /// The new stream's width x height x fps.
    pub stream_pixel_rate: u64,
}

impl Inputs {
    /// The load seen, zero when the VPU was not counted.
    pub fn load(&self) -> Load {
        match self.vpu {
            VpuView::Counted { load, .. } => load,
            _ => Load::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Hardware(Reason),
    Software(Reason),
    /// No encoder can serve this stream; the string says why.
    Fail(String),
}

/// Whether the VPU needs to be consulted at all (the session file is read and
/// the machine-wide lock taken only then).
pub fn needs_session_count(mode: Mode, hw_available: bool, downstream_takes_hw: bool) -> bool {
    mode != Mode::Software && hw_available && downstream_takes_hw
}

/// Why the VPU cannot take the new stream, if it cannot: the session budget
/// first, then the pixel budget, then the measured load.
fn vpu_refusal(inputs: &Inputs) -> Option<(Reason, String)> {
    let budget = inputs.budget;
    let load = match inputs.vpu {
        VpuView::NotConsulted => return None,
        VpuView::LockTimedOut => {
            return Some((
                Reason::LockTimeout,
                "the decision lock was not taken: another guard held it for all of \
                 lock-timeout, or it cannot be used"
                    .into(),
            ));
        }
        VpuView::Starting => {
            return Some((
                Reason::SessionFileUnreadable,
                "budget-source has given no reading yet".into(),
            ));
        }
        VpuView::Counted { load, .. } => load,
    };
    if load.sessions >= budget.max_sessions {
        return Some((
            Reason::OverBudget,
            format!(
                "no VPU slot is free: {} of max-sessions={} in use",
                load.sessions, budget.max_sessions
            ),
        ));
    }
    let wanted = load.pixel_rate.saturating_add(inputs.stream_pixel_rate);
    if budget.max_pixel_rate > 0 && wanted > budget.max_pixel_rate {
        return Some((
            Reason::OverPixelBudget,
            format!(
                "the VPU encodes {} px/s, this stream adds {} px/s, max-pixel-rate={}",
                load.pixel_rate, inputs.stream_pixel_rate, budget.max_pixel_rate
            ),
        ));
    }
    if let Some(percent) = load
        .percent
        .filter(|p| budget.max_load < 100 && *p >= budget.max_load)
    {
        return Some((
            Reason::OverLoad,
            format!(
                "the engine is {percent}% busy, max-load={}",
                budget.max_load
            ),
        ));
    }
    None
}

pub fn decide(inputs: &Inputs) -> Outcome {
    let kind = inputs.kind;
    let (noun, output) = (kind.noun(), kind.output());
    let software = |reason: Reason, why_hw_not: &str| {
        if inputs.downstream_takes_sw {
            Outcome::Software(reason)
        } else {
            Outcome::Fail(format!(
                "{why_hw_not}, and downstream does not accept the software {noun}'s {output}"
            ))
        }
    };
    let refusal = vpu_refusal(inputs);
    let listed = !matches!(inputs.vpu, VpuView::Counted { listed: false, .. });
    let not_installed = format!("the hardware {noun} is not installed");
    let not_accepted = format!("downstream does not accept the hardware {noun}'s {output}");
    let no_hw = match kind {
        GuardKind::Encoder => Reason::NoHwEncoder,
        GuardKind::Decoder => Reason::NoHwDecoder,
    };

    match inputs.mode {
        Mode::Software => software(Reason::Forced, "mode=software"),
        Mode::Hardware => {
            if !inputs.hw_available {
                Outcome::Fail(format!("mode=hardware but {not_installed}"))
            } else if !inputs.downstream_takes_hw {
                Outcome::Fail(format!("mode=hardware but {not_accepted}"))
            } else if let Some((_, why)) = refusal {
                Outcome::Fail(format!("mode=hardware but {why}"))
            } else {
                Outcome::Hardware(Reason::Forced)
            }
        }
        Mode::Auto => {
            if !inputs.hw_available {
                software(no_hw, &not_installed)
            } else if !inputs.downstream_takes_hw {
                software(Reason::DownstreamCaps, &not_accepted)
            } else if let Some((reason, why)) = refusal {
                software(reason, &why)
            } else if !listed {
                Outcome::Hardware(Reason::SessionFileUnreadable)
            } else {
                Outcome::Hardware(Reason::Budget)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(mode: Mode, sessions: u32) -> Inputs {
        Inputs {
            kind: GuardKind::Encoder,
            mode,
            hw_available: true,
            downstream_takes_hw: true,
            downstream_takes_sw: true,
            vpu: VpuView::Counted {
                load: Load {
                    sessions,
                    pixel_rate: 0,
                    percent: None,
                },
                listed: true,
            },
            budget: Budget {
                max_sessions: 6,
                max_pixel_rate: 0,
                max_load: 100,
            },
            stream_pixel_rate: P1080,
        }
    }

    const P1080: u64 = 1920 * 1080 * 30;
    const P4K60: u64 = 3840 * 2160 * 60;
    const P4K120: u64 = 3840 * 2160 * 120;

    fn with_pixel_load(mut i: Inputs, pixel_rate: u64, max_pixel_rate: u64) -> Inputs {
        if let VpuView::Counted { load, .. } = &mut i.vpu {
            load.pixel_rate = pixel_rate;
        }
        i.budget.max_pixel_rate = max_pixel_rate;
        i
    }

    #[test]
    fn auto_under_budget_is_hardware() {
        assert_eq!(
            decide(&inputs(Mode::Auto, 5)),
            Outcome::Hardware(Reason::Budget)
        );
    }

    #[test]
    fn auto_at_budget_is_software() {
        assert_eq!(
            decide(&inputs(Mode::Auto, 6)),
            Outcome::Software(Reason::OverBudget)
        );
        assert_eq!(
            decide(&inputs(Mode::Auto, 60)),
            Outcome::Software(Reason::OverBudget)
        );
    }

    #[test]
    fn max_sessions_zero_never_picks_hardware() {
        let mut i = inputs(Mode::Auto, 0);
        i.budget.max_sessions = 0;
        assert_eq!(decide(&i), Outcome::Software(Reason::OverBudget));
    }

    #[test]
    fn ledger_count_says_so() {
        let mut i = inputs(Mode::Auto, 1);
        i.vpu = VpuView::Counted {
            load: i.load(),
            listed: false,
        };
        assert_eq!(decide(&i), Outcome::Hardware(Reason::SessionFileUnreadable));
    }

    #[test]
    fn a_source_with_no_reading_yet_is_software() {
        let mut i = inputs(Mode::Auto, 0);
        i.vpu = VpuView::Starting;
        assert_eq!(decide(&i), Outcome::Software(Reason::SessionFileUnreadable));
        // mode=hardware is refused rather than taken blind.
        i.mode = Mode::Hardware;
        assert!(matches!(decide(&i), Outcome::Fail(_)));
    }

    #[test]
    fn downstream_steers_to_software() {
        let mut i = inputs(Mode::Auto, 0);
        i.downstream_takes_hw = false;
        assert_eq!(decide(&i), Outcome::Software(Reason::DownstreamCaps));
        assert!(!needs_session_count(Mode::Auto, true, false));
    }

    #[test]
    fn downstream_taking_neither_fails() {
        let mut i = inputs(Mode::Auto, 0);
        i.downstream_takes_hw = false;
        i.downstream_takes_sw = false;
        assert!(matches!(decide(&i), Outcome::Fail(_)));
    }

    #[test]
    fn missing_hw_factory_is_software_in_auto_and_an_error_in_hardware() {
        let mut i = inputs(Mode::Auto, 0);
        i.hw_available = false;
        assert_eq!(decide(&i), Outcome::Software(Reason::NoHwEncoder));
        i.mode = Mode::Hardware;
        assert!(matches!(decide(&i), Outcome::Fail(m) if m.contains("not installed")));
    }

    #[test]
    fn hardware_mode_fails_when_full() {
        assert_eq!(
            decide(&inputs(Mode::Hardware, 2)),
            Outcome::Hardware(Reason::Forced)
        );
        assert!(
            matches!(decide(&inputs(Mode::Hardware, 6)), Outcome::Fail(m) if m.contains("6 of max-sessions=6"))
        );
    }

    #[test]
    fn software_mode_never_consults_the_vpu() {
        assert!(!needs_session_count(Mode::Software, true, true));
        let mut i = inputs(Mode::Software, 0);
        i.vpu = VpuView::NotConsulted;
        assert_eq!(decide(&i), Outcome::Software(Reason::Forced));
    }

    #[test]
    fn over_budget_with_hw_only_downstream_fails() {
        let mut i = inputs(Mode::Auto, 6);
        i.downstream_takes_sw = false;
        assert!(matches!(decide(&i), Outcome::Fail(m) if m.contains("no VPU slot")));
    }

    #[test]
    fn two_4k60_encoders_fill_a_4k120_pixel_budget() {
        let i = with_pixel_load(inputs(Mode::Auto, 2), 2 * P4K60, P4K120);
        assert_eq!(decide(&i), Outcome::Software(Reason::OverPixelBudget));
        // Many small streams leave room.
        let i = with_pixel_load(inputs(Mode::Auto, 2), 2 * 1280 * 720 * 30, P4K120);
        assert_eq!(decide(&i), Outcome::Hardware(Reason::Budget));
    }

    #[test]
    fn a_stream_that_exactly_fills_the_pixel_budget_fits() {
        let i = with_pixel_load(inputs(Mode::Auto, 0), P4K120 - P1080, P4K120);
        assert_eq!(decide(&i), Outcome::Hardware(Reason::Budget));
        let i = with_pixel_load(inputs(Mode::Auto, 0), P4K120 - P1080 + 1, P4K120);
        assert_eq!(decide(&i), Outcome::Software(Reason::OverPixelBudget));
    }

    #[test]
    fn zero_max_pixel_rate_is_no_pixel_budget() {
        let i = with_pixel_load(inputs(Mode::Auto, 0), u64::MAX, 0);
        assert_eq!(decide(&i), Outcome::Hardware(Reason::Budget));
    }

    #[test]
    fn the_session_budget_is_reported_first_when_both_are_spent() {
        let i = with_pixel_load(inputs(Mode::Auto, 6), 2 * P4K120, P4K120);
        assert_eq!(decide(&i), Outcome::Software(Reason::OverBudget));
    }

    #[test]
    fn pixel_budget_in_hardware_mode_is_an_error() {
        let i = with_pixel_load(inputs(Mode::Hardware, 0), P4K120, P4K120);
        assert!(matches!(decide(&i), Outcome::Fail(m) if m.contains("max-pixel-rate")));
    }

    #[test]
    fn a_missing_hardware_decoder_says_decoder() {
        let mut i = inputs(Mode::Auto, 0);
        i.kind = GuardKind::Decoder;
        i.hw_available = false;
        assert_eq!(decide(&i), Outcome::Software(Reason::NoHwDecoder));
        i.mode = Mode::Hardware;
        assert!(matches!(decide(&i), Outcome::Fail(m) if m.contains("hardware decoder")));
        i.mode = Mode::Auto;
        i.downstream_takes_sw = false;
        assert!(matches!(decide(&i), Outcome::Fail(m) if m.contains("software decoder's output")));
    }

    #[test]
    fn a_measured_load_at_or_past_max_load_is_software() {
        let with_load = |percent, max_load| {
            let mut i = inputs(Mode::Auto, 0);
            if let VpuView::Counted { load, .. } = &mut i.vpu {
                load.percent = percent;
            }
            i.budget.max_load = max_load;
            decide(&i)
        };
        assert_eq!(with_load(Some(90), 80), Outcome::Software(Reason::OverLoad));
        assert_eq!(with_load(Some(80), 80), Outcome::Software(Reason::OverLoad));
        assert_eq!(with_load(Some(10), 80), Outcome::Hardware(Reason::Budget));
        // Not measured, or no limit.
        assert_eq!(with_load(None, 80), Outcome::Hardware(Reason::Budget));
        assert_eq!(with_load(Some(100), 100), Outcome::Hardware(Reason::Budget));
    }

    #[test]
    fn lock_timeout_is_software_or_an_error_in_hardware_mode() {
        let mut i = inputs(Mode::Auto, 0);
        i.vpu = VpuView::LockTimedOut;
        assert_eq!(decide(&i), Outcome::Software(Reason::LockTimeout));
        i.mode = Mode::Hardware;
        assert!(matches!(decide(&i), Outcome::Fail(m) if m.contains("lock-timeout")));
    }
}
