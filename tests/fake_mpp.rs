// SPDX-License-Identifier: MPL-2.0
//! The MPP encoder test doubles (tests/common/fake_mpp.rs) themselves, through
//! real GStreamer: the H.264 double's output, and `frames-in-flight` holding
//! frames back on the output thread as MPP's input queue does.

mod common;

use common::fake_mpp::{self, FACTORY_NAME as FAKE_H265, H264_FACTORY_NAME as FAKE_H264};
use gst::prelude::*;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const FRAME: gst::ClockTime = gst::ClockTime::from_nseconds(33_333_333);
const IN_FLIGHT: u64 = 3;
/// x264enc and x265enc raise the min PTS by this much so that no DTS goes
/// negative: their output is stamped that much later than their input.
const ENCODER_OFFSET: gst::ClockTime = gst::ClockTime::from_seconds(1000 * 3600);

/// A 320x240 I420 frame, the `n`th of the stream.
fn frame(n: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(vec![0x80u8; 320 * 240 * 3 / 2]);
    let b = buffer.get_mut().unwrap();
    b.set_pts(FRAME * n);
    b.set_duration(FRAME);
    buffer
}

/// The double `factory` with an output thread holding `IN_FLIGHT` frames,
/// in a harness fed 320x240 I420, and the queue that is its output thread.
fn holding_back(factory: &str, extra: &[(&str, &str)]) -> (gst_check::Harness, gst::Element) {
    common::init();
    let mut double = gst::ElementFactory::make(factory)
        .property("output-thread", true)
        .property("frames-in-flight", IN_FLIGHT as u32);
    for (name, value) in extra {
        double = double.property_from_str(name, value);
    }
    let double = double.build().unwrap();
    let mut h = gst_check::Harness::with_element(&double, Some("sink"), Some("src"));
    h.set_src_caps(common::i420(320, 240));
    let queue = double
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("mpp-output-task")
        .unwrap();
    (h, queue)
}

/// The next encoded frame out of `h` (waiting up to the harness's 60 s),
/// as the index of the input frame it is.
fn pull_frame(h: &mut gst_check::Harness) -> u64 {
    let pts = h.pull().unwrap().pts().unwrap();
    (pts - ENCODER_OFFSET).nseconds() / FRAME.nseconds()
}

fn queued(queue: &gst::Element) -> u64 {
    queue.property::<u32>("current-level-buffers").into()
}

#[test]
fn the_h264_double_encodes_every_frame_to_h264() {
    common::init();
    let dir = common::temp_dir("fake-mpp-h264");
    let out = dir.join("out.mkv");
    let log = common::run_to_eos(
        &format!(
            "videotestsrc num-buffers=30 ! \
             video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
             {FAKE_H264} ! h264parse ! matroskamux ! filesink location={}",
            out.display()
        ),
        TIMEOUT,
    );
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    assert_eq!(common::probe_video(&out), ("h264".to_string(), 30));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Output lags input by exactly `IN_FLIGHT` frames while the stream runs,
/// EOS drains them all, and a flush brings the lag back (the queue lifts
/// its threshold at EOS and restores it when flushed). The harness pushes
/// from this thread, so a push has returned once its frame is queued.
fn output_lags_input_by_the_frames_in_flight(factory: &str, listing_format: &str) {
    let dir = common::temp_dir(&format!("frames-in-flight-{factory}"));
    let sessions = dir.join("sessions-summary");
    std::fs::write(&sessions, "").unwrap();
    let (mut h, queue) = holding_back(factory, &[("session-file", sessions.to_str().unwrap())]);

    // Its session is listed, in its own codec's format column.
    let listing = std::fs::read_to_string(&sessions).unwrap();
    assert_eq!(fake_mpp::count_records(&listing), 1, "{listing}");
    assert!(
        listing.contains(&format!("|{listing_format:>8}|")),
        "{listing}"
    );

    let mut out = 0;
    for n in 0..30 {
        h.push(frame(n)).unwrap();
        if n >= IN_FLIGHT {
            // The frame pushed IN_FLIGHT frames ago comes out.
            assert_eq!(pull_frame(&mut h), out);
            out += 1;
        }
        // No other frame came out, and the rest are queued: every pushed
        // frame is accounted for, so no more can come out until the next push.
        assert_eq!(h.buffers_in_queue(), 0);
        assert_eq!(queued(&queue), (n + 1).min(IN_FLIGHT));
        assert_eq!(out + queued(&queue), n + 1);
    }

    // EOS drains the frames in flight, then comes out itself.
    assert!(h.push_event(gst::event::Eos::new()));
    for _ in 0..IN_FLIGHT {
        assert_eq!(pull_frame(&mut h), out);
        out += 1;
    }
    while h.pull_event().unwrap().type_() != gst::EventType::Eos {}
    assert_eq!(out, 30);
    assert_eq!(queued(&queue), 0);

    // After a flush (a flushing seek) the frames are held back again.
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(
        h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()))
    );
    for n in 0..=IN_FLIGHT {
        h.push(frame(n)).unwrap();
    }
    assert_eq!(pull_frame(&mut h), 0);
    assert_eq!(h.buffers_in_queue(), 0);
    assert_eq!(queued(&queue), IN_FLIGHT);

    drop(h);
    // Back in NULL, its session is closed.
    assert_eq!(
        fake_mpp::count_records(&std::fs::read_to_string(&sessions).unwrap()),
        0
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_h264_double_holds_frames_in_flight_until_eos() {
    output_lags_input_by_the_frames_in_flight(FAKE_H264, "h264");
}

#[test]
fn the_h265_double_holds_frames_in_flight_until_eos() {
    output_lags_input_by_the_frames_in_flight(FAKE_H265, "h265");
}

/// The identity fails on its 10th frame, the 13th pushed: frames 1-9 came
/// out, and neither the failed frame nor the three queued behind it ever do.
#[test]
fn a_failure_on_the_output_thread_loses_the_frames_in_flight() {
    let (mut h, queue) = holding_back(FAKE_H264, &[("fail-after-buffers", "10")]);
    let double = h.element().unwrap();
    let bus = gst::Bus::new();
    double.set_bus(Some(&bus));
    for n in 0..13 {
        h.push(frame(n)).unwrap();
        if (IN_FLIGHT..12).contains(&n) {
            assert_eq!(pull_frame(&mut h), n - IN_FLIGHT);
        }
    }
    let error = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Error])
        .expect("the output thread fails");
    assert_eq!(
        error.src().map(|s| s.name().to_string()).as_deref(),
        Some("mpp-encode")
    );
    // The output thread stops for good. GStreamer 1.22's queue keeps the
    // frames it held until it is flushed or deactivated; they never come out.
    let task = queue.static_pad("src").unwrap();
    assert!(common::poll_until(TIMEOUT, || {
        task.task_state() == gst::TaskState::Paused
    }));
    assert_eq!(h.buffers_in_queue(), 0);
    assert_eq!(queued(&queue), IN_FLIGHT);
    // The element is dead: the next frame is refused.
    assert_eq!(h.push(frame(13)), Err(gst::FlowError::Error));
    assert_eq!(h.buffers_in_queue(), 0);
    assert_eq!(queued(&queue), IN_FLIGHT);
    double.set_bus(None);
}
