// SPDX-License-Identifier: MPL-2.0
//! The transition ledger of one top-level pipeline: every element seen in it,
//! its state transitions, what happened to it, and the judgement made when the
//! pipeline is back in NULL.

use gst::glib;
use gst::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use super::fds::{self, FdSnapshot};
use super::patterns::DevicePatterns;
use super::report::{ElementEntry, ElementId, Finding, Report};

/// Transitions kept per element: enough to see a cycle or two, bounded so a
/// pipeline that runs for months does not grow.
const TRANSITIONS_KEPT: usize = 16;
/// Cycles looked at for growth.
const GROWTH_WINDOW: usize = 5;

#[derive(Debug, Clone)]
pub struct Settings {
    pub patterns: DevicePatterns,
    pub grace: gst::ClockTime,
    pub fail_on_leak: bool,
    pub report_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            patterns: DevicePatterns::default(),
            grace: gst::ClockTime::SECOND,
            fail_on_leak: false,
            report_file: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Transition {
    pub change: gst::StateChange,
    pub result: String,
    /// Tracer timestamp (ns since tracing started).
    pub ts: u64,
}

#[derive(Debug)]
pub struct ElementRecord {
    pub weak: glib::WeakRef<gst::Element>,
    pub id: ElementId,
    pub removed: bool,
    /// Removed in READY: judged after the grace, since bins commonly remove
    /// a child in READY and set it to NULL right after.
    pub removed_in_ready: bool,
    pub transitions: VecDeque<Transition>,
}

pub fn element_id(element: &gst::Element) -> ElementId {
    let factory = element.factory();
    ElementId {
        name: element.name().to_string(),
        path: element.path_string().to_string(),
        factory: factory.as_ref().map_or_else(
            || element.type_().name().to_string(),
            |f| f.name().to_string(),
        ),
        klass: factory
            .and_then(|f| f.metadata(gst::ELEMENT_METADATA_KLASS).map(str::to_string))
            .unwrap_or_default(),
    }
}

pub fn state_name(state: gst::State) -> String {
    match state {
        gst::State::VoidPending => "void-pending",
        gst::State::Null => "null",
        gst::State::Ready => "ready",
        gst::State::Paused => "paused",
        gst::State::Playing => "playing",
    }
    .to_string()
}

/// Whether a series of per-cycle counts keeps growing: over the last
/// GROWTH_WINDOW cycles it never went down and went up at least 3 times.
pub fn is_growing(series: &[u32]) -> bool {
    if series.len() < GROWTH_WINDOW {
        return false;
    }
    let window = &series[series.len() - GROWTH_WINDOW..];
    let steps = window.windows(2);
    steps.clone().all(|w| w[1] >= w[0]) && steps.filter(|w| w[1] > w[0]).count() >= 3
}

fn key(element: &gst::Element) -> usize {
    element.as_ptr() as usize
}

/// What one top-level pipeline has been through.
#[derive(Debug)]
pub struct Tracker {
    pub pipeline: glib::WeakRef<gst::Element>,
    pub name: String,
    pub settings: Settings,
    /// The leakcheck element that reports for this pipeline, if any.
    pub watcher: Option<glib::WeakRef<gst::Element>>,
    elements: HashMap<usize, ElementRecord>,
    /// Between the first NULL->READY and the pipeline's READY->NULL.
    pub running: bool,
    fds_before: FdSnapshot,
    /// Findings made while the pipeline runs (removals, failures).
    pending: Vec<Finding>,
    live_per_cycle: Vec<u32>,
    fds_per_cycle: Vec<u32>,
    pub report: Report,
}

impl Tracker {
    pub fn new(pipeline: &gst::Element, settings: Settings) -> Self {
        let mut tracker = Tracker {
            pipeline: pipeline.downgrade(),
            name: pipeline.name().to_string(),
            fds_before: fds::snapshot(&settings.patterns),
            settings,
            watcher: None,
            elements: HashMap::new(),
            running: false,
            pending: Vec::new(),
            live_per_cycle: Vec::new(),
            fds_per_cycle: Vec::new(),
            report: Report::default(),
        };
        tracker.report.pipeline = tracker.name.clone();
        tracker
    }

    /// Records an element and, for a bin, everything inside it (catching up on
    /// what existed before leakcheck looked).
    pub fn add(&mut self, element: &gst::Element) {
        for e in with_descendants(element) {
            self.add_one(&e);
        }
    }

