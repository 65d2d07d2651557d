// SPDX-License-Identifier: MPL-2.0
//! delaybuffer's `src` on encoded input (x264enc, live): lowering `delay`
//! mid-stream and relinking `src` land it on a keyframe, so that what it
//! writes decodes without an error (ffmpeg says nothing) and without a
//! missing reference (a "Frame num gap", which ffmpeg conceals and reports
//! only at `-v debug`: the sign of a restart mid-GOP).

mod common;

use gst::prelude::*;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

const MS: gst::ClockTime = gst::ClockTime::MSECOND;
const HANG: Duration = Duration::from_secs(30);

/// 6 s of live 30 fps H.264 with a keyframe every second, no B-frames.
const SOURCE: &str = "videotestsrc is-live=true num-buffers=180 ! \
     video/x-raw,format=I420,width=160,height=120,framerate=30/1 ! \
     x264enc key-int-max=30 bframes=0 speed-preset=ultrafast tune=zerolatency ! h264parse";

use common::launch;

fn wait_for_running_time(pipeline: &gst::Pipeline, t: gst::ClockTime) {
    common::wait_for_running_time(pipeline, t, HANG);
}

fn play_to_eos(pipeline: &gst::Pipeline) {
    let log = common::collect_bus(pipeline, HANG, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
}

/// What ffmpeg says decoding `file` at log level `level`.
fn ffmpeg_decodes(file: &Path, level: &str) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", level, "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs (make deps installs it)");
    assert!(out.status.success(), "ffmpeg failed on {}", file.display());
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// ffmpeg decodes `file` without a word and without a missing reference
/// frame; the frames it found.
fn assert_decodes_silently(file: &Path) -> u64 {
    let said = ffmpeg_decodes(file, "error");
    assert!(said.is_empty(), "ffmpeg: {said}");
    let debug = ffmpeg_decodes(file, "debug");
    let gaps: Vec<_> = debug
        .lines()
        .filter(|l| l.contains("Frame num gap"))
        .collect();
    assert!(gaps.is_empty(), "decoded mid-GOP: {gaps:?}");
    let (codec, frames) = common::probe_video(file);
    assert_eq!(codec, "h264");
    frames
}

#[test]
fn lowering_the_delay_on_h264_lands_src_on_a_keyframe() {
    let dir = common::temp_dir("encoded-lower");
    let file = dir.join("out.mkv");
    let pipeline = launch(&format!(
        "{SOURCE} ! delaybuffer name=d delay=2000000000 ! matroskamux ! \
         filesink location={}",
        file.display()
    ));
    let delaybuffer = pipeline.by_name("d").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    // At 3 s, frames before 2.5 s are late for 500 ms: the first frame not
    // late (2.5 s) is mid-GOP, the next keyframe is at 3 s.
    wait_for_running_time(&pipeline, 3000 * MS);
    delaybuffer.set_property("delay", (500 * MS).nseconds());
    play_to_eos(&pipeline);
    let dropped = delaybuffer.property::<u64>("dropped");
    let frames = assert_decodes_silently(&file);
    // The first second went out by 3 s; 1 s to 3 s is dropped, and from the
    // keyframe at 3 s on everything goes out.
    assert!(
        (50..=70).contains(&dropped) && frames >= 100,
        "dropped {dropped}, wrote {frames} frames"
    );
}

#[test]
fn relinking_src_on_h264_lands_it_on_a_keyframe() {
    let dir = common::temp_dir("encoded-relink");
    let file = dir.join("out.mkv");
    let pipeline = launch(&format!(
        "{SOURCE} ! tee name=t allow-not-linked=true \
         t. ! queue ! fakesink sync=true \
         t. ! delaybuffer name=d delay=1000000000 ! queue name=q ! matroskamux ! \
         filesink location={}",
        file.display()
    ));
    let delaybuffer = pipeline.by_name("d").unwrap();
    let src = delaybuffer.static_pad("src").unwrap();
    let queue_sink = pipeline.by_name("q").unwrap().static_pad("sink").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    wait_for_running_time(&pipeline, 1500 * MS);
    // Unlinked between two pushes, relinked at 3.3 s: the frames arriving
    // then are mid-GOP, the next keyframe comes at 4 s.
    let (done_tx, done) = mpsc::channel();
    let peer = queue_sink.clone();
    src.add_probe(gst::PadProbeType::IDLE, move |pad, _| {
        pad.unlink(&peer).unwrap();
        let _ = done_tx.send(());
        gst::PadProbeReturn::Remove
    });
    done.recv_timeout(HANG)
        .expect("the src pad never went idle");
    wait_for_running_time(&pipeline, 3300 * MS);
    src.link(&queue_sink).unwrap();
    play_to_eos(&pipeline);
    let frames = assert_decodes_silently(&file);
    // Before the unlink about 15 frames, after the relink 4 s to 6 s.
    assert!(frames >= 60, "wrote {frames} frames");
}
