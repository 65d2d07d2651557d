// SPDX-License-Identifier: MPL-2.0
//! The HTTP endpoint's connection budget, as nginx keeps its
//! `worker_connections`: at most `max` open at once. A connection beyond
//! that takes the place of the one idle longest (connected, or between
//! requests, and no byte of a request read), which is closed at once; when
//! none is idle, of the one reading a request head the longest; when every
//! open connection is answering a request, the newcomer is closed instead.
//! Either way one connection is shed and counted. So a flood of connections
//! that send nothing cannot cut a scraper whose request came in, and a scrape
//! being answered is never cut. Pure bookkeeping: no sockets, no clock
//! (idleness is ordered by a counter of events).

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Notify;

/// Why a connection ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client closed it, it failed, or it was shed.
    Closed,
    /// It stayed idle (no request, or an answer not read) past the timeout.
    IdleTimeout,
}

/// The counts at one moment, as the endpoint serves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub open: u64,
    pub max: u64,
    /// Newcomers closed at once: every open connection was answering.
    pub refused: u64,
    /// Idle connections closed at once to make room for a newcomer.
    pub evicted: u64,
    pub timed_out: u64,
}

/// What an open connection is doing, with the event count when it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doing {
    /// Waiting for a request: the first to be shed.
    Idle(u64),
    /// A request head is coming in: shed only when none is idle (a head
    /// that never ends is bounded by the header read timeout).
    Reading(u64),
    Answering,
}

impl Doing {
    /// The order of shedding, smallest first; None: never shed.
    fn shed_order(self) -> Option<(u8, u64)> {
        match self {
            Doing::Idle(since) => Some((0, since)),
            Doing::Reading(since) => Some((1, since)),
            Doing::Answering => None,
        }
    }
}

#[derive(Debug)]
struct Open {
    doing: Doing,
    shed: Arc<Shed>,
}

/// Tells a connection's task that it was evicted.
#[derive(Debug, Default)]
struct Shed {
    done: AtomicBool,
    notify: Notify,
}

#[derive(Debug, Default)]
struct Table {
    open: BTreeMap<u64, Open>,
    next_id: u64,
    events: u64,
}

/// Shared by the accept loop, each connection's task and the scrape.
#[derive(Debug)]
pub struct Connections {
    max: u64,
    table: Mutex<Table>,
    refused: AtomicU64,
    evicted: AtomicU64,
    timed_out: AtomicU64,
}

impl Connections {
    pub fn new(max: u64) -> Arc<Connections> {
        Arc::new(Connections {
            max,
            table: Mutex::default(),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        })
    }

    /// A slot for a new connection (idle until its first bytes), making
    /// room by evicting the connection idle longest (or, none idle, reading a
    /// head the longest) when `max` are open; None (counted as refused) when
    /// all of them are answering.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut table = self.table.lock();
        if table.open.len() as u64 >= self.max {
            let first_to_shed = table
                .open
                .iter()
                .filter_map(|(id, open)| open.doing.shed_order().map(|order| (order, *id)))
                .min();
            let Some((_, victim)) = first_to_shed else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            let evicted = table.open.remove(&victim).expect("listed above");
            evicted.shed.done.store(true, Ordering::Release);
            evicted.shed.notify.notify_one();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = table.next_id;
        table.next_id += 1;
        table.events += 1;
        let shed = Arc::new(Shed::default());
        let doing = Doing::Idle(table.events);
        table.open.insert(
            id,
            Open {
                doing,
                shed: shed.clone(),
            },
        );
        Some(Slot {
            activity: Activity {
                id,
                connections: self.clone(),
            },
            shed,
            ending: Ending::Closed,
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            open: self.table.lock().open.len() as u64,
            max: self.max,
            refused: self.refused.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
        }
    }

    fn set_doing(&self, id: u64, doing: impl FnOnce(Doing, u64) -> Doing) {
        let mut table = self.table.lock();
        table.events += 1;
        let now = table.events;
        if let Some(open) = table.open.get_mut(&id) {
            open.doing = doing(open.doing, now);
        }
    }
}

/// Marks a connection answering or idle; cloned into its request handling.
#[derive(Debug, Clone)]
pub struct Activity {
    id: u64,
    connections: Arc<Connections>,
}

impl Activity {
    /// Bytes came in: an idle connection is reading a request from now on
    /// (one reading or answering already stays so).
    pub fn reading(&self) {
        self.connections
            .set_doing(self.id, |doing, now| match doing {
                Doing::Idle(_) => Doing::Reading(now),
                busy => busy,
            });
    }

