// SPDX-License-Identifier: MPL-2.0
//! The VPU load a guard counts: the kernel listing and the guards' slots
//! combined so that every session is counted once, open or about to open.

use std::collections::HashMap;

use super::listing::{SessionKind, SessionLoad};

/// Which budget a slot counts against: its source and device
/// (`mpp:/proc/mpp_service/sessions-summary`, `drm:`, `slots:`), hashed so
/// that a slot stays `Copy`. A guard counts only the slots of its own budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct BudgetId(u64);

impl BudgetId {
    /// Slots written before slots named their budget: MPP guards' slots.
    pub const UNNAMED: BudgetId = BudgetId(0);

    /// The id of a budget named `budget`; whitespace stands for `_`, as a
    /// slot file's fields are separated by it.
    pub fn of(budget: &str) -> BudgetId {
        let named = budget.replace(char::is_whitespace, "_");
        // FNV-1a: the same in every process and build, unlike RandomState.
        let hash = named.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        BudgetId(hash.max(1))
    }

    /// Whether a slot of budget `self` counts against `ours`, a budget of an
    /// MPP source when `ours_is_mpp`.
    pub fn counts_against(self, ours: BudgetId, ours_is_mpp: bool) -> bool {
        self == ours || (self == BudgetId::UNNAMED && ours_is_mpp)
    }
}

/// A hardware child held by a guard, as its slot file describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLoad {
    /// The process holding the slot.
    pub pid: u32,
    /// Encoder or decoder: a slot stands for a listed session of its kind.
    pub kind: SessionKind,
    /// The pixel rate of the stream an encoder encodes (width x height x
    /// fps); 0 for a decoder, which the pixel budget does not cover.
    pub pixel_rate: u64,
    /// The budget the slot was taken against.
    pub budget: BudgetId,
}

/// What the VPU carries, as one decision sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Sessions of every kind: encoders, decoders, JPEG and other blocks.
    pub sessions: u32,
    /// Pixels per second of encoder sessions only.
    pub pixel_rate: u64,
    /// How busy the engine is, in percent, where the source measures it.
    pub percent: Option<u32>,
}

/// Counts sessions in the listing not held by guards plus the guards' slots.
///
/// A slot is taken before its hardware child opens a session, and the listing
/// lags a close by a moment: a record of a process that holds slots of the
/// record's kind (encoder or decoder) is the session of one of those slots,
/// and is counted through the slot (once, whether the child has opened its
/// session yet or not). Records beyond the process's slots of that kind, and
/// every JPEG or other record, count as they are. `process_of` maps a
/// record's thread id to its process id (the kernel lists the opening thread).
///
/// Any user can plant a slot file naming any process, so a slot never makes
/// the count lower than the listing alone: it stands for one record, and an
/// encoder record it stands for still counts what its table lists beyond the
/// rate the slot claims.
pub fn machine_load(
    listing: &[SessionLoad],
    slots: &[SlotLoad],
    process_of: impl Fn(u32) -> u32,
) -> Load {
    // The claimed rates of each process's slots of a kind, heaviest first,
    // so that the lightest record is matched with the lightest slot.
    let mut unmatched_slots: HashMap<(u32, SessionKind), Vec<u64>> = HashMap::new();
    for slot in slots {
        unmatched_slots
            .entry((slot.pid, slot.kind))
            .or_default()
            .push(slot.pixel_rate);
    }
    for rates in unmatched_slots.values_mut() {
        rates.sort_unstable_by(|a, b| b.cmp(a));
    }
    // Match the lightest records first, so a process's heaviest encoders
    // count with their listed rate when it has more encoders than slots.
    let mut records: Vec<&SessionLoad> = listing.iter().collect();
    records.sort_by_key(|l| l.pixel_rate.unwrap_or(0));

    let mut load = Load::default();
    for record in records {
        let pid = process_of(record.record.tid);
        // A record that may be either stands for a slot of either kind.
        let slot_kinds: &[SessionKind] = match record.kind {
            SessionKind::Encoder => &[SessionKind::Encoder],
            SessionKind::Decoder => &[SessionKind::Decoder],
            SessionKind::Codec => &[SessionKind::Encoder, SessionKind::Decoder],
            SessionKind::Jpeg | SessionKind::Other => &[],
        };
        let listed_rate = record.pixel_rate.unwrap_or(0);
        let claimed = slot_kinds
            .iter()
            .find_map(|kind| unmatched_slots.get_mut(&(pid, *kind)).and_then(Vec::pop));
        if let Some(claimed) = claimed {
            if record.kind == SessionKind::Encoder {
                let beyond_claim = listed_rate.saturating_sub(claimed);
                load.pixel_rate = load.pixel_rate.saturating_add(beyond_claim);
            }
            continue;
        }
        load.sessions = load.sessions.saturating_add(1);
        if record.kind == SessionKind::Encoder {
            load.pixel_rate = load.pixel_rate.saturating_add(listed_rate);
        }
    }
    load.sessions = load.sessions.saturating_add(slots.len() as u32);
    load.pixel_rate = slots
        .iter()
        .filter(|s| s.kind == SessionKind::Encoder)
        .fold(load.pixel_rate, |sum, s| sum.saturating_add(s.pixel_rate));
    load
}

