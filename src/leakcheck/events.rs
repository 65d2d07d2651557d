// SPDX-License-Identifier: MPL-2.0
//! What happens to a tracked pipeline, as both modes report it: the element
//! mode from its pipeline's bus and bin signals, the tracer mode from its
//! hooks. Each entry point reads the live objects first, updates the ledger
//! under the registry lock, and posts or schedules after releasing it.

use gst::prelude::*;
use std::sync::Arc;
use std::time::Instant;

use super::identity;
use super::judge::{Demand, Outlet};
use super::ledger::{self, Tracker};
use super::observe;
use super::paths::Node;
use super::registry::REGISTRY;
use super::{fds, worker};

/// Starts tracking a top-level pipeline (or refreshes its settings and
/// watcher), catching up on the elements it already holds. Returns its serial.
pub fn track(
    top: &gst::Element,
    settings: ledger::Settings,
    watcher: Option<&gst::Element>,
) -> u64 {
    let fresh = prepare(top, &settings);
    let serial = register(top, settings, watcher, fresh);
    catch_up(serial, top);
    serial
}

/// A tracker for a pipeline not tracked yet, ready to register: reads the
/// device handles and VPU sessions open now, before any event must be caught.
pub fn prepare(top: &gst::Element, settings: &ledger::Settings) -> Option<Tracker> {
    let serial = identity::serial(top);
    if REGISTRY.lock().trackers.contains_key(&serial) {
        return None;
    }
    Some(Tracker::new(
        serial,
        Arc::new(top.downgrade()),
        top.name().to_string(),
        settings.clone(),
        fds::snapshot(&settings.patterns),
        observe::this_process_sessions(settings.session_file.as_deref()).unwrap_or_default(),
    ))
}

/// Registers a pipeline's tracker (`fresh`, unless one is registered
/// already) without reading its elements: from now on the events reported
/// for it are recorded. Returns its serial.
pub fn register(
    top: &gst::Element,
    settings: ledger::Settings,
    watcher: Option<&gst::Element>,
    fresh: Option<Tracker>,
) -> u64 {
    let serial = identity::serial(top);
    let watcher = watcher.map(|w| Arc::new(w.downgrade()));
    // Untracked since `prepare` found it tracked (another element let go):
    // tracked from now, the handles and sessions open read at its judgement.
    let fresh = fresh.unwrap_or_else(|| {
        Tracker::new(
            serial,
            Arc::new(top.downgrade()),
            top.name().to_string(),
            settings.clone(),
            Default::default(),
            Vec::new(),
        )
    });
    let mut registry = REGISTRY.lock();
    let tracker = registry.trackers.entry(serial).or_insert(fresh);
    tracker.settings = settings;
    if watcher.is_some() {
        tracker.watcher = watcher;
    }
    serial
}

/// Records the elements a registered pipeline holds that no event told of
/// yet; what the events recorded meanwhile (an element's transition or
/// removal during the walk) stands.
pub fn catch_up(tracker: u64, top: &gst::Element) {
    let (elements, entries) = observe::entries(top);
    let fresh = match REGISTRY.lock().trackers.get_mut(&tracker) {
        Some(t) if !t.disposing => t.add_if_unknown(entries),
        _ => return,
    };
    watch_disposal(tracker, &elements, &fresh);
}

/// Stops tracking a pipeline; its report goes with it.
pub fn untrack(tracker: u64) {
    let gone = REGISTRY.lock().trackers.remove(&tracker);
    drop(gone);
}

/// Marks each newly recorded element dead in the ledger when it is disposed.
fn watch_disposal(tracker: u64, elements: &[gst::Element], fresh: &[u64]) {
    if fresh.is_empty() {
        return;
    }
    for element in elements {
        let serial = identity::serial(element);
        if fresh.contains(&serial) {
            // The notification outlives the handle: dropping it keeps it armed.
            drop(element.add_weak_ref_notify(move || {
                if let Some(t) = REGISTRY.lock().trackers.get_mut(&tracker) {
                    t.mark_dead(serial);
                }
            }));
        }
    }
}

/// The places of an element's ancestors that the tracker does not know
/// (its path goes through them), read with the registry unlocked.
fn unknown_ancestors(tracker: u64, element: &gst::Element) -> Vec<(u64, Node)> {
    observe::unknown_ancestors(element, |serial| {
        let registry = REGISTRY.lock();
        let t = registry.trackers.get(&tracker);
        t.is_none_or(|t| t.knows_place(serial))
    })
}

pub fn element_added(tracker: u64, element: &gst::Element) {
    let ancestors = unknown_ancestors(tracker, element);
    let (elements, entries) = observe::entries(element);
    let fresh = match REGISTRY.lock().trackers.get_mut(&tracker) {
        Some(t) if !t.disposing => {
            t.place(ancestors);
            t.add(entries)
        }
        _ => return,
    };
    watch_disposal(tracker, &elements, &fresh);
}

