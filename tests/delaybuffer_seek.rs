// SPDX-License-Identifier: MPL-2.0
//! Stream events through delaybuffer after a flushing seek, checked the way
//! GStreamer's validate checks pads: every flush is followed by a SEGMENT
//! before any buffer or EOS, and the SEGMENT and EOS of a seek carry the
//! seek's seqnum, as they do through `queue` in the same place.

mod common;

use common::stream_order::{self, Seen, assert_segment_first_and_seqnums};
use gst::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const SECOND: gst::ClockTime = gst::ClockTime::SECOND;

/// Prerolls `description` (its sink named `out`), seeks flushing to
/// [1 s, 1.5 s), plays to EOS: the seek's seqnum and what the sink saw since.
fn seek_in_paused(description: &str) -> (gst::Seqnum, Vec<Seen>) {
    let run = stream_order::seek_in_paused(description, SECOND * 3 / 2, TIMEOUT);
    assert!(
        run.log.eos && run.log.errors.is_empty(),
        "{:?}",
        run.log.errors
    );
    (run.seqnum, run.seen)
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

/// Every SEGMENT, GAP and EOS a sink pad sees, with its seqnum, in order.
fn record_events(pad: &gst::Pad) -> Arc<Mutex<Vec<(gst::EventType, gst::Seqnum)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(e)) = &info.data
            && matches!(
                e.type_(),
                gst::EventType::Segment | gst::EventType::Gap | gst::EventType::Eos
            )
        {
            s.lock().unwrap().push((e.type_(), e.seqnum()));
        }
        gst::PadProbeReturn::Ok
    });
    seen
}

/// Makes every buffer reaching `pad` after the first `pass` fail, as a
/// decoder refusing it would.
fn refuse_buffers(pad: &gst::Pad, pass: u32) {
    let seen = AtomicU32::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if seen.fetch_add(1, Ordering::Relaxed) < pass {
            return gst::PadProbeReturn::Ok;
        }
        info.data = None;
        info.flow_res = Err(gst::FlowError::NotNegotiated);
        gst::PadProbeReturn::Handled
    });
}

fn seqnums_of(
    seen: &Mutex<Vec<(gst::EventType, gst::Seqnum)>>,
    type_: gst::EventType,
) -> Vec<gst::Seqnum> {
    let seen = seen.lock().unwrap();
    seen.iter()
        .filter(|(t, _)| *t == type_)
        .map(|(_, s)| *s)
        .collect()
}

/// A tap of `delaybuffer` with `delay` (ns) into a new fakesink in `pipeline`:
/// the fakesink's sink pad.
fn tap_sink(pipeline: &gst::Pipeline, delaybuffer: &gst::Element, delay: u64) -> gst::Pad {
    let tap = delaybuffer.request_pad_simple("tap_%u").unwrap();
    tap.set_property("delay", delay);
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    pipeline.add(&sink).unwrap();
    let pad = sink.static_pad("sink").unwrap();
    tap.link(&pad).unwrap();
    pad
}

/// When downstream fails while an EOS is held, delaybuffer reports the error
/// and sends downstream an EOS in place of the one it held: with that EOS's
/// seqnum on `src`, with the segment's on a tap (whose downstream fails on
/// its own), never a new one.
#[test]
fn an_eos_sent_after_downstream_failed_keeps_the_streams_seqnum() {
    common::init();
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         delaybuffer name=d delay=1000000000 ! fakesink name=out",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let delaybuffer = pipeline.by_name("d").unwrap();
    let upstream = record_events(&delaybuffer.static_pad("sink").unwrap());
    let out = pipeline.by_name("out").unwrap().static_pad("sink").unwrap();
    let on_src = record_events(&out);
    // The sink prerolls on the GAP: nothing gets through.
    refuse_buffers(&out, 0);
    let tap = tap_sink(&pipeline, &delaybuffer, 0);
    let on_tap = record_events(&tap);
    // The tap's sink prerolls on its first buffer, then refuses.
    refuse_buffers(&tap, 2);
    pipeline.set_state(gst::State::Playing).unwrap();
    let ended = |seen: &Mutex<Vec<_>>| !seqnums_of(seen, gst::EventType::Eos).is_empty();
    assert!(
        common::poll_until(TIMEOUT, || ended(&on_src) && ended(&on_tap)),
        "src saw {:?}, the tap {:?}",
        on_src.lock().unwrap(),
        on_tap.lock().unwrap()
    );
    let log = common::collect_bus(&pipeline, Duration::from_millis(200), |log| {
        log.errors.len() >= 2
    });
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(!log.errors.is_empty(), "no ERROR for the failed pushes");
    let upstream_eos = seqnums_of(&upstream, gst::EventType::Eos);
    assert_eq!(seqnums_of(&on_src, gst::EventType::Eos), upstream_eos);
    assert_eq!(
        seqnums_of(&on_tap, gst::EventType::Eos),
        seqnums_of(&on_tap, gst::EventType::Segment)
    );
}

