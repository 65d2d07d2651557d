// SPDX-License-Identifier: MPL-2.0
//! What delaybuffer holds before it holds upstream back: non-live input
//! without `max-size-*` is paced once the delay plus a headroom is held, as
//! a full queue paces it, instead of being read whole into memory.

mod common;

use gst::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);
const SECOND: u64 = 1_000_000_000;
/// The headroom documented in docs/delaybuffer.md (`queue`'s 1 s).
const HEADROOM: u64 = SECOND;
const FRAMES: u64 = 180;
const FPS: u64 = 30;

/// A 6 s, 30 fps H.264 MP4 file made with x264enc and mp4mux.
fn h264_file(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("in.mp4");
    let log = common::run_to_eos(
        &format!(
            "videotestsrc num-buffers={FRAMES} ! \
             video/x-raw,width=320,height=240,framerate={FPS}/1 ! \
             x264enc speed-preset=ultrafast key-int-max=30 ! h264parse ! mp4mux ! \
             filesink location={}",
            file.display()
        ),
        TIMEOUT,
    );
    assert!(log.eos, "{:?}", log.errors);
    file
}

/// The file decoded behind a 2 s delay into a synchronised sink: the most
/// running time and buffers `src` held, sampled while it played, and the
/// frames the sink got.
fn play_behind_a_delay(file: &std::path::Path, delay: u64) -> (u64, u64, u64) {
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! \
         delaybuffer name=d delay={delay} ! fakesink name=out sync=true",
        file.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let frames = Arc::new(AtomicU64::new(0));
    let counter = frames.clone();
    pipeline
        .by_name("out")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    let delaybuffer = pipeline.by_name("d").unwrap();
    let (mut most_time, mut most_buffers) = (0, 0);
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| {
        let stats = delaybuffer.property::<gst::Structure>("stats");
        most_time = most_time.max(stats.get::<u64>("current-level-time").unwrap());
        most_buffers = most_buffers.max(stats.get::<u32>("current-level-buffers").unwrap());
        false
    });
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{:?}", log.errors);
    (
        most_time,
        u64::from(most_buffers),
        frames.load(Ordering::Relaxed),
    )
}

#[test]
fn a_decoded_file_behind_a_delay_holds_the_delay_plus_the_headroom_and_loses_nothing() {
    common::init();
    let dir = common::temp_dir("delaybuffer-pacing");
    let file = h264_file(&dir);
    let delay = 2 * SECOND;
    let (most_time, most_buffers, frames) = play_behind_a_delay(&file, delay);
    eprintln!("held at most {most_time} ns, {most_buffers} buffers; {frames} frames out");
    assert_eq!(frames, FRAMES, "every frame reaches the sink");
    assert!(
        most_time <= delay + HEADROOM,
        "held {most_time} ns, more than the delay and the headroom"
    );
    // Filled to the delay, at least: it paced, it did not starve.
    assert!(most_time >= delay, "held only {most_time} ns");
    assert!(most_buffers <= (delay + HEADROOM) * FPS / SECOND + 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Not live, a bound too small for the delay (down to one smaller than a
/// single buffer) lets the oldest buffer through whenever upstream waits for
/// room, as a full queue does: every frame reaches the sink, then EOS, and
/// no wait is silent.
#[test]
fn a_bound_smaller_than_one_buffer_lets_buffers_through_to_eos() {
    common::init();
    for bound in [
        "max-size-time=1",
        "max-size-bytes=1",
        "max-size-buffers=1",
        "max-size-buffers=5",
        "max-size-time=1 max-size-bytes=1 max-size-buffers=1",
    ] {
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers=60 ! video/x-raw,width=64,height=48,framerate=30/1 ! \
             delaybuffer name=d {bound} ! fakesink name=out"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let frames = Arc::new(AtomicU64::new(0));
        let counter = frames.clone();
        pipeline
            .by_name("out")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                counter.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        pipeline.set_state(gst::State::Playing).unwrap();
        let log = common::collect_bus(&pipeline, Duration::from_secs(30), |_| false);
        let dropped = pipeline.by_name("d").unwrap().property::<u64>("dropped");
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(
            log.eos,
            "{bound}: no EOS ({} frames out)",
            frames.load(Ordering::Relaxed)
        );
        assert!(log.errors.is_empty(), "{bound}: {:?}", log.errors);
        assert_eq!(frames.load(Ordering::Relaxed), 60, "{bound}");
        assert_eq!(dropped, 0, "{bound}");
    }
}
