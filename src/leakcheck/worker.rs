// SPDX-License-Identifier: MPL-2.0
//! The one thread that judges pipelines after their grace, for the whole
//! process: a queue of (when, tracker) wake-ups. It starts with the first
//! wake-up and then waits for the next, so threads stay flat however many
//! pipelines come and go.

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::judge::{self, Demand};

#[derive(Default)]
struct Queue {
    wakes: BinaryHeap<Reverse<(Instant, u64)>>,
    started: bool,
}

/// A leaf lock: held only to push or pop a wake-up, never while judging.
static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    wakes: BinaryHeap::new(),
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
