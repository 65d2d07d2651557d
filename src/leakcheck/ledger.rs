// SPDX-License-Identifier: MPL-2.0
//! The transition ledger of one top-level pipeline: every element seen in it,
//! its recorded state and transitions, what happened to it, and the judgement
//! of each PLAYING..NULL cycle.
//!
//! Plain data only. The ledger lives under the registry lock, so nothing here
//! calls into GStreamer or GObject: what must be read from live objects is
//! read outside the lock by `observe` and handed in as `Sighting`s and
//! `Observed`. The only GLib objects kept are weak references, which are
//! stored, cloned (as `Arc`s) and dropped here: that never runs object code.

use gst::glib;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fds::{self, FdSnapshot};
use super::paths::{Node, Nodes};
use super::patterns::DevicePatterns;
use super::report::{ElementEntry, ElementId, Finding, Report};
use crate::vpu::listing::SessionRecord;

/// Transitions kept per element: enough to see a cycle or two, bounded so a
/// pipeline that runs for months does not grow.
const TRANSITIONS_KEPT: usize = 16;
/// Cycles looked at for growth.
const GROWTH_WINDOW: usize = 5;
/// A pipeline whose state change to NULL has not finished this long after the
/// grace is judged as it is: its elements' recorded states say what is stuck.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

pub type Weak = Arc<glib::WeakRef<gst::Element>>;

#[derive(Debug, Clone)]
pub struct Settings {
    pub patterns: DevicePatterns,
    pub grace: gst::ClockTime,
    pub fail_on_leak: bool,
    pub report_file: Option<PathBuf>,
    /// The MPP session listing; None tries the kernel's default paths.
    pub session_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            patterns: DevicePatterns::default(),
            grace: gst::ClockTime::SECOND,
            fail_on_leak: false,
            report_file: None,
            session_file: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Transition {
    pub change: gst::StateChange,
    pub result: &'static str,
    /// Monotonic time of the transition, in ns.
    pub ts: u64,
}

/// An element as read from the live object, outside the lock.
#[derive(Debug, Clone)]
pub struct Entry {
    pub serial: u64,
    pub weak: Weak,
    /// Its name, type and parent: its path is built from these links.
    pub node: Node,
    /// Shared by every element of the factory (see `observe::interned`).
    pub factory: Arc<str>,
    pub klass: Arc<str>,
    pub state: gst::State,
}

#[derive(Debug)]
struct ElementRecord {
    weak: Weak,
    /// Where it is, as its own name and a link to its parent, is in the
    /// tracker's `nodes`: a full path is as long as the element is deep.
    factory: Arc<str>,
    klass: Arc<str>,
    /// The state its last transition reached.
    state: gst::State,
    /// Cleared by a weak-reference notification when the element is disposed.
    alive: bool,
    removed: bool,
    /// Removed in READY: judged after the grace, since bins commonly remove
    /// a child in READY and set it to NULL right after.
    removed_in_ready: bool,
    transitions: VecDeque<Transition>,
}

/// An element's standing when its pipeline's cycle ended.
#[derive(Debug, Clone)]
struct Standing {
    serial: u64,
    state: gst::State,
    removed: bool,
    removed_in_ready: bool,
}

/// A cycle that ended (the pipeline went to NULL) and awaits its judgement.
#[derive(Debug)]
pub struct CycleEnd {
    deadline: Instant,
    standings: Vec<Standing>,
    live: u32,
    fds: FdSnapshot,
    /// The pipeline started again before the judgement: what is live now
    /// belongs to the next cycle, so pending state changes are not looked at.
    pub restarted: bool,
}

/// What the judging thread read from live objects, outside the lock.
#[derive(Debug, Default)]
pub struct Observed {
    /// Alive elements' reference counts, not counting the observer's own.
    pub refcounts: HashMap<u64, u32>,
    /// Alive elements' states now. They are what a settled pipeline is
    /// judged on: transitions made once its bus flushes (after its own
    /// READY->NULL) post nothing, and removed elements post elsewhere.
    pub states: HashMap<u64, gst::State>,
    /// Elements whose state change is still pending: (current, pending).
    pub pending: HashMap<u64, (gst::State, gst::State)>,
    /// The pipeline's new name, when it no longer has the one the tracker
    /// knows (its name begins every path).
    pub renamed: Option<String>,
    /// Elements that the pipeline's elements hold as object properties.
    pub owned: HashSet<u64>,
    /// Where each element inside the pipeline came in one walk of it
    /// (parents before their children): the report's order.
    pub order: HashMap<u64, usize>,
    /// Elements not marked removed that are no longer inside the pipeline
    /// (taken out in a way no signal reported, e.g. by the pipeline's own
    /// teardown after its children reached NULL): judged as removed.
    pub outside: HashSet<u64>,
    /// This process's VPU sessions now, if a listing could be read.
    pub sessions: Option<Vec<SessionRecord>>,
    /// Live objects were read (false at process exit, where the ledger alone
    /// judges).
    pub judged_live: bool,
}

/// An element to observe: its serial, its weak reference, whether removed.
pub struct Target {
    pub serial: u64,
    pub weak: Weak,
    pub removed: bool,
}

pub fn state_name(state: gst::State) -> String {
    state_str(state).to_string()
}

/// A report entry names states by these, not by allocated strings: a
/// judgement lists every element's last transitions.
fn state_str(state: gst::State) -> &'static str {
    match state {
        gst::State::VoidPending => "void-pending",
        gst::State::Null => "null",
        gst::State::Ready => "ready",
        gst::State::Paused => "paused",
        gst::State::Playing => "playing",
    }
}

