// SPDX-License-Identifier: MPL-2.0
//! Soak: pipelines cycled NULL->PLAYING->NULL again and again; threads, fds,
//! live elements and memory must stay flat, and leakcheck must find nothing.
//! `make test` runs 100 cycles, `make soak` 1000 (EDGEGUARD_SOAK_CYCLES).

mod common;

use gst::prelude::*;
use std::path::Path;
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

fn cycles() -> usize {
    std::env::var("EDGEGUARD_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

/// What a soak run saw, before and after the measured cycles.
#[derive(Debug)]
struct Figures {
    threads: (usize, usize),
    fds: (usize, usize),
    live_elements: (usize, usize),
    /// Lowest RSS of the first and of the last tenth of the cycles: RSS moves
    /// in megabyte steps as glibc adds malloc arenas for new threads and keeps
    /// or returns large blocks, so growth is judged on the floor.
    rss_floor_kib: (u64, u64),
    findings: u32,
}

/// Cycles a pipeline that holds a `leakcheck name=check report-file={report}`.
fn soak(description: &str, cycles: usize, dir: &Path) -> Figures {
    let report_file = dir.join("leaks.json");
    let description = description.replace("{report}", &report_file.display().to_string());
    let pipeline = gst::parse::launch(&description)
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
        // Asking judges the cycle (grace=0), which writes the file.
        check.emit_by_name::<gst::Structure>("get-report", &[]);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
        json["elements"].as_array().unwrap().len()
    };
    // Warm up: first-use allocations (registry, x264 tables, fonts) are not leaks.
    for _ in 0..10 {
        cycle();
    }
    // The report first: asking waits for a judgement under way, whose file
    // write would otherwise be counted as an open fd.
    let live0 = live_elements();
    let (threads0, fds0) = (threads(), fds());
    let mut rss = Vec::with_capacity(cycles);
    for _ in 0..cycles {
        cycle();
        rss.push(rss_kib());
    }
    let window = (cycles / 10).max(1);
    let live1 = live_elements();
    let figures = Figures {
        threads: (threads0, threads()),
        fds: (fds0, fds()),
        live_elements: (live0, live1),
        rss_floor_kib: (
            *rss[..window].iter().min().unwrap(),
            *rss[cycles - window..].iter().min().unwrap(),
        ),
        findings: check
            .emit_by_name::<gst::Structure>("get-report", &[])
            .get::<u32>("leaks")
            .unwrap(),
    };
    println!("soak: {cycles} cycles of {description:.60}...: {figures:?}");
    figures
}

fn assert_flat(f: &Figures) {
    assert_eq!(f.findings, 0, "{f:?}");
    // GStreamer's task pool keeps a few idle threads for a while: a thread
    // leaked per cycle would be hundreds, not this slack.
    assert!(f.threads.1 <= f.threads.0 + 2, "threads grew: {f:?}");
    assert!(f.fds.1 <= f.fds.0, "fds grew: {f:?}");
    assert_eq!(
        f.live_elements.1, f.live_elements.0,
        "live elements changed: {f:?}"
    );
}

/// One test: threads, fds and RSS are process-wide, so the two soaks must not
/// run side by side.
#[test]
fn soak_stays_flat() {
    common::init();
    soak_delay_line_memory_stays_flat();
    soak_all_three_elements_stay_flat();
}

fn soak_all_three_elements_stay_flat() {
    let dir = common::temp_dir("soak-all");
    let listing = dir.join("sessions-summary");
    std::fs::write(&listing, "").unwrap();
    let f = soak(
        &format!(
            "videotestsrc num-buffers=10 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! tee name=t \
             t. ! queue ! vpuguardenc hw-encoder={hw} session-file={sf} lock-dir={ld} \
                  hw-properties=\"props,session-file={sf}\" ! fakesink \
             t. ! queue ! vpuguardenc mode=software sw-properties=\"props,speed-preset=ultrafast\" ! fakesink \
             t. ! delaybuffer delay=100000000 ! fakesink \
             leakcheck name=check grace=0 report-file={{report}}",
            hw = common::fake_mpp::FACTORY_NAME,
            sf = listing.display(),
            ld = dir.join("lock").display(),
        ),
        cycles(),
        &dir,
    );
    // Every encoder the guards made was destroyed (live elements flat, no
    // findings). RSS is not judged here: x264enc and x265enc themselves grow it
    // by tens to hundreds of KiB per instance cycle on Debian's GStreamer 1.22
    // (measured with the same encoders and no edgeguard element).
    assert_flat(&f);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn soak_delay_line_memory_stays_flat() {
    let dir = common::temp_dir("soak-memory");
    let cycles = cycles();
    // 450 KiB frames: one frame or buffer kept per cycle would be far above the
    // bound. Two taps read the delay line's window too.
    let f = soak(
        "videotestsrc num-buffers=10 ! video/x-raw,format=I420,width=640,height=480,framerate=30/1 ! tee name=t \
         t. ! queue ! fakesink t. ! delaybuffer name=d delay=100000000 ! fakesink \
         d.tap_0 ! fakesink d.tap_1 ! fakesink \
         leakcheck name=check grace=0 report-file={report}",
        cycles,
        &dir,
    );
    assert_flat(&f);
    // The allocator settles over the first hundred cycles or so (3-5 MiB here,
    // then about 6 KiB/cycle up to 600 cycles); one 450 KiB frame kept per
    // cycle would be 40 MiB over 90 cycles.
    let between = (cycles - (cycles / 10).max(1)) as u64;
    let bound_kib = 8 * 1024 + 64 * between;
    assert!(
        f.rss_floor_kib.1 <= f.rss_floor_kib.0 + bound_kib,
        "RSS floor grew by {} KiB over {between} cycles (bound {bound_kib} KiB): {f:?}",
        f.rss_floor_kib.1 - f.rss_floor_kib.0
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