#[cfg(test)]
mod tests {
    use super::super::listing::SessionRecord;
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
            kind: SessionKind::Encoder,
            pixel_rate: P4K,
            budget: BudgetId::UNNAMED,
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
            kind: SessionKind::Encoder,
            pixel_rate: P4K,
            budget: BudgetId::UNNAMED,
        }];
        let process_of = |tid| if tid == 501 { 500 } else { tid };
        assert_eq!(
            machine_load(&listing, &slots, process_of),
            Load {
                sessions: 2,
                pixel_rate: P1080 + P4K,
                percent: None,
            }
        );
    }

    #[test]
    fn a_guard_process_decoder_is_not_taken_for_its_encoder() {
        let listing = [session(500, SessionKind::Decoder, None)];
        let slots = [SlotLoad {
            pid: 500,
            kind: SessionKind::Encoder,
            pixel_rate: P1080,
            budget: BudgetId::UNNAMED,
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
            kind: SessionKind::Encoder,
            pixel_rate: P1080,
            budget: BudgetId::UNNAMED,
        }];
        let load = machine_load(&listing, &slots, |tid| tid);
        assert_eq!((load.sessions, load.pixel_rate), (2, P4K + P1080));
    }

    #[test]
    fn a_decoder_slot_stands_for_its_processs_decoder_record_only() {
        // Process 500 holds an encoder slot and a decoder slot; its decoder
        // is listed, its encoder not yet; another program runs a decoder.
        let listing = [
            session(500, SessionKind::Decoder, None),
            session(20, SessionKind::Decoder, None),
        ];
        let slots = [
            SlotLoad {
                pid: 500,
                kind: SessionKind::Encoder,
                pixel_rate: P1080,
                budget: BudgetId::UNNAMED,
            },
            SlotLoad {
                pid: 500,
                kind: SessionKind::Decoder,
                pixel_rate: 0,
                budget: BudgetId::UNNAMED,
            },
        ];
        let load = machine_load(&listing, &slots, |tid| tid);
        assert_eq!((load.sessions, load.pixel_rate), (3, P1080));
        // Without its decoder slot the same listing counts the record too.
        let load = machine_load(&listing, &slots[..1], |tid| tid);
        assert_eq!(load.sessions, 3);
    }

    #[test]
    fn a_codec_record_stands_for_a_slot_of_either_kind() {
        let listing = [
            session(500, SessionKind::Codec, None),
            session(600, SessionKind::Codec, None),
            session(20, SessionKind::Codec, None),
        ];
        let slot = |pid, kind| SlotLoad {
            pid,
            kind,
            pixel_rate: 0,
            budget: BudgetId::UNNAMED,
        };
        let slots = [
            slot(500, SessionKind::Decoder),
            slot(600, SessionKind::Encoder),
        ];
        // Two guards' sessions counted through their slots, one foreign.
        assert_eq!(machine_load(&listing, &slots, |tid| tid).sessions, 3);
    }

    #[test]
    fn a_jpeg_record_is_never_taken_for_a_slot() {
        let listing = [session(500, SessionKind::Jpeg, None)];
        let slots = [SlotLoad {
            pid: 500,
            kind: SessionKind::Decoder,
            pixel_rate: 0,
            budget: BudgetId::UNNAMED,
        }];
        assert_eq!(machine_load(&listing, &slots, |tid| tid).sessions, 2);
    }

    #[test]
    fn a_slot_claiming_less_than_its_record_lists_does_not_lower_the_pixel_load() {
        // A slot planted by any user for a bare 4K encoder's process,
        // claiming no load: the record's listed rate still counts.
        let listing = [session(700, SessionKind::Encoder, Some(P4K))];
        let slots = [SlotLoad {
            pid: 700,
            kind: SessionKind::Encoder,
            pixel_rate: 0,
            budget: BudgetId::UNNAMED,
        }];
        let load = machine_load(&listing, &slots, |tid| tid);
        assert_eq!((load.sessions, load.pixel_rate), (1, P4K));
        // A guard's own slot claiming its stream's rate counts it once.
        let slots = [SlotLoad {
            pixel_rate: P4K,
            ..slots[0]
        }];
        let load = machine_load(&listing, &slots, |tid| tid);
        assert_eq!((load.sessions, load.pixel_rate), (1, P4K));
    }

    #[test]
    fn a_slot_counts_against_its_own_budget_and_unnamed_ones_against_mpp() {
        let mpp = BudgetId::of("mpp:/proc/mpp_service/sessions-summary");
        let drm = BudgetId::of("drm:");
        assert_ne!(mpp, drm);
        assert_eq!(mpp, BudgetId::of("mpp:/proc/mpp_service/sessions-summary"));
        assert!(mpp.counts_against(mpp, true));
        assert!(!drm.counts_against(mpp, true));
        assert!(BudgetId::UNNAMED.counts_against(mpp, true));
        assert!(!BudgetId::UNNAMED.counts_against(drm, false));
        // As a slot file writes it.
        assert_eq!(BudgetId::of("mpp:/a b"), BudgetId::of("mpp:/a_b"));
    }

    #[test]
    fn no_listing_counts_only_slots() {
        let slots = [
            SlotLoad {
                pid: 1,
                kind: SessionKind::Encoder,
                pixel_rate: 5,
                budget: BudgetId::UNNAMED,
            },
            SlotLoad {
                pid: 2,
                kind: SessionKind::Encoder,
                pixel_rate: 7,
                budget: BudgetId::UNNAMED,
            },
        ];
        assert_eq!(
            machine_load(&[], &slots, |t| t),
            Load {
                sessions: 2,
                pixel_rate: 12,
                percent: None,
            }
        );
    }
}
