// SPDX-License-Identifier: MPL-2.0
//! Judging a pipeline's ended cycles, and publishing the result.
//!
//! A judgement runs in whichever thread needs it first: the worker at the
//! end of the grace, the application reading `leaks` or `get-report` once
//! the grace has passed, or the thread disposing the pipeline. It claims the
//! cycles under the registry lock, reads live objects with no lock held,
//! merges under the lock again and publishes after releasing it.
//!
//! A reader never waits for a judgement under way in another thread (that
//! thread may need a lock the reader holds, e.g. an object lock around a
//! getter): it judges the same claimed cycles itself, and whichever of the
//! two merges first makes the report; the other drops its own.

use gst::glib;
use gst::prelude::*;
use std::sync::Arc;
use std::time::Instant;

use super::fds;
use super::ledger::{self, Weak};
use super::observe;
use super::registry::REGISTRY;
use super::report::{Finding, Report};

use super::CAT;

/// Who asks for a judgement.
pub enum Demand<'a> {
    /// The worker, at a queued wake-up.
    Wake,
    /// The application, reading the report: judges alongside a judgement
    /// under way in another thread rather than wait for it.
    Ask,
    /// The pipeline is being disposed (given here: its weak reference is
    /// already cleared): judge what is pending now, whatever the grace.
    Dispose(&'a gst::Element),
}

/// What a judging thread took out of the ledger to judge.
struct Claim {
    /// The judgement's number: a merge counts only if none came first.
    number: u64,
    /// Joined a judgement another thread started.
    joined: bool,
    cycles: Arc<Vec<ledger::CycleEnd>>,
    targets: Vec<ledger::Target>,
    session_file: Option<std::path::PathBuf>,
    check_pending: bool,
    pipeline_name: String,
}

/// Judges what is due for one tracker (see the module documentation), and
/// says when the tracker is to be looked at again: the caller schedules it
/// with the worker, which alone keeps the wake-ups.
#[must_use = "the next wake-up must be scheduled"]
pub fn run(tracker: u64, demand: Demand) -> Option<Instant> {
    loop {
        match judge_once(tracker, &demand) {
            // Joined a judgement started elsewhere: what else is due now is
            // this thread's to claim.
            Pass::Joined => continue,
            Pass::Done(wake) => return wake,
        }
    }
}

enum Pass {
    Joined,
    Done(Option<Instant>),
}

fn judge_once(tracker: u64, demand: &Demand) -> Pass {
    let found = REGISTRY.lock().trackers.get(&tracker).map(|t| {
        (
            t.pipeline.clone(),
            t.ended_due(Instant::now()),
            t.settings.patterns.clone(),
        )
    });
    let Some((weak, due, patterns)) = found else {
        return Pass::Done(None);
    };
    let pipeline = match demand {
        Demand::Dispose(top) => Some((*top).clone()),
        _ => weak.upgrade(),
    };
    let settled = match demand {
        Demand::Dispose(_) => true,
        _ => pipeline.as_ref().is_none_or(observe::settled_in_null),
    };
    let force = matches!(demand, Demand::Dispose(_));
    let fds_now = (due && settled).then(|| fds::snapshot(&patterns));
    let claim = match claim(tracker, demand, settled, force, fds_now) {
        Ok(claim) => claim,
        Err(wake) => return Pass::Done(wake),
    };
    gst::debug!(
        CAT,
        "judging {} cycle(s) of {}",
        claim.cycles.len(),
        claim.pipeline_name
    );

    let (observed, _alive) = observe::observe(
        &claim.targets,
        pipeline.as_ref(),
        claim.check_pending,
        force,
        claim.session_file.as_deref(),
        &claim.pipeline_name,
    );
    let (merged, outlet) = match merge(tracker, claim.number, &observed) {
        Some(merged) => merged,
        // Untracked meanwhile: nothing to publish.
        None => return Pass::Done(None),
    };
    let reports = match merged {
        Merged::Won(reports) => reports,
        Merged::Lost(latest) => {
            // Another thread merged first: its report is the one. Written
            // here too (in order, once), so that the file is as current as
            // `get-report` when this returns, whichever thread writes first.
            outlet.write_in_order(&latest);
            return match claim.joined {
                true => Pass::Joined,
                false => Pass::Done(None),
            };
        }
    };
    for (report, _) in &reports {
        outlet.write_in_order(report);
    }
    let wake = REGISTRY
        .lock()
        .trackers
        .get_mut(&tracker)
        .and_then(|t| t.next_wake(Instant::now()));

    for (report, unannounced) in &reports {
        outlet.publish(report, *unannounced);
    }
    // `_alive` and `pipeline` are dropped last, with no lock held and the
    // judgement finished: a last unref may dispose elements in this thread.
    match claim.joined {
        true => Pass::Joined,
        false => Pass::Done(wake),
    }
}

