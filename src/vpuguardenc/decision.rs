// SPDX-License-Identifier: MPL-2.0
//! The encoder choice, as a pure function of what the guard saw at negotiation.

use super::Mode;

/// Why the guard chose the encoder it chose; the `reason` field of the
/// `vpuguardenc-decision` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A VPU slot was free.
    Budget,
    /// Every slot of `max-sessions` was taken.
    OverBudget,
    /// Downstream cannot take the hardware encoder's codec.
    DownstreamCaps,
    /// The hardware encoder factory is not installed.
    NoHwEncoder,
    /// The hardware child failed to start, software took over.
    HwStartFailed,
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
            Reason::DownstreamCaps => "downstream-caps",
            Reason::NoHwEncoder => "no-hw-encoder",
            Reason::HwStartFailed => "hw-start-failed",
            Reason::SessionFileUnreadable => "session-file-unreadable",
            Reason::Forced => "forced",
        }
    }
}

/// Where the session count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountSource {
    /// The kernel's listing (combined with the ledger, whichever is higher).
    SessionFile,
    /// Only the hardware encoders held by guards on this machine.
    Ledger,
}

/// What the guard knows when it decides.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub mode: Mode,
    pub hw_available: bool,
    pub downstream_takes_hw: bool,
    pub downstream_takes_sw: bool,
    /// Sessions in use; None when the VPU was not consulted (software mode).
    pub sessions: Option<u32>,
    pub source: CountSource,
    pub max_sessions: u32,
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

pub fn decide(inputs: &Inputs) -> Outcome {
    let software = |reason: Reason, why_hw_not: &str| {
        if inputs.downstream_takes_sw {
            Outcome::Software(reason)
        } else {
            Outcome::Fail(format!(
                "{why_hw_not}, and downstream does not accept the software encoder's codec"
            ))
        }
    };
    let sessions = inputs.sessions.unwrap_or(0);
    let free = sessions < inputs.max_sessions;

    match inputs.mode {
        Mode::Software => software(Reason::Forced, "mode=software"),
        Mode::Hardware => {
            if !inputs.hw_available {
                Outcome::Fail("mode=hardware but the hardware encoder is not installed".into())
            } else if !inputs.downstream_takes_hw {
                Outcome::Fail(
                    "mode=hardware but downstream does not accept the hardware encoder's codec"
                        .into(),
                )
            } else if !free {
                Outcome::Fail(format!(
                    "mode=hardware but no VPU slot is free: {sessions} of max-sessions={} in use",
                    inputs.max_sessions
                ))
            } else {
                Outcome::Hardware(Reason::Forced)
            }
        }
        Mode::Auto => {
            if !inputs.hw_available {
                software(Reason::NoHwEncoder, "the hardware encoder is not installed")
            } else if !inputs.downstream_takes_hw {
                software(
                    Reason::DownstreamCaps,
                    "downstream does not accept the hardware encoder's codec",
                )
            } else if !free {
                software(
                    Reason::OverBudget,
                    &format!(
                        "no VPU slot is free ({sessions} of max-sessions={} in use)",
                        inputs.max_sessions
                    ),
                )
            } else if inputs.source == CountSource::Ledger {
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
            mode,
            hw_available: true,
            downstream_takes_hw: true,
            downstream_takes_sw: true,
            sessions: Some(sessions),
            source: CountSource::SessionFile,
            max_sessions: 6,
        }
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
        i.max_sessions = 0;
        assert_eq!(decide(&i), Outcome::Software(Reason::OverBudget));
    }

    #[test]
    fn ledger_count_says_so() {
        let mut i = inputs(Mode::Auto, 1);
        i.source = CountSource::Ledger;
        assert_eq!(decide(&i), Outcome::Hardware(Reason::SessionFileUnreadable));
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
        i.sessions = None;
        assert_eq!(decide(&i), Outcome::Software(Reason::Forced));
    }

    #[test]
    fn over_budget_with_hw_only_downstream_fails() {
        let mut i = inputs(Mode::Auto, 6);
        i.downstream_takes_sw = false;
        assert!(matches!(decide(&i), Outcome::Fail(m) if m.contains("no VPU slot")));
    }
}