    /// A request is being answered: not to be evicted until [`Self::idle`].
    pub fn answering(&self) {
        self.connections.set_doing(self.id, |_, _| Doing::Answering);
    }

    /// The answer is written: the connection waits for the next request.
    pub fn idle(&self) {
        self.connections
            .set_doing(self.id, |_, now| Doing::Idle(now));
    }
}

/// One open connection's place in the budget, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    activity: Activity,
    shed: Arc<Shed>,
    ending: Ending,
}

impl Slot {
    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// Returns once this connection was evicted for a newcomer.
    pub async fn evicted(&self) {
        // notify_one also keeps a wake-up that came before this wait.
        if !self.is_evicted() {
            self.shed.notify.notified().await;
        }
    }

    pub fn is_evicted(&self) -> bool {
        self.shed.done.load(Ordering::Acquire)
    }

    pub fn ended(&mut self, ending: Ending) {
        self.ending = ending;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.ending == Ending::IdleTimeout {
            self.activity
                .connections
                .timed_out
                .fetch_add(1, Ordering::Relaxed);
        }
        // An evicted connection is no longer listed.
        let removed = self
            .activity
            .connections
            .table
            .lock()
            .open
            .remove(&self.activity.id);
        drop(removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_over_max_evicts_the_connection_idle_longest() {
        let connections = Connections::new(3);
        let first = connections.admit().unwrap();
        let second = connections.admit().unwrap();
        let third = connections.admit().unwrap();
        // The first answered a request since: the second is idle longest.
        first.activity().answering();
        first.activity().idle();
        let fourth = connections.admit().unwrap();
        assert!(second.is_evicted());
        assert!(!first.is_evicted() && !third.is_evicted() && !fourth.is_evicted());
        let now = connections.snapshot();
        assert_eq!((now.open, now.max, now.evicted, now.refused), (3, 3, 1, 0));
        // The evicted connection's task ends later: nothing counted twice.
        drop(second);
        assert_eq!(connections.snapshot().open, 3);
    }

    #[test]
    fn a_connection_reading_a_request_is_shed_only_when_none_is_idle() {
        let connections = Connections::new(2);
        let reading = connections.admit().unwrap();
        let idle = connections.admit().unwrap();
        reading.activity().reading();
        // Idle longer, but reading: the younger idle one goes instead.
        let newcomer = connections.admit().unwrap();
        assert!(idle.is_evicted() && !reading.is_evicted());
        // Bytes read while answering leave it answering.
        newcomer.activity().answering();
        newcomer.activity().reading();
        assert!(connections.admit().is_some());
        assert!(reading.is_evicted() && !newcomer.is_evicted());
    }

    #[test]
    fn a_newcomer_is_refused_when_every_connection_is_answering() {
        let connections = Connections::new(2);
        let a = connections.admit().unwrap();
        let b = connections.admit().unwrap();
        a.activity().answering();
        b.activity().answering();
        assert!(connections.admit().is_none());
        assert!(connections.admit().is_none());
        let now = connections.snapshot();
        assert_eq!((now.open, now.refused, now.evicted), (2, 2, 0));
        // Once one answer is written, that connection makes room.
        b.activity().idle();
        assert!(connections.admit().is_some());
        assert!(b.is_evicted() && !a.is_evicted());
        // A closed connection frees its slot without evicting anyone.
        drop(a);
        assert!(connections.admit().is_some());
        assert_eq!(connections.snapshot().evicted, 1);
    }

    #[test]
    fn idle_timeouts_are_counted_when_the_slot_goes() {
        let connections = Connections::new(4);
        let mut idle = connections.admit().unwrap();
        let closed = connections.admit().unwrap();
        idle.ended(Ending::IdleTimeout);
        assert_eq!(connections.snapshot().timed_out, 0);
        drop(idle);
        drop(closed);
        let now = connections.snapshot();
        assert_eq!((now.open, now.timed_out, now.refused), (0, 1, 0));
    }

    #[test]
    fn open_connections_never_pass_max_under_contention() {
        let connections = Connections::new(8);
        let admitted: Vec<Slot> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..100)
                            .filter_map(|_| connections.admit())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect::<Vec<Slot>>()
        });
        let now = connections.snapshot();
        assert_eq!(now.open, 8);
        assert_eq!(admitted.iter().filter(|s| !s.is_evicted()).count(), 8);
        assert_eq!(now.evicted + now.refused, 400 - 8);
    }
}
