// SPDX-License-Identifier: MPL-2.0
//! Requesting and releasing a tap over and over, as an application that
//! records on demand does, on a live source: the memory stays as flat as a
//! tee's request pads cycled the same way in the same process, and upstream
//! is asked for its allocation at most once per cycle.

mod common;

use gst::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const CYCLES: u64 = 1000;

/// The resident set of this process, in MB.
fn rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

/// Cycles `CYCLES` request pads of `element` (named `d`) behind a live
/// 320x240 source, each linked to a sync fakesink for a few frames: the
/// RSS growth in MB and the ALLOCATION queries the source made meanwhile.
fn cycle(element: &str, template: &str) -> (u64, u64) {
    let pipeline = common::launch(&format!(
        "videotestsrc name=src is-live=true ! \
         video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! {element}"
    ));
    let queries = Arc::new(AtomicU64::new(0));
    let counted = queries.clone();
    let src = pipeline.by_name("src").unwrap().static_pad("src").unwrap();
    src.add_probe(gst::PadProbeType::QUERY_DOWNSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Query(q)) = &info.data
            && q.type_() == gst::QueryType::Allocation
        {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    common::wait_for_running_time(&pipeline, gst::ClockTime::SECOND, Duration::from_secs(30));
    let element = pipeline.by_name("d").unwrap();
    let (before, queries_before) = (rss_mb(), queries.load(Ordering::SeqCst));
    for _ in 0..CYCLES {
        let pad = element.request_pad_simple(template).unwrap();
        let sink = common::fakesink(true, false);
        pipeline.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        let sinkpad = sink.static_pad("sink").unwrap();
        pad.link(&sinkpad).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        pad.unlink(&sinkpad).unwrap();
        sink.set_state(gst::State::Null).unwrap();
        pipeline.remove(&sink).unwrap();
        element.release_request_pad(&pad);
    }
    let grown = rss_mb().saturating_sub(before);
    let asked = queries.load(Ordering::SeqCst) - queries_before;
    pipeline.set_state(gst::State::Null).unwrap();
    (grown, asked)
}

#[test]
fn cycling_taps_keeps_memory_as_flat_as_a_tees_request_pads() {
    common::init();
    let (tee_grown, tee_asked) = cycle("tee name=d allow-not-linked=true", "src_%u");
    // src delayed 500 ms: upstream's pool holds delay x framerate + 2 buffers.
    let (tap_grown, tap_asked) = cycle(
        "delaybuffer name=d delay=500000000 ! fakesink sync=true",
        "tap_%u",
    );
    println!(
        "{CYCLES} cycles: tee request pads +{tee_grown} MB RSS, {tee_asked} ALLOCATION queries; \
         delaybuffer taps +{tap_grown} MB RSS, {tap_asked} ALLOCATION queries"
    );
    assert!(tap_asked <= CYCLES, "{tap_asked} ALLOCATION queries");
    assert!(
        tap_grown <= tee_grown + 20,
        "taps grew RSS by {tap_grown} MB, a tee's pads by {tee_grown} MB"
    );
}
