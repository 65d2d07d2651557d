// SPDX-License-Identifier: MPL-2.0
//! Judging a pipeline's ended cycles, and publishing the result.
//!
//! A judgement runs in whichever thread needs it first: the worker at the
//! end of the grace, the application reading `leaks` or `get-report` once
//! the grace has passed, or the thread disposing the pipeline. It claims the
//! cycles under the registry lock, reads live objects with no lock held,
//! merges under the lock again and publishes after releasing it.

use gst::glib;
use gst::prelude::*;
use std::sync::Arc;
use std::time::Instant;

use super::fds;
use super::ledger::{self, Weak};
use super::observe;
use super::registry::{JUDGED, REGISTRY};
use super::report::{Finding, Report};

use super::CAT;

/// The longest a report reader waits for a judgement under way elsewhere.
const JUDGED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Who asks for a judgement.
pub enum Demand<'a> {
    /// The worker, at a queued wake-up.
    Wake,
    /// The application, reading the report: waits for a judgement under way.
    Ask,
    /// The pipeline is being disposed (given here: its weak reference is
    /// already cleared): judge what is pending now, whatever the grace.
    Dispose(&'a gst::Element),
}

/// What a judging thread took out of the ledger to judge.
struct Claim {
    cycles: Vec<ledger::CycleEnd>,
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
    let (weak, due, patterns) = REGISTRY.lock().trackers.get(&tracker).map(|t| {
        (
            t.pipeline.clone(),
            t.ended_due(Instant::now()),
            t.settings.patterns.clone(),
        )
    })?;
    let pipeline = match demand {
        Demand::Dispose(top) => Some(top.clone()),
        _ => weak.upgrade(),
    };
    let settled = match demand {
        Demand::Dispose(_) => true,
        _ => pipeline.as_ref().is_none_or(observe::settled_in_null),
    };
    let force = matches!(demand, Demand::Dispose(_));
    let fds_now = (due && settled).then(|| fds::snapshot(&patterns));
    let claim = match claim(tracker, &demand, settled, force, fds_now) {
        Ok(claim) => claim,
        Err(wake) => return wake,
    };

    let (observed, _alive) = observe::observe(
        &claim.targets,
        pipeline.as_ref(),
        claim.check_pending,
        force,
        claim.session_file.as_deref(),
        &claim.pipeline_name,
    );
    let Some((reports, outlet)) = merge(tracker, claim.cycles, &observed) else {
        // Untracked meanwhile: nothing to publish, but nobody may wait on it.
        JUDGED.notify_all();
        return None;
    };
    // The file is written before the judgement counts as finished: a reader
    // whose `get-report` waited for it finds the file as current.
    for (report, _) in &reports {
        write_report_file(outlet.settings.report_file.as_deref(), report);
    }
    let wake = match REGISTRY.lock().trackers.get_mut(&tracker) {
        Some(t) => {
            t.judging = false;
            t.next_wake(Instant::now())
        }
        None => None,
    };
    JUDGED.notify_all();

    for (report, unannounced) in &reports {
        outlet.publish(report, *unannounced);
    }
    // `_alive` and `pipeline` are dropped last, with no lock held and the
    // judgement finished: a last unref may dispose elements in this thread.
    wake
}

/// Takes the cycles due under the registry lock, waiting (bounded) for a
/// judgement under way in another thread unless the worker asks. When
/// nothing is due: when to look again.
fn claim(
    tracker: u64,
    demand: &Demand,
    settled: bool,
    force: bool,
    fds_now: Option<fds::FdSnapshot>,
) -> Result<Claim, Option<Instant>> {
    let mut registry = REGISTRY.lock();
    loop {
        let t = registry.trackers.get_mut(&tracker).ok_or(None)?;
        if matches!(demand, Demand::Wake) {
            t.woken();
        }
        if t.judging && !matches!(demand, Demand::Wake) {
            // Another thread is judging: its report is the one to return.
            // Bounded, so that a caller holding a lock the judgement needs
            // (a getter called from a sync handler) is delayed, never hung.
            if JUDGED.wait_for(&mut registry, JUDGED_WAIT).timed_out() {
                return Err(None);
            }
            continue;
        }
        let cycles = t.claim(Instant::now(), settled, force, fds_now.clone());
        if cycles.is_empty() {
            return Err(t.next_wake(Instant::now()));
        }
        return Ok(Claim {
            check_pending: cycles.iter().any(|c| !c.restarted),
            cycles,
            targets: t.targets(),
            session_file: t.settings.session_file.clone(),
            pipeline_name: t.name.clone(),
        });
    }
}

/// A judged report and how many of its findings were not announced.
type Judged = (Arc<Report>, usize);

/// Judges the claimed cycles with what was observed, under the lock: the
/// reports, each with how many of its findings were not announced, and
/// where to publish them.
fn merge(
    tracker: u64,
    cycles: Vec<ledger::CycleEnd>,
    observed: &ledger::Observed,
) -> Option<(Vec<Judged>, Outlet)> {
    let mut registry = REGISTRY.lock();
    let t = registry.trackers.get_mut(&tracker)?;
    let reports = cycles
        .into_iter()
        .map(|c| (t.judge(c, observed), t.unannounced()))
        .collect();
    Some((reports, Outlet::of(t)))
}

/// Where findings go once the registry lock is released.
pub struct Outlet {
    pipeline: Weak,
    watcher: Option<Weak>,
    settings: ledger::Settings,
}

impl Outlet {
    pub fn of(tracker: &ledger::Tracker) -> Self {
        Outlet {
            pipeline: tracker.pipeline.clone(),
            watcher: tracker.watcher.clone(),
            settings: tracker.settings.clone(),
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
