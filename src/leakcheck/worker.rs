// SPDX-License-Identifier: MPL-2.0
//! The one thread that judges pipelines after their grace, for the whole
//! process: a queue of (when, tracker) wake-ups, and of jobs that must not
//! run where they are asked for (an element looking for its new pipeline
//! from inside `gst_bin_add`, under the bin's lock). It starts with the first
//! wake-up and then waits for the next, so threads stay flat however many
//! pipelines come and go.

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

use super::judge::{self, Demand};

/// Work handed to the worker's thread because its caller holds GStreamer
/// locks it must not wait on (a bin's object lock, inside `gst_bin_add`).
type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    wakes: BinaryHeap<Reverse<(Instant, u64)>>,
    jobs: VecDeque<Job>,
    started: bool,
}

/// A leaf lock: held only to push or pop a wake-up or a job, never while
/// judging or running a job.
static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    wakes: BinaryHeap::new(),
    jobs: VecDeque::new(),
    started: false,
});
static WAKE: Condvar = Condvar::new();

/// Judges a tracker now, on the caller's thread, and schedules what the
/// judgement says comes next.
pub fn judge_now(tracker: u64, demand: Demand) {
    if let Some(at) = judge::run(tracker, demand) {
        schedule(tracker, at);
    }
}

/// Asks the worker to look at a tracker at `at`.
pub fn schedule(tracker: u64, at: Instant) {
    let mut queue = QUEUE.lock();
    queue.wakes.push(Reverse((at, tracker)));
    start(&mut queue);
}

/// Runs `job` on the worker's thread, as soon as it is free.
pub fn defer(job: impl FnOnce() + Send + 'static) {
    let mut queue = QUEUE.lock();
    queue.jobs.push_back(Box::new(job));
    start(&mut queue);
}

fn start(queue: &mut Queue) {
    if !queue.started {
        queue.started = true;
        std::thread::Builder::new()
            .name("leakcheck-judge".into())
            .spawn(run)
            .expect("a thread can be started");
    }
    WAKE.notify_one();
}

fn run() {
    let mut queue = QUEUE.lock();
    loop {
        if let Some(job) = queue.jobs.pop_front() {
            // Run, and dropped, with the queue unlocked.
            MutexGuard::unlocked(&mut queue, job);
            continue;
        }
        let Some(&Reverse((at, tracker))) = queue.wakes.peek() else {
            WAKE.wait(&mut queue);
            continue;
        };
        if at > Instant::now() {
            WAKE.wait_until(&mut queue, at);
            continue;
        }
        queue.wakes.pop();
        let next = MutexGuard::unlocked(&mut queue, || judge::run(tracker, Demand::Wake));
        if let Some(next) = next {
            queue.wakes.push(Reverse((next, tracker)));
        }
    }
}