/// Takes the cycles due under the registry lock, or joins a judgement under
/// way in another thread unless the worker asks. When nothing is due: when
/// to look again.
fn claim(
    tracker: u64,
    demand: &Demand,
    settled: bool,
    force: bool,
    fds_now: Option<fds::FdSnapshot>,
) -> Result<Claim, Option<Instant>> {
    let mut registry = REGISTRY.lock();
    let t = registry.trackers.get_mut(&tracker).ok_or(None)?;
    if matches!(demand, Demand::Wake) {
        t.woken();
    }
    let joined = match t.under_way() {
        // The worker leaves a judgement under way to its thread.
        Some(under_way) if !matches!(demand, Demand::Wake) => Some(under_way),
        _ => None,
    };
    let ((number, cycles), joined) = match joined {
        Some(under_way) => (under_way, true),
        None => {
            let cycles = t.claim(Instant::now(), settled, force, fds_now);
            if cycles.is_empty() {
                return Err(t.next_wake(Instant::now()));
            }
            (t.start_judgement(cycles), false)
        }
    };
    Ok(Claim {
        number,
        joined,
        check_pending: cycles.iter().any(|c| !c.restarted),
        cycles,
        targets: t.targets(),
        session_file: t.settings.session_file.clone(),
        pipeline_name: t.name.clone(),
    })
}

/// A judged report and how many of its findings were not announced.
type Judged = (Arc<Report>, usize);

/// How a merge went.
enum Merged {
    /// This thread judged: the reports, to write and publish.
    Won(Vec<Judged>),
    /// Another thread judging the same cycles merged first: the latest report.
    Lost(Arc<Report>),
}

/// Judges the claimed cycles with what was observed, under the lock, unless
/// another thread judged them first; and where to publish.
fn merge(tracker: u64, number: u64, observed: &ledger::Observed) -> Option<(Merged, Outlet)> {
    let mut registry = REGISTRY.lock();
    let t = registry.trackers.get_mut(&tracker)?;
    let merged = match t.finish_judgement(number, observed) {
        Some(reports) => Merged::Won(reports),
        None => Merged::Lost(Arc::clone(&t.report)),
    };
    Some((merged, Outlet::of(t)))
}

/// Where findings go once the registry lock is released.
pub struct Outlet {
    pipeline: Weak,
    watcher: Option<Weak>,
    settings: ledger::Settings,
    written: Arc<parking_lot::Mutex<u32>>,
}

impl Outlet {
    pub fn of(tracker: &ledger::Tracker) -> Self {
        Outlet {
            pipeline: tracker.pipeline.clone(),
            watcher: tracker.watcher.clone(),
            settings: tracker.settings.clone(),
            written: Arc::clone(&tracker.written),
        }
    }

    /// Writes a judged report to `report-file` unless a later one (or this
    /// one) is there already. Two threads judging the same cycles both come
    /// here; the lock is a leaf held for one file write, never with the
    /// registry's, and no GStreamer call is made under it.
    fn write_in_order(&self, report: &Report) {
        let mut written = self.written.lock();
        if report.cycles > *written {
            write_report_file(self.settings.report_file.as_deref(), report);
            *written = report.cycles;
        }
    }

    fn source(&self) -> Option<gst::Element> {
        self.watcher
            .as_ref()
            .and_then(|w| w.upgrade())
            .or_else(|| self.pipeline.upgrade())
    }

    /// A WARNING (or with fail-on-leak an ERROR) on the bus, if it delivers.
    pub fn post_finding(&self, finding: &Finding) -> bool {
        gst::warning!(CAT, "{}", finding.describe());
        let Some(src) = self.source() else {
            return false;
        };
        let text = format!("leakcheck: {}", finding.describe());
        let msg = if self.settings.fail_on_leak {
            gst::message::Error::builder(gst::CoreError::StateChange, &text)
                .src(&src)
                .build()
        } else {
            gst::message::Warning::builder(gst::CoreError::StateChange, &text)
                .src(&src)
                .build()
        };
        src.post_message(msg).is_ok()
    }

    pub fn post_report(&self, report: &Report) {
        if let Some(src) = self.source() {
            let _ = src.post_message(
                gst::message::Element::builder(report.to_structure())
                    .src(&src)
                    .build(),
            );
        }
    }

    /// A judged report (its file already written): log, property
    /// notification, and fail-on-leak for the findings not already
    /// delivered as they happened.
    pub fn publish(&self, report: &Report, unannounced: usize) {
        for finding in &report.findings {
            gst::warning!(CAT, "{}: {}", report.pipeline, finding.describe());
        }
        gst::info!(
            CAT,
            "{}: cycle {} judged, {} finding(s)",
            report.pipeline,
            report.cycles,
            report.findings.len()
        );
        if let Some(watcher) = self.watcher.as_ref().and_then(|w| w.upgrade()) {
            watcher.notify("leaks");
        }
        if self.settings.fail_on_leak && unannounced > 0 {
            self.fail(report);
        }
    }

    fn fail(&self, report: &Report) {
        // After READY->NULL the pipeline's bus is flushing: an ERROR would be lost.
        let text = format!(
            "leakcheck: {} finding(s) in {}",
            report.findings.len(),
            report.pipeline
        );
        let delivered = self.source().is_some_and(|src| {
            src.post_message(
                gst::message::Error::builder(gst::CoreError::StateChange, &text)
                    .src(&src)
                    .build(),
            )
            .is_ok()
        });
        if !delivered {
            glib::g_critical!(
                "leakcheck",
                "{} finding(s) in {}: {}",
                report.findings.len(),
                report.pipeline,
                report
                    .findings
                    .iter()
                    .map(Finding::describe)
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
    }
}

/// Writes the report as JSON, whole or not at all: a reader never sees a
/// half-written file (written beside it, then renamed over it).
pub fn write_report_file(path: Option<&std::path::Path>, report: &Report) {
    let Some(path) = path else {
        return;
    };
    if let Err(err) = crate::atomic_file::write(path, report.to_json().as_bytes()) {
        gst::error!(CAT, "report-file {}: {err}", path.display());
    }
}
