// SPDX-License-Identifier: MPL-2.0
//! delaybuffer behind a tee whose source has a pool of 8 buffers that never
//! grows (tests/common/fixed_pool_src.rs, like nvarguscamerasrc), live at
//! 30 fps: with short-pool=copy neither branch loses a frame and the source
//! never waits; with short-pool=wait the source starves and delaybuffer warns.

mod common;

use common::counting_allocator::CountingAllocator;
use common::fixed_pool_src::{self, FixedPoolSource};
use gst::prelude::*;
use std::time::Duration;

const SECOND: gst::ClockTime = gst::ClockTime::SECOND;
const DELAY: gst::ClockTime = gst::ClockTime::from_seconds(3);
/// A hang fails the test after this long.
const HANG: Duration = Duration::from_secs(90);

fn caps() -> gst::Caps {
    common::init();
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", 64)
        .field("height", 48)
        .field("framerate", gst::Fraction::new(30, 1))
        .build()
}

/// What one run showed.
struct Run {
    realtime: Vec<common::Arrival>,
    delayed: Vec<common::Arrival>,
    source: fixed_pool_src::SourceStats,
    stats: gst::Structure,
    log: common::BusLog,
}

/// The delayed branch: a 3 s delaybuffer `delay` with `short_pool` into the
/// fakesink `delayed`.
fn delayed_by_src(short_pool: &str) -> String {
    format!(
        "delaybuffer name=delay delay={} short-pool={short_pool} ! fakesink name=delayed sync=true",
        DELAY.nseconds()
    )
}

/// `frames` frames from the fixed pool source (memory of `allocator`) through
/// a tee into a live branch and `branch` (see `delayed_by_src`), after
/// `prepare` had the pipeline.
fn run(
    branch: &str,
    frames: u64,
    allocator: Option<&gst::Allocator>,
    prepare: impl FnOnce(&gst::Pipeline),
) -> Run {
    run_with_caps(&caps(), branch, frames, allocator, prepare)
}