pub fn transition_name(from: gst::State, to: gst::State) -> String {
    format!("{}->{}", state_name(from), state_name(to))
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

/// What one top-level pipeline has been through.
#[derive(Debug)]
pub struct Tracker {
    /// The pipeline's serial (see `identity`).
    pub serial: u64,
    pub pipeline: Weak,
    pub name: String,
    pub settings: Settings,
    /// The leakcheck element that reports for this pipeline, if any.
    pub watcher: Option<Weak>,
    elements: HashMap<u64, ElementRecord>,
    /// Where every element is (and the ancestors their paths go through).
    nodes: Nodes,
    /// Between the first NULL->READY and the end of the cycle.
    running: bool,
    ended: Option<CycleEnd>,
    /// Ended cycles whose pipeline started again before they were judged.
    restarted: VecDeque<CycleEnd>,
    /// A thread is judging: it has claimed cycles and will merge them.
    pub judging: bool,
    /// The claimed cycles, shared with readers that come meanwhile: a reader
    /// judges them too rather than wait, and the first to merge wins.
    under_way: Option<(u64, Arc<Vec<CycleEnd>>)>,
    /// Numbers the judgements, so that a merge knows whether its is done.
    judgements: u64,
    /// The cycle count of the report last written to `report-file`.
    pub written: Arc<parking_lot::Mutex<u32>>,
    /// The pipeline is being disposed: its last judgement is made.
    pub disposing: bool,
    /// A worker wake-up is queued for this tracker.
    wake_queued: bool,
    fds_before: FdSnapshot,
    sessions_before: Vec<SessionRecord>,
    /// Findings made while the pipeline runs (removals, failures).
    pending: Vec<Finding>,
    /// Pending findings already delivered on the bus when they happened.
    announced: Vec<Finding>,
    live_per_cycle: Vec<u32>,
    fds_per_cycle: Vec<u32>,
    /// Shared with readers and publishers: a judgement or an interim report
    /// hands out the same one, never a copy of every element's transitions.
    pub report: Arc<Report>,
}

impl Tracker {
    pub fn new(
        serial: u64,
        pipeline: Weak,
        name: String,
        settings: Settings,
        fds_before: FdSnapshot,
        sessions_before: Vec<SessionRecord>,
    ) -> Self {
        Tracker {
            serial,
            pipeline,
            report: Arc::new(Report {
                pipeline: name.clone(),
                ..Report::default()
            }),
            name,
            settings,
            watcher: None,
            elements: HashMap::new(),
            nodes: Nodes::default(),
            running: false,
            ended: None,
            restarted: VecDeque::new(),
            judging: false,
            under_way: None,
            judgements: 0,
            written: Arc::default(),
            disposing: false,
            wake_queued: false,
            fds_before,
            sessions_before,
            pending: Vec::new(),
            announced: Vec::new(),
            live_per_cycle: Vec::new(),
            fds_per_cycle: Vec::new(),
        }
    }

    pub fn knows(&self, serial: u64) -> bool {
        self.elements.contains_key(&serial)
    }

    /// Whether an element's place is known (an element tracked, or an
    /// ancestor of one).
    pub fn knows_place(&self, serial: u64) -> bool {
        self.nodes.contains(serial)
    }

    /// Records the places of ancestors not known before, that the paths of
    /// elements about to be added go through.
    pub fn place(&mut self, ancestors: impl IntoIterator<Item = (u64, Node)>) {
        for (serial, node) in ancestors {
            self.nodes.set_if_unknown(serial, node);
        }
    }

    /// Records elements, and where they are now; returns the serials seen for
    /// the first time, whose disposal the caller must watch.
    pub fn add(&mut self, entries: impl IntoIterator<Item = Entry>) -> Vec<u64> {
        let mut fresh = Vec::new();
        for entry in entries {
            self.nodes.set(entry.serial, entry.node);
            match self.elements.get_mut(&entry.serial) {
                Some(record) => {
                    // Re-added after a removal: it belongs to the pipeline again.
                    record.removed = false;
                    record.removed_in_ready = false;
                }
                None => {
                    fresh.push(entry.serial);
                    self.elements.insert(
                        entry.serial,
                        ElementRecord {
                            weak: entry.weak,
                            factory: entry.factory,
                            klass: entry.klass,
                            state: entry.state,
                            alive: true,
                            removed: false,
                            removed_in_ready: false,
                            transitions: VecDeque::new(),
                        },
                    );
                }
            }
        }
        fresh
    }

    /// Records only the elements not seen before (a removal keeps the places
    /// recorded while the elements were still inside the pipeline).
    pub fn add_if_unknown(&mut self, entries: impl IntoIterator<Item = Entry>) -> Vec<u64> {
        let unknown: Vec<Entry> = entries
            .into_iter()
            .filter(|e| !self.elements.contains_key(&e.serial))
            .collect();
        self.add(unknown)
    }

    pub fn mark_dead(&mut self, serial: u64) {
        if let Some(record) = self.elements.get_mut(&serial) {
            record.alive = false;
        }
    }

    /// The first element leaving NULL starts a cycle; an ended cycle not yet
    /// judged keeps the standings it ended with.
    pub fn start_cycle(&mut self) {
        if self.running {
            return;
        }
        self.running = true;
        if let Some(mut ended) = self.ended.take() {
            ended.restarted = true;
            self.restarted.push_back(ended);
        }
    }

    pub fn transition(
        &mut self,
        serial: u64,
        change: gst::StateChange,
        result: &'static str,
        ts: u64,
    ) {
        let Some(record) = self.elements.get_mut(&serial) else {
            return;
        };
        if result != "failure" {
            record.state = change.next();
        }
        if record.transitions.len() == TRANSITIONS_KEPT {
            record.transitions.pop_front();
        }
        record
            .transitions
            .push_back(Transition { change, result, ts });
        if result == "failure" {
            let finding = Finding::StateChange {
                element: element_id(&self.nodes, serial, record),
                transition: transition_name(change.current(), change.next()),
                result: "failed".into(),
            };
            self.pending.push(finding);
        }
    }

    /// A state change that failed with an ERROR from the element (element
    /// mode sees failures that way: a failed change posts no state-changed).
    pub fn failed(&mut self, serial: u64, from: gst::State, to: gst::State, error: &str) {
        if let Some(record) = self.elements.get(&serial) {
            let finding = Finding::StateChange {
                element: element_id(&self.nodes, serial, record),
                transition: transition_name(from, to),
                result: format!("failed: {error}"),
            };
            if !self.pending.contains(&finding) {
                self.pending.push(finding);
            }
        }
    }

    /// Whether the handles open now are still to be read for the cycle
    /// ending: only at its first end. Later calls of the same teardown keep
    /// that snapshot (the judgement reads the handles again when it is due);
    /// a restart opens a new cycle.
    pub fn needs_fd_snapshot(&self) -> bool {
        self.running || self.ended.is_none()
    }

    /// The pipeline went (or is going) to NULL: its elements' standings now
    /// are what the cycle is judged on. Each element reaching NULL during the
    /// teardown calls this again, so the last one wins; `fds` None keeps the
    /// handles read at the first call. Returns when to wake the worker,
    /// unless a wake-up is queued already.
    pub fn end_cycle(&mut self, now: Instant, fds: Option<FdSnapshot>) -> Option<Instant> {
        let fds = fds
            .or_else(|| self.ended.as_ref().map(|end| end.fds.clone()))
            .unwrap_or_default();
        self.running = false;
        let deadline = now + Duration::from(self.settings.grace);
        let standings = self.standings();
        self.ended = Some(CycleEnd {
            deadline,
            live: standings.len() as u32,
            standings,
            fds,
            restarted: false,
        });
        self.queue_wake(deadline)
    }

    fn standings(&self) -> Vec<Standing> {
        self.elements
            .iter()
            .filter(|(_, r)| r.alive)
            .map(|(serial, r)| Standing {
                serial: *serial,
                state: r.state,
                removed: r.removed,
                removed_in_ready: r.removed_in_ready,
            })
            .collect()
    }

    /// Whether the ended cycle's grace has passed (the judging thread then
    /// reads the handles open now, for `claim`).
    pub fn ended_due(&self, now: Instant) -> bool {
        self.ended.as_ref().is_some_and(|end| end.deadline <= now)
    }

    fn queue_wake(&mut self, at: Instant) -> Option<Instant> {
        if self.wake_queued {
            return None;
        }
        self.wake_queued = true;
        Some(at)
    }

    /// The queued worker wake-up is being served.
    pub fn woken(&mut self) {
        self.wake_queued = false;
    }

    /// When the worker must look again: at the ended cycle's deadline, or
    /// shortly while the pipeline is still settling into NULL.
    pub fn next_wake(&mut self, now: Instant) -> Option<Instant> {
        let deadline = self.ended.as_ref()?.deadline;
        let at = if deadline > now {
            deadline
        } else {
            now + Duration::from_millis(10)
        };
        self.queue_wake(at)
    }

    /// Takes the cycles ready to be judged: every restarted one, and the
    /// ended one once its grace has passed and the pipeline has settled in
    /// NULL (or at once, with `force`: the pipeline is being disposed).
    /// Nothing while another thread is judging.
    ///
    /// A pipeline that settled in NULL without starting again is judged as it
    /// is now: its own teardown may have removed or released elements after
    /// the last of them reached NULL. `fds_now` are the handles open now.
    pub fn claim(
        &mut self,
        now: Instant,
        settled: bool,
        force: bool,
        fds_now: Option<FdSnapshot>,
    ) -> Vec<CycleEnd> {
        if self.judging {
            return Vec::new();
        }
        let mut cycles: Vec<CycleEnd> = self.restarted.drain(..).collect();
        let due = self.ended.as_ref().is_some_and(|end| {
            force || (end.deadline <= now && (settled || end.deadline + SETTLE_LIMIT <= now))
        });
        if due && let Some(mut end) = self.ended.take() {
            if settled && !self.running {
                end.standings = self.standings();
                end.live = end.standings.len() as u32;
                end.fds = fds_now.unwrap_or(end.fds);
            }
            cycles.push(end);
        }
        self.judging = !cycles.is_empty();
        cycles
    }

    /// Every cycle not yet judged, whatever its grace: at process exit.
    pub fn claim_all(&mut self) -> Vec<CycleEnd> {
        if self.judging {
            return Vec::new();
        }
        let mut cycles: Vec<CycleEnd> = self.restarted.drain(..).collect();
        cycles.extend(self.ended.take());
        cycles
    }

    /// Starts judging claimed cycles: the judgement's number, and the cycles
    /// shared with readers that come before it is merged.
    pub fn start_judgement(&mut self, cycles: Vec<CycleEnd>) -> (u64, Arc<Vec<CycleEnd>>) {
        self.judgements += 1;
        let cycles = Arc::new(cycles);
        self.under_way = Some((self.judgements, Arc::clone(&cycles)));
        (self.judgements, cycles)
    }

    /// The judgement under way in another thread, to judge alongside it.
    pub fn under_way(&self) -> Option<(u64, Arc<Vec<CycleEnd>>)> {
        self.under_way.clone()
    }

    /// Merges judgement `number` with what was observed: its reports, each
    /// with how many of its findings were not announced; None when another
    /// thread judging the same cycles merged first.
    pub fn finish_judgement(
        &mut self,
        number: u64,
        observed: &Observed,
    ) -> Option<Vec<(Arc<Report>, usize)>> {
        let (_, cycles) = self.under_way.take_if(|(n, _)| *n == number)?;
        self.judging = false;
        Some(
            cycles
                .iter()
                .map(|cycle| (self.judge(cycle, observed), self.unannounced()))
                .collect(),
        )
    }

    /// The elements to observe for a judgement.
    pub fn targets(&self) -> Vec<Target> {
        self.elements
            .iter()
            .filter(|(_, r)| r.alive)
            .map(|(serial, r)| Target {
                serial: *serial,
                weak: r.weak.clone(),
                removed: r.removed,
            })
            .collect()
    }

    /// Records elements leaving the pipeline (the element and, for a bin,
    /// all inside it). Returns the finding when it leaves while PAUSED or
    /// PLAYING; one left in READY is judged after the grace.
    pub fn removing(
        &mut self,
        serials: &[u64],
        removed: u64,
        state: gst::State,
    ) -> Option<Finding> {
        for serial in serials {
            if let Some(record) = self.elements.get_mut(serial) {
                record.removed = true;
                record.removed_in_ready = *serial == removed && state == gst::State::Ready;
            }
        }
        if state < gst::State::Paused {
            return None;
        }
        // Named where it was: a removal does not move its place.
        let finding = Finding::RemovedAboveNull {
            element: element_id(&self.nodes, removed, self.elements.get(&removed)?),
            state: state_name(state),
        };
        self.pending.push(finding.clone());
        Some(finding)
    }

    /// Findings known while the pipeline still runs: for the report posted at
    /// PAUSED->READY, when the bus still delivers.
    pub fn interim_report(&self) -> Arc<Report> {
        if self.pending.is_empty() {
            return Arc::clone(&self.report);
        }
        let mut report = Report::clone(&self.report);
        report.findings.extend(self.pending.iter().cloned());
        Arc::new(report)
    }

    /// A finding was delivered on the bus as it happened (a removal while
    /// PLAYING): the judgement does not raise it again.
    pub fn announced(&mut self, finding: Finding) {
        self.announced.push(finding);
    }

    /// How many of the last judged report's findings were not delivered on
    /// the bus when they happened.
    pub fn unannounced(&self) -> usize {
        self.report
            .findings
            .iter()
            .filter(|f| !self.announced.contains(f))
            .count()
    }

    /// Judges one ended cycle from its standings and what was observed since.
    pub fn judge(&mut self, cycle: &CycleEnd, observed: &Observed) -> Arc<Report> {
        if let Some(name) = &observed.renamed {
            self.name = name.clone();
            self.nodes.rename(self.serial, name);
        }
        let mut findings = std::mem::take(&mut self.pending);
        // What was announced belongs to the previous report only.
        self.announced.retain(|f| findings.contains(f));
        let mut elements = Vec::new();
        // Elements disposed between the cycle's end and the look at them are
        // gone: neither listed nor counted.
        let gone = |serial: &u64| observed.judged_live && !observed.refcounts.contains_key(serial);
        let live = match observed.judged_live {
            true => cycle.standings.iter().filter(|s| !gone(&s.serial)).count() as u32,
            false => cycle.live,
        };
        for standing in &cycle.standings {
            if standing.serial == self.serial || gone(&standing.serial) {
                continue;
            }
            let Some(record) = self.elements.get(&standing.serial) else {
                continue;
            };
            let (entry, found) =
                judge_element(standing, record, &self.nodes, observed, !cycle.restarted);
            let place = observed.order.get(&standing.serial).copied();
            elements.push((place.unwrap_or(usize::MAX), entry));
            findings.extend(found);
        }
        // In the pipeline's tree order, as one walk of it found them: sorting
        // by path compares strings as long as the pipeline is deep. What is
        // no longer inside it (or not observed) follows, by path: built for
        // those only.
        elements.sort_by_key(|(place, _)| *place);
        let outside = elements.partition_point(|(place, _)| *place != usize::MAX);
        elements[outside..].sort_by_cached_key(|(_, entry)| self.nodes.path(entry.serial));
        let elements = elements.into_iter().map(|(_, entry)| entry).collect();

        for (fd, handle) in fds::opened_since(&self.fds_before, &cycle.fds) {
            findings.push(Finding::DeviceHandle {
                fd,
                target: handle.target,
                driver: handle.driver,
            });
        }
        // The listing is read now: for a cycle whose pipeline started again,
        // what it shows belongs to the next cycle.
        if !cycle.restarted {
            findings.extend(self.sessions_left_open(observed));
        }
        self.live_per_cycle.push(live);
        self.fds_per_cycle.push(cycle.fds.len() as u32);
        findings.extend(self.growth());
        // The handles left now are the baseline of the next cycle.
        self.fds_before = cycle.fds.clone();

        self.report = Arc::new(Report {
            pipeline: self.name.clone(),
            cycles: self.report.cycles + 1,
            elements,
            findings,
            nodes: self.nodes.clone(),
        });
        // The report keeps the places it was judged with; the tracker lets
        // go of those of disposed elements.
        self.elements.retain(|_, r| r.alive);
        self.nodes.retain_reachable(self.elements.keys().copied());
        Arc::clone(&self.report)
    }

    /// Sessions of this process that the listing shows now and did not at
    /// the last look: opened while the pipeline ran, still open in NULL.
    fn sessions_left_open(&mut self, observed: &Observed) -> Vec<Finding> {
        let Some(now) = &observed.sessions else {
            return Vec::new();
        };
        let findings = now
            .iter()
            .filter(|s| !self.sessions_before.contains(s))
            .map(|s| Finding::VpuSession {
                tid: s.tid,
                index: s.index,
                device: s.device.clone(),
            })
            .collect();
        self.sessions_before = now.clone();
        findings
    }

    fn growth(&self) -> Vec<Finding> {
        [
            ("live elements", &self.live_per_cycle),
            ("device handles", &self.fds_per_cycle),
        ]
        .into_iter()
        .filter(|(_, series)| is_growing(series))
        .map(|(what, series)| {
            let from = series.len().saturating_sub(2 * GROWTH_WINDOW);
            Finding::Growth {
                what: what.into(),
                per_cycle: series[from..].to_vec(),
            }
        })
        .collect()
    }
}

/// One element's report entry and findings at the end of a cycle.
///
/// `settled`: the pipeline is in NULL and did not start again, so what is
/// alive now is as the cycle left it and its live state is the truth. A cycle
/// whose pipeline restarted is judged on the states its elements ended in.
fn judge_element(
    standing: &Standing,
    record: &ElementRecord,
    nodes: &Nodes,
    observed: &Observed,
    settled: bool,
) -> (ElementEntry, Vec<Finding>) {
    let serial = standing.serial;
    let removed = standing.removed || observed.outside.contains(&serial);
    let live = observed.judged_live && (settled || removed);
    let state = match live {
        // Not observed: disposed since, so nothing of it is left.
        true => observed
            .states
            .get(&serial)
            .copied()
            .unwrap_or(gst::State::Null),
        false => standing.state,
    };
    let mut findings = Vec::new();
    let element = || element_id(nodes, serial, record);
    if !removed && state != gst::State::Null {
        findings.push(Finding::NotNull {
            element: element(),
            state: state_name(state),
        });
    }
    if standing.removed_in_ready && state != gst::State::Null {
        findings.push(Finding::RemovedAboveNull {
            element: element(),
            state: state_name(gst::State::Ready),
        });
    }
    // An element the pipeline keeps as a property value (playbin's
    // video-sink) is held on purpose.
    if removed
        && !observed.owned.contains(&serial)
        && let Some(refcount) = observed.refcounts.get(&serial)
    {
        findings.push(Finding::StillAlive {
            element: element(),
            refcount: *refcount,
        });
    }
    if let Some((current, pending)) = observed.pending.get(&serial) {
        findings.push(Finding::StateChange {
            element: element(),
            transition: transition_name(*current, *pending),
            result: "still pending after grace".into(),
        });
    }
    let entry = ElementEntry {
        serial,
        factory: Arc::clone(&record.factory),
        state: state_str(state),
        transitions: record
            .transitions
            .iter()
            .map(|t| {
                (
                    state_str(t.change.current()),
                    state_str(t.change.next()),
                    t.result,
                    t.ts,
                )
            })
            .collect(),
    };
    (entry, findings)
}

/// How a finding names an element: its path built now, from the links.
fn element_id(nodes: &Nodes, serial: u64, record: &ElementRecord) -> ElementId {
    ElementId {
        name: nodes.name(serial).to_string(),
        path: nodes.path(serial),
        factory: record.factory.to_string(),
        klass: record.klass.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An element of the pipeline (serial 1), or the pipeline itself.
    fn entry(serial: u64, name: &str, state: gst::State) -> Entry {
        let (type_name, parent) = match serial {
            1 => ("GstPipeline", None),
            _ => ("GstIdentity", Some(1)),
        };
        Entry {
            serial,
            weak: Arc::new(glib::WeakRef::new()),
            node: Node {
                name: name.into(),
                type_name,
                parent,
            },
            factory: "identity".into(),
            klass: "Generic".into(),
            state,
        }
    }

    fn tracker(grace: gst::ClockTime) -> Tracker {
        let settings = Settings {
            grace,
            ..Settings::default()
        };
        let mut t = Tracker::new(
            1,
            Arc::new(glib::WeakRef::new()),
            "p".into(),
            settings,
            FdSnapshot::new(),
            Vec::new(),
        );
        t.add([
            entry(1, "p", gst::State::Null),
            entry(2, "a", gst::State::Null),
        ]);
        t
    }

    fn run_cycle(t: &mut Tracker, stuck: bool) {
        t.start_cycle();
        t.transition(2, gst::StateChange::NullToReady, "success", 1);
        if !stuck {
            t.transition(2, gst::StateChange::ReadyToNull, "success", 2);
        }
    }

    #[test]
    fn the_handles_are_read_once_per_teardown() {
        let mut t = tracker(gst::ClockTime::SECOND);
        t.start_cycle();
        assert!(t.needs_fd_snapshot());
        let mut first = FdSnapshot::new();
        first.insert(
            7,
            super::super::fds::Handle {
                target: "/dev/video0".into(),
                driver: None,
            },
        );
        t.end_cycle(Instant::now(), Some(first.clone()));
        // Another element reaching NULL in the same teardown keeps them.
        assert!(!t.needs_fd_snapshot());
        t.end_cycle(Instant::now(), None);
        assert_eq!(t.ended.as_ref().unwrap().fds, first);
        // A restart opens a new cycle, with handles of its own.
        t.start_cycle();
        assert!(t.needs_fd_snapshot());
    }

    #[test]
    fn an_ended_cycle_waits_for_its_grace_and_a_settled_pipeline() {
        let mut t = tracker(gst::ClockTime::from_seconds(1));
        run_cycle(&mut t, true);
        let now = Instant::now();
        assert_eq!(
            t.end_cycle(now, Some(FdSnapshot::new())),
            Some(now + Duration::from_secs(1))
        );
        // One wake-up is queued per tracker.
        assert_eq!(t.end_cycle(now, Some(FdSnapshot::new())), None);
        assert!(t.claim(now, true, false, None).is_empty());
        let later = now + Duration::from_secs(2);
        assert!(t.claim(later, false, false, None).is_empty());
        let cycles = t.claim(later, true, false, None);
        assert_eq!(cycles.len(), 1);
        assert!(t.judging);
        // Nothing more while it is being judged.
        assert!(t.claim(later, true, true, None).is_empty());
    }

    #[test]
    fn a_restarted_cycle_is_judged_on_the_states_it_ended_in() {
        let mut t = tracker(gst::ClockTime::from_seconds(60));
        run_cycle(&mut t, true);
        t.end_cycle(Instant::now(), Some(FdSnapshot::new()));
        // The next cycle starts long before the grace is over: element 2
        // moves on, but the ended cycle keeps its READY.
        run_cycle(&mut t, false);
        let cycles = t.claim(Instant::now(), false, false, None);
        assert_eq!(cycles.len(), 1);
        assert!(cycles[0].restarted);
        let report = t.judge(&cycles[0], &Observed::default());
        assert_eq!(report.cycles, 1);
        assert_eq!(report.findings.len(), 1, "{report:?}");
        assert_eq!(report.findings[0].kind(), "not-null");
        assert_eq!(report.elements[0].state, "ready");
    }

    #[test]
    fn a_disposed_pipeline_is_judged_at_once_and_a_dead_element_is_gone() {
        let mut t = tracker(gst::ClockTime::from_seconds(60));
        run_cycle(&mut t, false);
        t.end_cycle(Instant::now(), Some(FdSnapshot::new()));
        t.mark_dead(2);
        let cycles = t.claim(Instant::now(), true, true, None);
        assert_eq!(cycles.len(), 1);
        let observed = Observed {
            judged_live: true,
            ..Observed::default()
        };
        let report = t.judge(&cycles[0], &observed);
        assert!(report.findings.is_empty(), "{report:?}");
        // The dead element's record went with the judgement.
        assert!(!t.knows(2));
    }

    #[test]
    fn removal_while_playing_is_a_finding_at_once_and_in_ready_only_later() {
        let mut t = tracker(gst::ClockTime::ZERO);
        let finding = t.removing(&[2], 2, gst::State::Playing).unwrap();
        assert_eq!(finding.kind(), "removed-above-null");
        assert_eq!(t.interim_report().findings.len(), 1);
        t.add([entry(2, "a", gst::State::Ready)]);
        assert_eq!(t.removing(&[2], 2, gst::State::Ready), None);
    }

    /// An element of `parent`, of GType `type_name`.
    fn inside(serial: u64, name: &str, type_name: &'static str, parent: u64) -> Entry {
        let mut e = entry(serial, name, gst::State::Null);
        e.node = Node {
            name: name.into(),
            type_name,
            parent: Some(parent),
        };
        e
    }

    fn judge_stuck(t: &mut Tracker, observed: &Observed) -> Arc<Report> {
        run_cycle(t, true);
        t.end_cycle(Instant::now(), Some(FdSnapshot::new()));
        let cycles = t.claim(Instant::now(), true, false, None);
        t.judging = false;
        t.judge(&cycles[0], observed)
    }

    fn json_paths(report: &Report) -> Vec<String> {
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        json["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn an_element_is_named_where_it_is_as_of_the_judgement() {
        let mut t = tracker(gst::ClockTime::ZERO);
        t.add([inside(3, "bin", "GstBin", 1)]);
        // Moved into the bin: taken out (keeps its place), added again.
        t.removing(&[2], 2, gst::State::Null);
        t.add([inside(2, "a", "GstIdentity", 3)]);
        let first = judge_stuck(&mut t, &Observed::default());
        let moved = "/GstPipeline:p/GstBin:bin/GstIdentity:a";
        assert_eq!(first.findings[0].element().unwrap().path, moved);
        assert!(json_paths(&first).contains(&moved.to_string()));
        // The pipeline renamed: every path below it follows at the next
        // judgement; the report judged before keeps its own.
        let renamed = Observed {
            renamed: Some("q".into()),
            ..Observed::default()
        };
        let second = judge_stuck(&mut t, &renamed);
        let after = "/GstPipeline:q/GstBin:bin/GstIdentity:a";
        assert_eq!(second.findings[0].element().unwrap().path, after);
        assert!(json_paths(&second).contains(&after.to_string()));
        assert!(json_paths(&first).contains(&moved.to_string()));
    }

    #[test]
    fn a_removal_names_the_element_where_it_was() {
        let mut t = tracker(gst::ClockTime::ZERO);
        t.add([inside(3, "bin", "GstBin", 1), inside(4, "q", "GstQueue", 3)]);
        // Read after the removal, the bin has no parent: its place stands.
        let mut outside = inside(3, "bin", "GstBin", 1);
        outside.node.parent = None;
        t.add_if_unknown([outside]);
        let finding = t.removing(&[3, 4], 3, gst::State::Playing).unwrap();
        assert_eq!(finding.element().unwrap().path, "/GstPipeline:p/GstBin:bin");
        assert_eq!(t.nodes.path(4), "/GstPipeline:p/GstBin:bin/GstQueue:q");
    }

    #[test]
    fn places_of_disposed_elements_go_with_the_judgement() {
        let mut t = tracker(gst::ClockTime::ZERO);
        t.add([inside(3, "bin", "GstBin", 1), inside(4, "q", "GstQueue", 3)]);
        t.place([(
            9,
            Node {
                name: "unknown".into(),
                type_name: "GstBin",
                parent: Some(1),
            },
        )]);
        t.mark_dead(3);
        let report = judge_stuck(&mut t, &Observed::default());
        // The queue's path still goes through its dead bin; the ancestor
        // nobody's path goes through is let go.
        assert!(t.knows_place(3) && t.knows_place(4) && !t.knows_place(9));
        assert!(report.nodes.contains(9));
        t.mark_dead(4);
        judge_stuck(&mut t, &Observed::default());
        assert!(!t.knows_place(3) && !t.knows_place(4) && t.knows_place(1));
    }

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