    fn add_one(&mut self, element: &gst::Element) {
        let k = key(element);
        // An address can be reused once an object is gone: replace dead records.
        let stale = self
            .elements
            .get(&k)
            .is_some_and(|r| r.weak.upgrade().as_ref() != Some(element));
        if stale || !self.elements.contains_key(&k) {
            self.elements.insert(
                k,
                ElementRecord {
                    weak: element.downgrade(),
                    id: element_id(element),
                    removed: false,
                    removed_in_ready: false,
                    transitions: VecDeque::new(),
                },
            );
        } else if let Some(record) = self.elements.get_mut(&k) {
            // Re-added after a removal: it belongs to the pipeline again.
            record.removed = false;
            record.removed_in_ready = false;
            record.id = element_id(element);
        }
    }

    pub fn starting(&mut self) {
        if !self.running {
            self.running = true;
            self.fds_before = fds::snapshot(&self.settings.patterns);
        }
    }

    pub fn transition(
        &mut self,
        element: &gst::Element,
        change: gst::StateChange,
        result: Result<gst::StateChangeSuccess, gst::StateChangeError>,
        ts: u64,
    ) {
        if !self.elements.contains_key(&key(element)) {
            self.add(element);
        }
        let result_name = match result {
            Ok(gst::StateChangeSuccess::Success) => "success",
            Ok(gst::StateChangeSuccess::Async) => "async",
            Ok(gst::StateChangeSuccess::NoPreroll) => "no-preroll",
            Err(_) => "failure",
        };
        if let Some(record) = self.elements.get_mut(&key(element)) {
            if record.transitions.len() == TRANSITIONS_KEPT {
                record.transitions.pop_front();
            }
            record.transitions.push_back(Transition {
                change,
                result: result_name.to_string(),
                ts,
            });
            if result.is_err() {
                self.pending.push(Finding::StateChange {
                    element: record.id.clone(),
                    transition: format!(
                        "{}->{}",
                        state_name(change.current()),
                        state_name(change.next())
                    ),
                    result: "failed".into(),
                });
            }
        }
    }

    /// An element leaves the pipeline. Returns the finding when it leaves while
    /// PAUSED or PLAYING; one left in READY is judged after the grace.
    pub fn removing(&mut self, element: &gst::Element) -> Option<Finding> {
        let state = element.current_state();
        for e in with_descendants(element) {
            self.add_one(&e);
            if let Some(record) = self.elements.get_mut(&key(&e)) {
                record.removed = true;
                record.removed_in_ready = e == *element && state == gst::State::Ready;
            }
        }
        if state < gst::State::Paused {
            return None;
        }
        let finding = Finding::RemovedAboveNull {
            element: element_id(element),
            state: state_name(state),
        };
        self.pending.push(finding.clone());
        Some(finding)
    }

    /// Findings known while the pipeline still runs: for the report posted at
    /// PAUSED->READY, when the bus still delivers.
    pub fn interim_report(&self) -> Report {
        let mut report = self.report.clone();
        report.findings.extend(self.pending.iter().cloned());
        report
    }

