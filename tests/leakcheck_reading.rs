// SPDX-License-Identifier: MPL-2.0
//! Reading the report never waits for a judgement under way in another
//! thread: the reader judges the same cycles itself, and the first of the two
//! to finish publishes. Its own binary: the test sets leakcheck's log
//! threshold to DEBUG and holds the judging worker inside a log call, which
//! other tests' log hooks must not disturb.

mod common;

use gst::prelude::*;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

/// How long a wait may last before the test counts it as hung.
const HANG: Duration = Duration::from_secs(120);

/// leakcheck's judging worker (`worker.rs` names its thread so).
const WORKER: &str = "leakcheck-judge";

/// Holds the worker at leakcheck's "judging ... of `pipeline`" line (it has
/// claimed the pipeline's ended cycle and not read the elements yet).
/// Returns (held, release): `held` receives once the worker stops there; a
/// send on `release` lets it go on.
fn hold_worker_while_judging(pipeline: &str) -> (Receiver<()>, Sender<()>) {
    let line = format!("of {pipeline}");
    common::log_hold::hold_thread_at_line(
        "leakcheck",
        WORKER,
        move |m| m.starts_with("judging") && m.ends_with(&line),
        HANG,
    )
}

#[test]
fn get_report_answers_while_another_thread_is_judging() {
    common::init();
    let dir = common::temp_dir("leakcheck-reading");
    let file = dir.join("report.json");
    let (held, release) = hold_worker_while_judging("reading");
    let p = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! fakesink identity name=stuck \
         leakcheck name=lc grace=0 report-file={}",
        file.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    p.set_property("name", "reading");
    let lc = p.by_name("lc").unwrap();
    let stuck = p.by_name("stuck").unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let (result, _, _) = p.state(gst::ClockTime::from_seconds(HANG.as_secs()));
    assert!(result.is_ok(), "{result:?}");
    stuck.set_locked_state(true);
    p.set_state(gst::State::Null).unwrap();

    // Nobody reads: the worker judges the cycle (grace 0), and is held.
    held.recv_timeout(HANG).expect("the worker never judged");

    // A reader on another thread answers while the worker is still held,
    // with the cycle judged (were it waiting for the worker, it would
    // answer only after giving up, with the report from before).
    let (answered, answer) = std::sync::mpsc::channel();
    let reader = {
        let lc = lc.clone();
        std::thread::spawn(move || {
            let report = lc.emit_by_name::<gst::Structure>("get-report", &[]);
            let leaks = lc.property::<u32>("leaks");
            let _ = answered.send((report, leaks));
        })
    };
    let (report, leaks) = answer
        .recv_timeout(HANG)
        .expect("get-report waited for the held judgement");
    assert_eq!(report.get::<u32>("cycles").unwrap(), 1, "{report}");
    assert_eq!(report.get::<u32>("leaks").unwrap(), 1, "{report}");
    assert_eq!(leaks, 1);
    // The file says the same once the reader has its answer.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("report-file written"))
            .unwrap();
    assert_eq!(json["cycles"], 1, "{json}");
    assert_eq!(json["findings"][0]["kind"], "not-null", "{json}");

    // The worker, let go, finds the cycle judged: nothing is judged twice.
    release.send(()).unwrap();
    reader.join().unwrap();
    assert_eq!(
        lc.emit_by_name::<gst::Structure>("get-report", &[])
            .get::<u32>("cycles")
            .unwrap(),
        1
    );
    stuck.set_locked_state(false);
    stuck.set_state(gst::State::Null).unwrap();
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
