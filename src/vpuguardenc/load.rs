// SPDX-License-Identifier: MPL-2.0
//! The VPU load a guard counts: the kernel listing and the guards' slots
//! combined so that every session is counted once, open or about to open.

use std::collections::HashMap;

use super::sessions::{SessionKind, SessionLoad};

/// A hardware encoder held by a guard, as its slot file describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLoad {
    /// The process holding the slot.
    pub pid: u32,
    /// The pixel rate of the stream it encodes (width x height x fps).
    pub pixel_rate: u64,
}

/// What the VPU carries, as one decision sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Sessions of every kind: encoders, decoders, JPEG and other blocks.
    pub sessions: u32,
    /// Pixels per second of encoder sessions only.
    pub pixel_rate: u64,
}

/// Counts sessions in the listing not held by guards plus the guards' slots.
///
/// A slot is taken before its hardware encoder opens a session, and the
/// listing lags a close by a moment: an encoder record of a process that holds
/// slots is the session of one of those slots, and is counted through the slot
/// (once, whether the encoder has opened its session yet or not). Records
/// beyond the process's slots, and every non-encoder record, count as they are.
/// `process_of` maps a record's thread id to its process id (the kernel lists
/// the opening thread).
pub fn machine_load(
    listing: &[SessionLoad],
    slots: &[SlotLoad],
    process_of: impl Fn(u32) -> u32,
) -> Load {
    let mut unmatched_slots: HashMap<u32, u32> = HashMap::new();
    for slot in slots {
        *unmatched_slots.entry(slot.pid).or_default() += 1;
    }
    // Match the lightest records first, so a process's heaviest encoders
    // count with their listed rate when it has more encoders than slots.
    let mut encoders: Vec<&SessionLoad> = listing
        .iter()
        .filter(|l| l.kind == SessionKind::Encoder)
        .collect();
    encoders.sort_by_key(|l| l.pixel_rate.unwrap_or(0));

    let mut load = Load {
        sessions: (listing.len() - encoders.len()) as u32,
        pixel_rate: 0,
    };
    for encoder in encoders {
        let pid = process_of(encoder.record.tid);
        if let Some(free) = unmatched_slots.get_mut(&pid).filter(|n| **n > 0) {
            *free -= 1;
            continue;
        }
        load.sessions = load.sessions.saturating_add(1);
        load.pixel_rate = load
            .pixel_rate
            .saturating_add(encoder.pixel_rate.unwrap_or(0));
    }
    load.sessions = load.sessions.saturating_add(slots.len() as u32);
    load.pixel_rate = slots
        .iter()
        .fold(load.pixel_rate, |sum, s| sum.saturating_add(s.pixel_rate));
    load
}

/// The process a thread belongs to, from `/proc/<tid>/status`; the thread id
/// itself when it cannot be read (a thread that is gone, another namespace).
pub fn process_of_thread(tid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(tid)
}

#[cfg(test)]
mod tests {
    use super::super::sessions::SessionRecord;
    use super::*;

    fn session(tid: u32, kind: SessionKind, pixel_rate: Option<u64>) -> SessionLoad {
        SessionLoad {
            record: SessionRecord {
                tid,
                index: 0,
                device: String::new(),
            },
            kind,
            pixel_rate,
        }
    }

    const P1080: u64 = 1920 * 1080 * 30;
    const P4K: u64 = 3840 * 2160 * 60;

    #[test]
    fn a_slot_whose_encoder_has_not_opened_yet_still_counts() {
        // Two sessions of other programs; one guard slot, its session not listed yet.
        let listing = [
            session(10, SessionKind::Encoder, Some(P1080)),
            session(11, SessionKind::Decoder, None),
        ];
        let slots = [SlotLoad {
            pid: 500,
            pixel_rate: P4K,
        }];
        let load = machine_load(&listing, &slots, |tid| tid);
        assert_eq!(load.sessions, 3);
        assert_eq!(load.pixel_rate, P1080 + P4K);
    }

    #[test]
    fn a_listed_guard_session_counts_once() {
        let listing = [
            session(10, SessionKind::Encoder, Some(P1080)),
            // The guard's encoder, opened by a thread of process 500.
            session(501, SessionKind::Encoder, Some(P4K)),
        ];
        let slots = [SlotLoad {
            pid: 500,
            pixel_rate: P4K,
        }];
        let process_of = |tid| if tid == 501 { 500 } else { tid };
        assert_eq!(
            machine_load(&listing, &slots, process_of),
            Load {
                sessions: 2,
                pixel_rate: P1080 + P4K
            }
        );
    }

    #[test]
    fn a_guard_process_decoder_is_not_taken_for_its_encoder() {
        let listing = [session(500, SessionKind::Decoder, None)];
        let slots = [SlotLoad {
            pid: 500,
            pixel_rate: P1080,
        }];
        let load = machine_load(&listing, &slots, |tid| tid);
        assert_eq!((load.sessions, load.pixel_rate), (2, P1080));
    }

    #[test]
    fn encoders_beyond_a_process_slots_count_with_their_heaviest_rates() {
        // Process 500 runs a guard (one slot) and a bare encoder.
        let listing = [
            session(500, SessionKind::Encoder, Some(P4K)),
            session(500, SessionKind::Encoder, Some(P1080)),
        ];
        let slots = [SlotLoad {
            pid: 500,
            pixel_rate: P1080,
        }];
        let load = machine_load(&listing, &slots, |tid| tid);
        assert_eq!((load.sessions, load.pixel_rate), (2, P4K + P1080));
    }

    #[test]
    fn no_listing_counts_only_slots() {
        let slots = [
            SlotLoad {
                pid: 1,
                pixel_rate: 5,
            },
            SlotLoad {
                pid: 2,
                pixel_rate: 7,
            },
        ];
        assert_eq!(
            machine_load(&[], &slots, |t| t),
            Load {
                sessions: 2,
                pixel_rate: 12
            }
        );
    }

    #[test]
    fn this_threads_process_is_found() {
        let tid = unsafe { libc::gettid() } as u32;
        assert_eq!(process_of_thread(tid), std::process::id());
        assert_eq!(process_of_thread(u32::MAX), u32::MAX);
    }
}