    /// Judges a cycle: the pipeline has been in NULL for `grace`.
    pub fn judge(&mut self) -> Report {
        self.running = false;
        let pipeline = self.pipeline.upgrade();
        let mut findings = std::mem::take(&mut self.pending);
        let owned = self.held_by_properties(pipeline.as_ref());
        let mut elements = Vec::new();
        let mut live = 0u32;
        self.elements.retain(|_, record| {
            let Some(element) = record.weak.upgrade() else {
                return false;
            };
            live += 1;
            if pipeline.as_ref() == Some(&element) {
                return true;
            }
            let state = element.current_state();
            let in_pipeline =
                pipeline.as_ref().is_some_and(|p| is_inside(&element, p)) && !record.removed;
            // Keep the id's path current: it may have moved or been renamed.
            if in_pipeline {
                record.id = element_id(&element);
            }
            elements.push(ElementEntry {
                id: record.id.clone(),
                state: state_name(state),
                transitions: record
                    .transitions
                    .iter()
                    .map(|t| {
                        (
                            state_name(t.change.current()),
                            state_name(t.change.next()),
                            t.result.clone(),
                            t.ts,
                        )
                    })
                    .collect(),
            });
            if in_pipeline && state != gst::State::Null {
                findings.push(Finding::NotNull {
                    element: record.id.clone(),
                    state: state_name(state),
                });
            }
            if record.removed_in_ready && state != gst::State::Null {
                findings.push(Finding::RemovedAboveNull {
                    element: record.id.clone(),
                    state: state_name(gst::State::Ready),
                });
            }
            // An element the pipeline keeps as a property value (playbin's
            // video-sink) is held on purpose.
            if !in_pipeline && !owned.contains(&key(&element)) {
                // Our upgrade holds one reference: the rest are someone else's.
                findings.push(Finding::StillAlive {
                    element: record.id.clone(),
                    refcount: element.ref_count().saturating_sub(1),
                });
            }
            if element.pending_state() != gst::State::VoidPending {
                findings.push(Finding::StateChange {
                    element: record.id.clone(),
                    transition: format!(
                        "{}->{}",
                        state_name(state),
                        state_name(element.pending_state())
                    ),
                    result: "still pending after grace".into(),
                });
            }
            true
        });
        elements.sort_by(|a, b| a.id.path.cmp(&b.id.path));

        let after = fds::snapshot(&self.settings.patterns);
        for (fd, target) in fds::opened_since(&self.fds_before, &after) {
            findings.push(Finding::DeviceHandle { fd, target });
        }
        self.live_per_cycle.push(live);
        self.fds_per_cycle.push(after.len() as u32);
        for (what, series) in [
            ("live elements", &self.live_per_cycle),
            ("device handles", &self.fds_per_cycle),
        ] {
            if is_growing(series) {
                let from = series.len().saturating_sub(2 * GROWTH_WINDOW);
                findings.push(Finding::Growth {
                    what: what.into(),
                    per_cycle: series[from..].to_vec(),
                });
            }
        }
        // The handles left now are the baseline of the next cycle.
        self.fds_before = after;

        self.report = Report {
            pipeline: self.name.clone(),
            cycles: self.report.cycles + 1,
            elements,
            findings,
        };
        self.report.clone()
    }
}

impl Tracker {
    /// Elements that the pipeline's own elements hold as object properties.
    fn held_by_properties(
        &self,
        pipeline: Option<&gst::Element>,
    ) -> std::collections::HashSet<usize> {
        let mut owned = std::collections::HashSet::new();
        let Some(pipeline) = pipeline else {
            return owned;
        };
        for holder in with_descendants(pipeline) {
            for pspec in holder.list_properties() {
                if pspec.flags().contains(glib::ParamFlags::READABLE)
                    && pspec.value_type().is_a(gst::Element::static_type())
                    && let Ok(Some(value)) = holder
                        .property_value(pspec.name())
                        .get::<Option<gst::Element>>()
                {
                    owned.insert(key(&value));
                }
            }
        }
        owned
    }
}

/// The element and, for a bin, every element inside it, walked once.
fn with_descendants(element: &gst::Element) -> Vec<gst::Element> {
    let mut all = vec![element.clone()];
    if let Some(bin) = element.downcast_ref::<gst::Bin>() {
        all.extend(bin.iterate_recurse().into_iter().flatten());
    }
    all
}

fn is_inside(element: &gst::Element, ancestor: &gst::Element) -> bool {
    let mut current = element.parent();
    while let Some(parent) = current {
        if std::ptr::eq(parent.as_ptr() as *const (), ancestor.as_ptr() as *const ()) {
            return true;
        }
        current = parent.parent();
    }
    false
}

/// The top-level object above an element (itself when it has no parent).
pub fn top_level(element: &gst::Element) -> gst::Element {
    let mut top = element.clone();
    while let Some(parent) = top.parent().and_then(|p| p.downcast::<gst::Element>().ok()) {
        top = parent;
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_needs_a_steady_rise() {
        assert!(!is_growing(&[1, 2, 3, 4]));
        assert!(is_growing(&[1, 2, 3, 4, 5]));
        assert!(is_growing(&[7, 7, 8, 9, 10]));
        assert!(!is_growing(&[5, 5, 5, 5, 5]));
        // One lazily created object is not a leak.
        assert!(!is_growing(&[5, 6, 6, 6, 6]));
        assert!(!is_growing(&[1, 2, 3, 2, 3]));
        assert!(is_growing(&(0..50).collect::<Vec<_>>()));
    }
}
