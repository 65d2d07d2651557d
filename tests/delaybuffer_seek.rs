// SPDX-License-Identifier: MPL-2.0
//! Stream events through delaybuffer after a flushing seek, checked the way
//! GStreamer's validate checks pads: every flush is followed by a SEGMENT
//! before any buffer or EOS, and the SEGMENT and EOS of a seek carry the
//! seek's seqnum, as they do through `queue` in the same place.

mod common;

use gst::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const SECOND: gst::ClockTime = gst::ClockTime::SECOND;

/// What a sink saw after the last FLUSH_STOP: events and buffers in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Segment(gst::Seqnum),
    Buffer,
    Eos(gst::Seqnum),
}

fn watch(sink: &gst::Element) -> Arc<Mutex<Vec<Seen>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER
            | gst::PadProbeType::EVENT_DOWNSTREAM
            | gst::PadProbeType::EVENT_FLUSH,
        move |_, info| {
            let mut s = s.lock().unwrap();
            match &info.data {
                Some(gst::PadProbeData::Buffer(_)) => s.push(Seen::Buffer),
                Some(gst::PadProbeData::Event(e)) => match e.type_() {
                    gst::EventType::FlushStop => s.clear(),
                    gst::EventType::Segment => s.push(Seen::Segment(e.seqnum())),
                    gst::EventType::Eos => s.push(Seen::Eos(e.seqnum())),
                    _ => (),
                },
                _ => (),
            }
            gst::PadProbeReturn::Ok
        },
    );
    seen
}

/// Prerolls `description` (its sink named `out`), seeks flushing to
/// [1 s, 1.5 s), plays to EOS: the seek's seqnum and what the sink saw since.
fn seek_in_paused(description: &str) -> (gst::Seqnum, Vec<Seen>) {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let seen = watch(&pipeline.by_name("out").unwrap());
    pipeline.set_state(gst::State::Paused).unwrap();
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(30));
    result.unwrap();
    let seek = gst::event::Seek::new(
        1.0,
        gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
        gst::SeekType::Set,
        SECOND,
        gst::SeekType::Set,
        SECOND * 3 / 2,
    );
    let seqnum = seek.seqnum();
    assert!(pipeline.send_event(seek));
    // PLAYING at once, while the seek's preroll may still be under way.
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{:?}", log.errors);
    let seen = seen.lock().unwrap().clone();
    (seqnum, seen)
}

fn assert_segment_first_and_seqnums(seqnum: gst::Seqnum, seen: &[Seen], run: usize, what: &str) {
    assert_eq!(
        seen.first(),
        Some(&Seen::Segment(seqnum)),
        "{what}, run {run}: {seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&Seen::Eos(seqnum)),
        "{what}, run {run}: {seen:?}"
    );
    assert!(seen.contains(&Seen::Buffer), "{what}, run {run}: no buffer");
}

#[test]
fn a_flushing_seek_in_paused_is_followed_by_its_segment_and_eos_every_time() {
    common::init();
    for (what, element, runs) in [
        ("queue", "queue", 4),
        ("delaybuffer", "delaybuffer delay=500000000", 16),
        // A tap, beside `src`, behaves the same.
        (
            "a delaybuffer tap",
            "delaybuffer name=d delay=500000000 ! fakesink sync=true d.tap_0",
            8,
        ),
    ] {
        for run in 0..runs {
            let (seqnum, seen) = seek_in_paused(&format!(
                "videotestsrc num-buffers=150 ! video/x-raw,width=160,height=120,framerate=30/1 ! \
                 {element} ! fakesink name=out sync=true"
            ));
            assert_segment_first_and_seqnums(seqnum, &seen, run, what);
        }
    }
}

#[test]
fn behind_qtdemux_the_seeks_eos_carries_the_seeks_seqnum() {
    common::init();
    let dir = common::temp_dir("delaybuffer-qtdemux");
    let file = dir.join("in.mp4");
    let log = common::run_to_eos(
        &format!(
            "videotestsrc num-buffers=150 ! video/x-raw,width=160,height=120,framerate=30/1 ! \
             x264enc speed-preset=ultrafast key-int-max=15 ! h264parse ! mp4mux ! filesink location={}",
            file.display()
        ),
        TIMEOUT,
    );
    assert!(log.eos, "{:?}", log.errors);
    for (what, element) in [
        ("queue", "queue"),
        ("delaybuffer", "delaybuffer delay=500000000"),
    ] {
        for run in 0..3 {
            let (seqnum, seen) = seek_in_paused(&format!(
                "filesrc location={} ! qtdemux ! h264parse ! {element} ! fakesink name=out sync=true",
                file.display()
            ));
            assert_segment_first_and_seqnums(seqnum, &seen, run, what);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
