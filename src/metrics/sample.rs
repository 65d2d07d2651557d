// SPDX-License-Identifier: MPL-2.0
//! What each kind of element tells: the values behind both its read-only
//! `stats` property and its metrics, so the two can never disagree.

use std::collections::BTreeMap;

/// One decision of a guard, as its decision message carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The child's factory name.
    pub factory: String,
    pub hardware: bool,
    pub reason: &'static str,
    pub sessions: u32,
    pub max_sessions: u32,
    /// Encoder load without this stream, in pixels per second (0 for decoders).
    pub pixel_rate: u64,
    /// The budget source counted (`budget-source` after `auto`); "" when
    /// none was.
    pub source: &'static str,
    /// The engine's load in percent the source measured; -1 when not measured.
    pub load: i32,
    /// Set when the decision replaced a running child mid-stream.
    pub switch: Option<Switch>,
}

/// What a mid-stream switch did with the frames (a decoder: access units)
/// in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switch {
    pub replayed: u64,
    pub lost: u64,
}

/// A decision's labels: (factory, hardware, reason).
pub type DecisionKey = (String, bool, &'static str);

/// A guard's (vpuguardenc's or vpuguarddec's) history since it was created:
/// what the last decision saw and counters that only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// The last decision; None before the first.
    pub last: Option<Decision>,
    pub decisions: BTreeMap<DecisionKey, u64>,
    pub switches: u64,
    pub frames_replayed: u64,
    pub frames_lost: u64,
    /// A chain of the last decision is in the bin: false once the stream
    /// stopped, so "hardware now" does not outlive the session.
    pub running: bool,
}

impl GuardStats {
    pub fn record(&mut self, decision: Decision) {
        let key = (decision.factory.clone(), decision.hardware, decision.reason);
        *self.decisions.entry(key).or_default() += 1;
        if let Some(switch) = decision.switch {
            self.switches += 1;
            self.frames_replayed += switch.replayed;
            self.frames_lost += switch.lost;
        }
        self.last = Some(decision);
        self.running = true;
    }

    /// The stream stopped and its chain is gone.
    pub fn stopped(&mut self) {
        self.running = false;
    }

    /// Whether the child working now is the hardware one.
    pub fn hardware_now(&self) -> bool {
        self.running && self.last.as_ref().is_some_and(|d| d.hardware)
    }

    /// The `stats` property: `name` is "vpuguardenc-stats" or "vpuguarddec-stats",
    /// `noun` the field naming the child ("encoder" or "decoder").
    pub fn to_structure(&self, name: &str, noun: &str) -> gst::Structure {
        let last = self.last.as_ref();
        let mut s = gst::Structure::builder(name)
            .field(noun, last.map_or("", |d| d.factory.as_str()))
            .field("hardware", self.hardware_now())
            .field("sessions", last.map_or(0, |d| d.sessions))
            .field("max-sessions", last.map_or(0, |d| d.max_sessions))
            .field("decisions", self.decisions.values().sum::<u64>())
            .field("switches", self.switches)
            .field("frames-replayed", self.frames_replayed)
            .field("frames-lost", self.frames_lost)
            .build();
        // A decoder's decision counts sessions only.
        if noun == "encoder" {
            s.set("pixel-rate", last.map_or(0, |d| d.pixel_rate));
        }
        s
    }
}

/// delaybuffer's levels and counts, per src pad (one today: "src").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelayStats {
    pub pad: String,
    pub delay: gst::ClockTime,
    pub level_time: gst::ClockTime,
    pub level_buffers: u32,
    pub level_bytes: u64,
    pub received: u64,
    pub pushed: u64,
    pub dropped: u64,
    /// Buffers whose data was copied: only those of a source pool that
    /// cannot grow (short-pool=copy), zero otherwise; exported so a dashboard
    /// shows the zero-copy claim holds where pools can grow.
    pub copied: u64,
}

/// leakcheck's last judged report, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeakStats {
    /// Findings of the last judged report by kind ("not-null", ...).
    pub findings: BTreeMap<&'static str, u64>,
    /// PLAYING..NULL cycles judged so far.
    pub cycles: u64,
    /// Device handles of this process that match the element's `devices`
    /// patterns, open now.
    pub device_handles: u64,
}

impl LeakStats {
    /// The `stats` property.
    pub fn to_structure(&self) -> gst::Structure {
        let mut findings = gst::Structure::new_empty("findings");
        for (kind, count) in &self.findings {
            findings.set(*kind, *count);
        }
        gst::Structure::builder("leakcheck-stats")
            .field("leaks", self.findings.values().sum::<u64>())
            .field("findings", findings)
            .field("cycles", self.cycles)
            .field("device-handles", self.device_handles)
            .build()
    }
}

/// What one element publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sample {
    Encoder(GuardStats),
    Decoder(GuardStats),
    Delay(Vec<DelayStats>),
    Leak(LeakStats),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(factory: &str, hardware: bool, switch: Option<Switch>) -> Decision {
        Decision {
            factory: factory.into(),
            hardware,
            reason: if switch.is_some() {
                "hw-failed-mid-stream"
            } else {
                "budget"
            },
            sessions: 2,
            max_sessions: 6,
            pixel_rate: 1000,
            source: "mpp",
            load: -1,
            switch,
        }
    }

    #[test]
    fn counters_only_grow_and_the_last_decision_wins() {
        let mut stats = GuardStats::default();
        stats.record(decision("mpph265enc", true, None));
        stats.record(decision(
            "x265enc",
            false,
            Some(Switch {
                replayed: 3,
                lost: 1,
            }),
        ));
        stats.record(decision("mpph265enc", true, None));
        assert_eq!(stats.decisions.len(), 2);
        assert_eq!(
            stats.decisions[&("mpph265enc".to_string(), true, "budget")],
            2
        );
        assert_eq!(
            (stats.switches, stats.frames_replayed, stats.frames_lost),
            (1, 3, 1)
        );
        assert!(stats.last.as_ref().unwrap().hardware);
    }

    #[test]
    fn guard_structure_carries_the_same_values() {
        gst::init().unwrap();
        let mut stats = GuardStats::default();
        stats.record(decision("x264enc", false, Some(Switch::default())));
        let s = stats.to_structure("vpuguardenc-stats", "encoder");
        assert_eq!(s.get::<&str>("encoder").unwrap(), "x264enc");
        assert_eq!(s.get::<u64>("decisions").unwrap(), 1);
        assert_eq!(s.get::<u64>("switches").unwrap(), 1);
        assert_eq!(s.get::<u64>("pixel-rate").unwrap(), 1000);
        let s = stats.to_structure("vpuguarddec-stats", "decoder");
        assert!(!s.has_field("pixel-rate"));
    }

    #[test]
    fn leak_structure_counts_findings_by_kind() {
        gst::init().unwrap();
        let stats = LeakStats {
            findings: [("not-null", 2), ("device-handle", 1)].into(),
            cycles: 4,
            device_handles: 1,
        };
        let s = stats.to_structure();
        assert_eq!(s.get::<u64>("leaks").unwrap(), 3);
        let findings = s.get::<gst::Structure>("findings").unwrap();
        assert_eq!(findings.get::<u64>("not-null").unwrap(), 2);
    }
}