/// An element leaves the pipeline (or the pipeline is being disposed and
/// empties itself: then its pending cycle is judged first, here).
pub fn element_removed(tracker: u64, top: &gst::Element, element: &gst::Element) {
    let pipeline = match REGISTRY.lock().trackers.get(&tracker) {
        Some(t) if !t.disposing => t.pipeline.clone(),
        _ => return,
    };
    if pipeline.upgrade().is_none() {
        // Weak references are cleared before dispose: the pipeline is going.
        pipeline_disposing(tracker, top);
        return;
    }
    let state = element.current_state();
    let ancestors = unknown_ancestors(tracker, element);
    let (elements, entries) = observe::entries(element);
    let serials: Vec<u64> = entries.iter().map(|e| e.serial).collect();
    let removed = identity::serial(element);
    let (fresh, finding, outlet) = {
        let mut registry = REGISTRY.lock();
        let Some(t) = registry.trackers.get_mut(&tracker) else {
            return;
        };
        t.place(ancestors);
        let fresh = t.add_if_unknown(entries);
        let finding = t.removing(&serials, removed, state);
        (fresh, finding, Outlet::of(t))
    };
    watch_disposal(tracker, &elements, &fresh);
    if let Some(finding) = finding
        && outlet.post_finding(&finding)
        && let Some(t) = REGISTRY.lock().trackers.get_mut(&tracker)
    {
        t.announced(finding);
    }
}

fn pipeline_disposing(tracker: u64, top: &gst::Element) {
    identity::mark_gone(top);
    worker::judge_now(tracker, Demand::Dispose(top));
    let mut registry = REGISTRY.lock();
    let watch_all = registry.watch_all;
    let Some(t) = registry.trackers.get_mut(&tracker) else {
        return;
    };
    t.disposing = true;
    if t.watcher.is_none() && watch_all {
        // Tracer mode: nobody can ask any more; keep findings for the exit.
        let gone = registry.trackers.remove(&tracker);
        if let Some(gone) = &gone {
            registry.keep_finished(gone.report.clone());
        }
        drop(registry);
        drop(gone);
    }
}

/// A state transition of one of the pipeline's elements. `result` is the
/// change's outcome name ("success", "async", "no-preroll", "failure").
pub fn state_changed(
    tracker: u64,
    element: &gst::Element,
    change: gst::StateChange,
    result: &'static str,
) {
    let serial = identity::serial(element);
    let known = match REGISTRY.lock().trackers.get(&tracker) {
        Some(t) if !t.disposing => t.knows(serial),
        _ => return,
    };
    let ancestors = match known {
        true => Vec::new(),
        false => unknown_ancestors(tracker, element),
    };
    let entry = (!known).then(|| observe::entry(element));
    let ts = since_start_ns();
    let interim = {
        let mut registry = REGISTRY.lock();
        let Some(t) = registry.trackers.get_mut(&tracker) else {
            return;
        };
        t.place(ancestors);
        let fresh = t.add(entry);
        if change.current() == gst::State::Null && change.next() == gst::State::Ready {
            t.start_cycle();
        }
        t.transition(serial, change, result, ts);
        // The bus still delivers at PAUSED->READY: say what is known.
        let interim = (serial == t.serial && change == gst::StateChange::PausedToReady)
            .then(|| (t.interim_report(), Outlet::of(t)));
        drop(registry);
        watch_disposal(tracker, std::slice::from_ref(element), &fresh);
        interim
    };
    if let Some((report, outlet)) = interim {
        outlet.post_report(&report);
    }
}

/// The pipeline went to NULL (tracer mode knows exactly when), or one of its
/// elements reached NULL while the pipeline is on its way there (element
/// mode: the pipeline's own READY->NULL message is lost to its flushing bus).
pub fn cycle_ended(tracker: u64) {
    let Some(patterns) = REGISTRY
        .lock()
        .trackers
        .get(&tracker)
        .map(|t| t.needs_fd_snapshot().then(|| t.settings.patterns.clone()))
    else {
        return;
    };
    // /proc/self/fd once per teardown, not once per element reaching NULL.
    let fds = patterns.map(|patterns| fds::snapshot(&patterns));
    let wake = match REGISTRY.lock().trackers.get_mut(&tracker) {
        Some(t) => t.end_cycle(Instant::now(), fds),
        None => return,
    };
    if let Some(at) = wake {
        worker::schedule(tracker, at);
    }
}

/// An element posted an ERROR in the middle of a state change: element mode
/// sees a failed change this way (a failed change posts no state-changed).
pub fn error_during_change(tracker: u64, element: &gst::Element, error: &str) {
    let (current, pending) = (element.current_state(), element.pending_state());
    if pending == gst::State::VoidPending {
        return;
    }
    let serial = identity::serial(element);
    if let Some(t) = REGISTRY.lock().trackers.get_mut(&tracker) {
        t.failed(serial, current, pending, error);
    }
}

/// Monotonic ns since leakcheck first saw a transition: the transitions' time.
fn since_start_ns() -> u64 {
    static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    START.elapsed().as_nanos() as u64
}

/// The serial of the tracker watching this element's top-level pipeline, if
/// any; in tracer mode every pipeline gets one when first seen.
pub fn tracker_of(element: &gst::Element) -> Option<(u64, gst::Element)> {
    let top = observe::top_level(element);
    let serial = identity::serial(&top);
    let (known, watch_all) = {
        let registry = REGISTRY.lock();
        (registry.trackers.contains_key(&serial), registry.watch_all)
    };
    if known {
        return Some((serial, top));
    }
    if !(watch_all && top.is::<gst::Pipeline>()) || identity::is_gone(&top) {
        return None;
    }
    track(&top, ledger::Settings::default(), None);
    Some((serial, top))
}