/// A gate that holds upstream's second buffer at delaybuffer's sink pad
/// until `open` is called: delaybuffer then holds one buffer, not yet due,
/// and its preroll GAP must go out whatever the scheduling (not live, a
/// full bound or headroom lets the oldest buffer out, and downstream then
/// prerolls on that buffer instead). A gate never opened fails the test by
/// its timeout.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    fn hold_second_buffer(&self, delaybuffer: &gst::Element) {
        let gate = self.clone();
        let buffers = AtomicU32::new(0);
        delaybuffer.static_pad("sink").unwrap().add_probe(
            gst::PadProbeType::BUFFER,
            move |_, _| {
                if buffers.fetch_add(1, Ordering::SeqCst) == 1 {
                    let (lock, cond) = &*gate.0;
                    let open = lock.lock().unwrap();
                    let _ = cond
                        .wait_timeout_while(open, TIMEOUT, |open| !*open)
                        .unwrap();
                }
                gst::PadProbeReturn::Ok
            },
        );
    }

    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }
}

/// The GAP that `src` and a tap send for downstream to preroll on while the
/// delay fills carries the seqnum of the segment it is part of.
#[test]
fn the_preroll_gaps_carry_the_segments_seqnum() {
    common::init();
    // An hour's delay: the sinks preroll only on the GAPs.
    let pipeline = gst::parse::launch(
        "videotestsrc ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         delaybuffer name=d delay=3600000000000 max-size-buffers=5 ! fakesink name=out",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let delaybuffer = pipeline.by_name("d").unwrap();
    let on_src = record_events(&pipeline.by_name("out").unwrap().static_pad("sink").unwrap());
    let on_tap = record_events(&tap_sink(&pipeline, &delaybuffer, 3_600_000_000_000));
    let gate = Gate::default();
    gate.hold_second_buffer(&delaybuffer);
    pipeline.set_state(gst::State::Paused).unwrap();
    let gaps_out = || {
        [&on_src, &on_tap]
            .iter()
            .all(|seen| !seqnums_of(seen, gst::EventType::Gap).is_empty())
    };
    let prerolled = common::poll_until(TIMEOUT, gaps_out);
    gate.open();
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(30));
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        prerolled,
        "src {:?}, tap {:?}",
        on_src.lock().unwrap(),
        on_tap.lock().unwrap()
    );
    assert_eq!(result, Ok(gst::StateChangeSuccess::Success));
    for (what, seen) in [("src", on_src), ("tap", on_tap)] {
        let gaps = seqnums_of(&seen, gst::EventType::Gap);
        assert_eq!(gaps.len(), 1, "{what}: {:?}", seen.lock().unwrap());
        assert_eq!(gaps, seqnums_of(&seen, gst::EventType::Segment), "{what}");
    }
}
/// A preroll GAP on its way out while a flushing seek passes (its pushing
/// thread preempted between delaybuffer's look at the flushes and
/// downstream, here held in a probe until the seek's FLUSH_STOP reached the
/// sink, or 2 s passed): it never reaches the sink after that FLUSH_STOP,
/// ahead of the seek's SEGMENT.
#[test]
fn a_preroll_gap_in_flight_during_a_flushing_seek_stays_in_the_old_stream() {
    common::init();
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=150 ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         delaybuffer name=d delay=1000000000 ! fakesink name=out sync=true",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    // What the sink sees, in order; and whether the FLUSH_STOP came.
    let seen = Arc::new(Mutex::new(Vec::<gst::EventType>::new()));
    let flush_stopped = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let (s, stopped) = (seen.clone(), flush_stopped.clone());
    let out = pipeline.by_name("out").unwrap().static_pad("sink").unwrap();
    out.add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::EVENT_FLUSH,
        move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data {
                s.lock().unwrap().push(e.type_());
                if e.type_() == gst::EventType::FlushStop {
                    *stopped.0.lock().unwrap() = true;
                    stopped.1.notify_all();
                }
            }
            gst::PadProbeReturn::Ok
        },
    );
    // The first GAP is held on delaybuffer's src pad, past its checks;
    // upstream waits for it (see Gate).
    let (gap_sent, gap_in_flight) = std::sync::mpsc::channel();
    let held = AtomicBool::new(false);
    let stopped = flush_stopped.clone();
    let delaybuffer = pipeline.by_name("d").unwrap();
    let gate = Gate::default();
    gate.hold_second_buffer(&delaybuffer);
    let upstream = gate.clone();
    let src = delaybuffer.static_pad("src").unwrap();
    src.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        let is_gap = matches!(&info.data, Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Gap);
        if is_gap && !held.swap(true, Ordering::SeqCst) {
            let _ = gap_sent.send(());
            upstream.open();
            let (lock, cond) = &*stopped;
            let guard = lock.lock().unwrap();
            let _ = cond
                .wait_timeout_while(guard, Duration::from_secs(2), |stopped| !*stopped)
                .unwrap();
        }
        gst::PadProbeReturn::Ok
    });
    let _ = pipeline.set_state(gst::State::Paused);
    gap_in_flight.recv_timeout(TIMEOUT).expect("a preroll GAP");
    let seek = gst::event::Seek::new(
        1.0,
        gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
        gst::SeekType::Set,
        SECOND,
        gst::SeekType::Set,
        SECOND * 2,
    );
    assert!(pipeline.send_event(seek));
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{:?}", log.errors);
    let seen = seen.lock().unwrap();
    let after_flush: Vec<_> = seen
        .iter()
        .skip_while(|t| **t != gst::EventType::FlushStop)
        .skip(1)
        .filter(|t| {
            matches!(
                t,
                gst::EventType::Segment | gst::EventType::Gap | gst::EventType::Eos
            )
        })
        .collect();
    assert_eq!(
        after_flush.first(),
        Some(&&gst::EventType::Segment),
        "after the FLUSH_STOP: {after_flush:?}"
    );
}
