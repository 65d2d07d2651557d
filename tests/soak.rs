// SPDX-License-Identifier: MPL-2.0
//! Soak: a pipeline with all three elements cycled NULL->PLAYING->NULL again
//! and again; threads, fds, RSS and live elements must stay flat, and
//! leakcheck must find nothing. `make test` runs 100 cycles, `make soak` 1000
//! (EDGEGUARD_SOAK_CYCLES).

mod common;

use gst::prelude::*;
use std::time::Duration;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

#[test]
fn soak_cycles_stay_flat() {
    common::init();
    let cycles: usize = std::env::var("EDGEGUARD_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = common::temp_dir("soak");
    let listing = dir.join("sessions-summary");
    std::fs::write(&listing, "").unwrap();
    let report_file = dir.join("leaks.json");
    // Another pipeline to soak; it needs a leakcheck named check writing {report}.
    let description = std::env::var("EDGEGUARD_SOAK_PIPELINE")
        .ok()
        .map(|d| d.replace("{report}", &report_file.display().to_string()));
    let pipeline = gst::parse::launch(&description.unwrap_or_else(|| format!(
        "videotestsrc num-buffers=10 ! video/x-raw,format=I420,width=640,height=480,framerate=30/1 ! tee name=t \
         t. ! queue ! vpuguardenc hw-encoder={hw} session-file={sf} lock-dir={ld} \
              hw-properties=\"props,session-file={sf}\" ! fakesink \
         t. ! queue ! vpuguardenc mode=software sw-properties=\"props,speed-preset=ultrafast\" ! fakesink \
         t. ! delaybuffer delay=100000000 ! fakesink \
         leakcheck name=check grace=0 report-file={rf}",
        hw = common::fake_mpp::FACTORY_NAME,
        sf = listing.display(),
        ld = dir.join("lock").display(),
        rf = report_file.display(),
    )))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let check = pipeline.by_name("check").unwrap();
    let cycle = || {
        pipeline.set_state(gst::State::Playing).unwrap();
        let log = common::collect_bus(&pipeline, Duration::from_secs(30), |_| false);
        assert!(log.eos && log.errors.is_empty(), "{log:#?}");
        pipeline.set_state(gst::State::Null).unwrap();
    };
    let live_elements = || {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
        json["elements"].as_array().unwrap().len()
    };

    // Warm up: first-use allocations (registry, x264 tables, fonts) are not leaks.
    for _ in 0..10 {
        cycle();
    }
    let (threads0, fds0, rss0, live0) = (threads(), fds(), rss_kib(), live_elements());
    let started = std::time::Instant::now();
    for _ in 0..cycles {
        cycle();
    }
    let (threads1, fds1, rss1, live1) = (threads(), fds(), rss_kib(), live_elements());
    let report = check.emit_by_name::<gst::Structure>("get-report", &[]);
    println!(
        "soak: {cycles} cycles in {:.1} s; threads {threads0} -> {threads1}, fds {fds0} -> {fds1}, \
         RSS {rss0} -> {rss1} KiB, live elements {live0} -> {live1}, leakcheck findings {}",
        started.elapsed().as_secs_f64(),
        report.get::<u32>("leaks").unwrap()
    );
    assert_eq!(report.get::<u32>("leaks").unwrap(), 0, "{report}");
    // GStreamer's task pool keeps a few idle threads for a while: a thread
    // leaked per cycle would be hundreds, not this slack.
    assert!(
        threads1 <= threads0 + 2,
        "threads grew: {threads0} -> {threads1}"
    );
    assert!(fds1 <= fds0, "fds grew: {fds0} -> {fds1}");
    assert_eq!(live1, live0, "live elements changed");
    // x264enc and x265enc themselves grow RSS by 10-25 KiB per instance cycle
    // in Debian's GStreamer 1.22 (measured with a bare x264enc pipeline: 2.6 MiB
    // over 300 cycles), and the guard makes new encoders each cycle. Frames here
    // are 450 KiB, so one frame or buffer kept per cycle would be 3.5x this bound.
    let bound_kib = 128 * cycles as u64;
    assert!(
        rss1 <= rss0 + bound_kib,
        "RSS grew by {} KiB over {cycles} cycles (bound {bound_kib} KiB)",
        rss1 - rss0
    );
    pipeline.set_state(gst::State::Null).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