/// `run` with the source's `caps`.
fn run_with_caps(
    caps: &gst::Caps,
    branch: &str,
    frames: u64,
    allocator: Option<&gst::Allocator>,
    prepare: impl FnOnce(&gst::Pipeline),
) -> Run {
    common::init();
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src is-live=true format=time caps=\"{caps}\" ! tee name=t \
         t. ! queue ! fakesink name=realtime sync=true t. ! {branch}",
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    prepare(&pipeline);
    let realtime = common::record_arrivals(&pipeline.by_name("realtime").unwrap());
    let delayed = common::record_arrivals(&pipeline.by_name("delayed").unwrap());
    let appsrc = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let mut source = FixedPoolSource::new(caps, allocator);
    // Live: it goes to PLAYING at once, and completes with the first frame.
    pipeline.set_state(gst::State::Playing).unwrap();
    source.start(&pipeline, appsrc, frames);
    let log = common::collect_bus(&pipeline, HANG, |_| false);
    let stats = pipeline.by_name("delay").unwrap().property("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    source.stop();
    let realtime = realtime.lock().unwrap().clone();
    let delayed = delayed.lock().unwrap().clone();
    Run {
        realtime,
        delayed,
        source: source.stats(),
        stats,
        log,
    }
}

/// The starvation WARNING came, saying that the tee's other branches starve.
fn assert_starvation_warned(run: &Run) {
    assert!(
        run.log
            .warnings
            .iter()
            .any(|w| w.contains("other branches of a tee")),
        "{:#?}",
        run.log.warnings
    );
}

fn count(stats: &gst::Structure, field: &str) -> u64 {
    stats.get::<u64>(field).unwrap()
}

/// Both branches got all `frames`, the delayed one exactly 3 s late, the
/// source never waited longer than a frame, nothing warned, and copies
/// were made.
fn assert_whole_and_never_waiting(run: &Run, frames: u64) {
    assert!(run.log.eos && run.log.errors.is_empty(), "{:#?}", run.log);
    assert!(run.log.warnings.is_empty(), "{:#?}", run.log.warnings);
    let frame = SECOND / fixed_pool_src::FPS;
    assert!(
        run.source.longest_wait <= frame && run.source.lost == 0,
        "the source waited: {:?}",
        run.source
    );
    assert_eq!(run.realtime.len() as u64, frames);
    assert_eq!(run.delayed.len() as u64, frames);
    for (r, d) in run.realtime.iter().zip(&run.delayed) {
        assert_eq!(r.pts, d.pts);
        assert_eq!(r.due, r.pts);
        assert_eq!(d.due, r.due + DELAY, "{r:?} {d:?}");
        assert!(d.arrived >= d.due, "left early: {d:?}");
    }
    assert!(count(&run.stats, "copied") > 0, "{:?}", run.stats);
}

#[test]
fn short_pool_copy_keeps_both_branches_whole_and_the_source_never_waits() {
    let frames = 300;
    let allocator = CountingAllocator::default();
    let run = run(
        &delayed_by_src("copy"),
        frames,
        Some(allocator.upcast_ref()),
        |_| (),
    );
    assert_whole_and_never_waiting(&run, frames);
    // Copied, but only what the pool could not spare, and by the memory's
    // own allocator: nothing was mapped.
    // Every buffer is copied once two newer ones from the pool of 8 are
    // held (2 references allowed), except the last two: only as many as
    // needed.
    let copied = count(&run.stats, "copied");
    assert_eq!(copied, frames - 2, "{:?}", run.stats);
    assert_eq!(count(&run.stats, "copied-bytes"), copied * 64 * 48 * 3 / 2);
    assert_eq!(allocator.copies() as u64, copied);
    assert_eq!(allocator.maps(), 0);
}

#[test]
fn short_pool_wait_starves_the_source_and_warns() {
    let frames = 150;
    let run = run(&delayed_by_src("wait"), frames, None, |_| ());
    assert!(run.log.eos && run.log.errors.is_empty(), "{:#?}", run.log);
    assert_starvation_warned(&run);
    // Eight references held for the 3 s delay: the source waits for one to
    // come back, and the live branch loses the frames meanwhile.
    assert!(run.source.longest_wait > SECOND, "{:?}", run.source);
    assert!(run.source.lost > 0, "{:?}", run.source);
    assert!((run.realtime.len() as u64) < frames);
    assert_eq!(count(&run.stats, "copied"), 0);
}

/// NVMM-like memory (a caps feature GStreamer has no right copy for: its
/// default copy would copy what a map shows, a descriptor) is never copied:
/// it is held as references, and the starvation WARNING says what to raise.
#[test]
fn short_pool_copy_holds_memory_gstreamer_cannot_copy_as_references() {
    let frames = 150;
    let allocator = CountingAllocator::default();
    let mut nvmm = caps();
    nvmm.get_mut()
        .unwrap()
        .set_features_simple(Some(gst::CapsFeatures::new(["memory:NVMM"])));
    let run = run_with_caps(
        &nvmm,
        &delayed_by_src("copy"),
        frames,
        Some(allocator.upcast_ref()),
        |_| (),
    );
    assert!(run.log.eos && run.log.errors.is_empty(), "{:#?}", run.log);
    assert_eq!(count(&run.stats, "copied"), 0, "{:?}", run.stats);
    assert_eq!(allocator.copies(), 0);
    assert_starvation_warned(&run);
}

/// videotestsrc's pool grows on the ALLOCATION answer: its buffers stay
/// references.
#[test]
fn short_pool_copy_leaves_pools_that_grew_alone() {
    common::init();
    let pipeline = gst::parse::launch(
        "videotestsrc is-live=true num-buffers=45 ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         tee name=t t. ! queue ! fakesink sync=true \
         t. ! delaybuffer name=delay delay=1000000000 ! fakesink sync=true",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, HANG, |_| false);
    let stats: gst::Structure = pipeline.by_name("delay").unwrap().property("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        log.eos && log.errors.is_empty() && log.warnings.is_empty(),
        "{log:#?}"
    );
    assert_eq!(count(&stats, "pushed"), 45);
    assert_eq!(count(&stats, "copied"), 0);
}

/// The same source read by a tap 3 s behind (the window holds what `src`
/// would): the tap's window gets copies too, so the source never waits.
#[test]
fn short_pool_copy_feeds_a_tap_without_starving_the_source() {
    let frames = 150;
    let run = run(
        "delaybuffer name=delay delay=0 ! fakesink sync=true \
         delay.tap_0 ! fakesink name=delayed sync=true",
        frames,
        None,
        |pipeline| {
            let tap = pipeline
                .by_name("delay")
                .unwrap()
                .static_pad("tap_0")
                .unwrap();
            tap.set_property("delay", DELAY.nseconds());
        },
    );
    assert_whole_and_never_waiting(&run, frames);
}
