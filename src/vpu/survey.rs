// SPDX-License-Identifier: MPL-2.0
//! What `edgeguard-vpu` shows of one budget source: who holds its sessions,
//! matched to the guards' slots as the guards count them (`load`): a listed
//! session of a process that holds a slot of its kind is that slot's, and
//! is guarded by the slot's element; every other listed session is held by
//! a program the guards do not know; a slot whose session is not listed yet
//! is a guard opening one. The sessions shown are those a guard counts.

use super::listing::SessionKind;
use super::load::BudgetId;

/// A session as a source lists it: the process holding it and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub pid: u32,
    pub kind: SessionKind,
}

/// A guard's slot as its file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSlot {
    pub pid: u32,
    pub kind: SessionKind,
    /// The budget it was taken against.
    pub budget: BudgetId,
    /// The guard's path in its pipeline (`/pipeline0/vpuguardenc0`).
    pub owner: String,
}

/// One session, and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub kind: SessionKind,
    /// The guard holding it, None for a program no guard accounts for.
    pub element: Option<String>,
    /// Listed by the source; false for a slot whose session is not listed
    /// yet (the guard is opening it).
    pub listed: bool,
}

/// The holders of `sessions` and `slots`: each listed session once, matched
/// to an unused slot of its process and kind when there is one, then the
/// slots no listed session matched.
pub fn holders(sessions: &[Session], slots: &[GuardSlot]) -> Vec<Holder> {
    let mut unused: Vec<&GuardSlot> = slots.iter().collect();
    let mut found: Vec<Holder> = sessions
        .iter()
        .map(|session| {
            let slot = unused
                .iter()
                .position(|s| s.pid == session.pid && stands_for(s.kind, session.kind))
                .map(|i| unused.remove(i));
            Holder {
                pid: session.pid,
                // A slot knows what a device-node holder is.
                kind: slot.map_or(session.kind, |s| s.kind),
                element: slot.map(|s| s.owner.clone()),
                listed: true,
            }
        })
        .collect();
    found.extend(unused.into_iter().map(|slot| Holder {
        pid: slot.pid,
        kind: slot.kind,
        element: Some(slot.owner.clone()),
        listed: false,
    }));
    found
}

/// Whether a slot of `slot` kind stands for a listed session of `listed`
/// kind, as the guards count (`load::machine_load`): a session that may be
/// either (a V4L2 or Jetson node's holder, a DRM client) stands for a slot
/// of either kind; JPEG and other blocks for none.
fn stands_for(slot: SessionKind, listed: SessionKind) -> bool {
    match listed {
        SessionKind::Encoder | SessionKind::Decoder => slot == listed,
        SessionKind::Codec => true,
        SessionKind::Jpeg | SessionKind::Other => false,
    }
}

/// How the command names a kind.
pub fn kind_name(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::Encoder => "encoder",
        SessionKind::Decoder => "decoder",
        SessionKind::Codec => "codec",
        SessionKind::Jpeg => "jpeg",
        SessionKind::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(pid: u32, kind: SessionKind) -> Session {
        Session { pid, kind }
    }

    fn slot(pid: u32, kind: SessionKind, owner: &str) -> GuardSlot {
        GuardSlot {
            pid,
            kind,
            budget: BudgetId::UNNAMED,
            owner: owner.to_string(),
        }
    }

    #[test]
    fn a_listed_session_is_guarded_by_the_slot_of_its_process_and_kind() {
        let sessions = [
            session(10, SessionKind::Encoder),
            session(10, SessionKind::Decoder),
            session(20, SessionKind::Encoder),
        ];
        let slots = [slot(10, SessionKind::Encoder, "/p/enc")];
        let found = holders(&sessions, &slots);
        let guarded: Vec<_> = found.iter().map(|h| h.element.as_deref()).collect();
        assert_eq!(guarded, [Some("/p/enc"), None, None]);
        assert!(found.iter().all(|h| h.listed));
    }

    #[test]
    fn a_device_node_holder_is_guarded_by_a_slot_of_either_kind_and_takes_its_kind() {
        let sessions = [
            session(10, SessionKind::Codec),
            session(10, SessionKind::Codec),
            session(11, SessionKind::Jpeg),
        ];
        let slots = [
            slot(10, SessionKind::Decoder, "/p/dec"),
            slot(11, SessionKind::Encoder, "/q/enc"),
        ];
        let found = holders(&sessions, &slots);
        assert_eq!(found[0].kind, SessionKind::Decoder);
        assert_eq!(found[0].element.as_deref(), Some("/p/dec"));
        assert_eq!(
            (found[1].kind, found[1].element.as_deref()),
            (SessionKind::Codec, None)
        );
        // A JPEG session is never a guard's: the slot is still opening.
        assert_eq!(found[2].element, None);
        assert_eq!(
            (found[3].element.as_deref(), found[3].listed),
            (Some("/q/enc"), false)
        );
    }

    #[test]
    fn each_slot_guards_one_session_and_one_not_listed_yet_is_still_shown() {
        let sessions = [
            session(10, SessionKind::Encoder),
            session(10, SessionKind::Encoder),
        ];
        let slots = [
            slot(10, SessionKind::Encoder, "/p/a"),
            slot(30, SessionKind::Decoder, "/q/dec"),
        ];
        let found = holders(&sessions, &slots);
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].element.as_deref(), Some("/p/a"));
        assert_eq!(found[1].element, None);
        assert_eq!(
            found[2],
            Holder {
                pid: 30,
                kind: SessionKind::Decoder,
                element: Some("/q/dec".into()),
                listed: false
            }
        );
    }
}
