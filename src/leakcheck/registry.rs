// SPDX-License-Identifier: MPL-2.0
//! Every tracked top-level pipeline, by the pipeline's serial.
//!
//! # The lock rule
//!
//! `REGISTRY` is taken by bus sync-message handlers, bin signal handlers,
//! tracer hooks, weak-reference notifications, property getters and the
//! judging worker, on any thread, sometimes while GStreamer holds an
//! element's state lock. So while it is held, nothing may call into
//! GStreamer or GObject: no unref of a reference that may be the last (the
//! dispose that follows runs hooks and handlers in this thread, which take
//! this lock again), no property getter, no `set_state`, no posting, notify
//! or signal emission, and no `/proc` walk. Collect under the lock, act after
//! it. Weak references may be stored, cloned (as `Arc`s) and dropped under
//! it: that never runs object code.
//!
//! Lock order: `REGISTRY`, then nothing. The worker's queue lock
//! (`worker::QUEUE`) and the serial lock (`identity::ASSIGNING`) are leaves
//! and never held together with it.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use super::ledger::Tracker;
use super::report::Report;

/// Reports kept for GST_TRACERS mode's summary at exit once their pipeline is
/// gone, those with findings only, bounded so a server does not grow.
const FINISHED_KEPT: usize = 256;

#[derive(Default)]
pub struct Registry {
    /// GST_TRACERS=leakchecktracer: every pipeline of the process, not only
    /// those with a leakcheck element in them.
    pub watch_all: bool,
    pub trackers: HashMap<u64, Tracker>,
    /// Final reports of disposed pipelines (tracer mode), for the exit summary.
    pub finished: Vec<Arc<Report>>,
}

impl Registry {
    pub fn keep_finished(&mut self, report: Arc<Report>) {
        if !report.findings.is_empty() && self.finished.len() < FINISHED_KEPT {
            self.finished.push(report);
        }
    }
}

pub static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);
