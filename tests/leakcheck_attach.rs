// SPDX-License-Identifier: MPL-2.0
//! leakcheck never waits inside a state change for another thread that is
//! attaching it to its pipeline, and the transition made meanwhile is still
//! in the report. Its own binary: the test sets leakcheck's log threshold to
//! DEBUG and holds one thread inside a log call, which other tests' log
//! hooks must not disturb.

mod common;

use gst::prelude::*;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

/// How long a wait may last before the test counts it as hung.
const HANG: Duration = Duration::from_secs(120);

/// The thread that makes leakcheck attach, and is held while it does.
const ATTACHER: &str = "attacher";

/// Holds the thread named `ATTACHER` at leakcheck's "catching up on
/// `pipeline`" line (after it watches the pipeline's bus and bins, before
/// it reads the elements already there). Returns (held, release): `held`
/// receives once the thread stops there; a send on `release` lets it go on.
fn hold_attacher_while_catching_up(pipeline: &str) -> (Receiver<()>, Sender<()>) {
    let line = format!("catching up on {pipeline}");
    common::log_hold::hold_thread_at_line(
        "leakcheck",
        ATTACHER,
        move |m| m.starts_with(&line),
        HANG,
    )
}

/// The transitions the report-file lists for the element `name`, as
/// (from, to).
fn transitions_of(report: &serde_json::Value, name: &str) -> Vec<(String, String)> {
    let element = report["elements"]
        .as_array()
        .expect("the report lists its elements")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the report: {report:#}"));
    element["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap().to_string(),
                t["to"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_state_change_while_another_thread_attaches_neither_waits_nor_is_lost() {
    common::init();
    let dir = common::temp_dir("leakcheck-attach-race");
    let file = dir.join("report.json");
    let (held, release) = hold_attacher_while_catching_up("attach-race");
    let p = gst::parse::launch("fakesrc ! leakcheck name=lc grace=0 ! fakesink")
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    p.set_property("name", "attach-race");
    let lc = p.by_name("lc").unwrap();
    lc.set_property("report-file", file.to_str().unwrap());

    // Asking for the report makes leakcheck look for its pipeline: this
    // thread attaches it, and is held half-way.
    let attacher = {
        let lc = lc.clone();
        std::thread::Builder::new()
            .name(ATTACHER.into())
            .spawn(move || lc.emit_by_name::<gst::Structure>("get-report", &[]))
            .unwrap()
    };
    held.recv_timeout(HANG)
        .expect("the attacher never got there");

    // Meanwhile leakcheck changes state here. It returns while the attacher
    // is still held (were it waiting for the attacher, this would hang).
    lc.set_state(gst::State::Ready).unwrap();
    release.send(()).unwrap();
    attacher.join().unwrap();

    // A cycle, judged as soon as the pipeline is in NULL (grace 0).
    p.set_state(gst::State::Playing).unwrap();
    let (result, _, _) = p.state(gst::ClockTime::from_seconds(HANG.as_secs()));
    assert!(result.is_ok(), "{result:?}");
    p.set_state(gst::State::Null).unwrap();
    let report = lc.emit_by_name::<gst::Structure>("get-report", &[]);
    assert_eq!(report.get::<String>("pipeline").unwrap(), "attach-race");
    assert_eq!(report.get::<u32>("cycles").unwrap(), 1, "{report}");

    let text = std::fs::read_to_string(&file).expect("report-file written");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let transitions = transitions_of(&json, "lc");
    assert!(
        transitions.contains(&("null".into(), "ready".into())),
        "the NULL->READY made while attaching is lost: {transitions:?}"
    );
    // The cycle after it is recorded in full.
    assert!(
        transitions.contains(&("ready".into(), "null".into())),
        "{transitions:?}"
    );
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
