// SPDX-License-Identifier: MPL-2.0
//! delaybuffer's request pads `tap_%u`: several delays of one held window,
//! moving a tap (instant replay), pre-record on encoded video, and taps that
//! are not linked.

mod common;

use gst::prelude::*;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MS: gst::ClockTime = gst::ClockTime::MSECOND;
const SECOND: gst::ClockTime = gst::ClockTime::SECOND;
/// A hang fails the test after this long.
const HANG: Duration = Duration::from_secs(90);

use common::launch;

/// Requests a tap of `delaybuffer` with `delay` and links it to `sink`
/// (added to `pipeline`).
fn tap_into(
    pipeline: &gst::Pipeline,
    delaybuffer: &gst::Element,
    delay: gst::ClockTime,
    sink: &gst::Element,
) -> gst::Pad {
    let tap = delaybuffer.request_pad_simple("tap_%u").unwrap();
    tap.set_property("delay", delay.nseconds());
    pipeline.add(sink).unwrap();
    tap.link(&sink.static_pad("sink").unwrap()).unwrap();
    tap
}

fn raw_source(frames: u32) -> String {
    format!(
        "videotestsrc is-live=true num-buffers={frames} ! \
         video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1"
    )
}

/// `frames` of `raw_source` into a delaybuffer `d` (delay 0) followed by
/// `rest` (its other properties and what `src` feeds); the pipeline and `d`.
fn raw_delay_line(frames: u32, rest: &str) -> (gst::Pipeline, gst::Element) {
    let pipeline = launch(&format!(
        "{} ! delaybuffer name=d delay=0{rest}",
        raw_source(frames)
    ));
    let delaybuffer = pipeline.by_name("d").unwrap();
    (pipeline, delaybuffer)
}

fn run_to_eos(pipeline: &gst::Pipeline) -> common::BusLog {
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(pipeline, HANG, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    log
}

/// A field of the `stats` of a tap or of delaybuffer itself.
fn stat(object: &impl IsA<glib::Object>, field: &str) -> u64 {
    object
        .property::<gst::Structure>("stats")
        .get::<u64>(field)
        .unwrap()
}

#[test]
fn three_taps_of_one_window_each_get_every_frame_at_their_own_lag() {
    let frames = 90;
    let (pipeline, delaybuffer) = raw_delay_line(frames, " ! fakesink name=main sync=true");
    let main = common::record_arrivals(&pipeline.by_name("main").unwrap());
    let delays = [gst::ClockTime::ZERO, 2 * SECOND, 5 * SECOND];
    let taps: Vec<_> = delays
        .iter()
        .map(|delay| {
            let sink = common::fakesink(true, true);
            let arrivals = common::record_arrivals(&sink);
            let pad = tap_into(&pipeline, &delaybuffer, *delay, &sink);
            (pad, arrivals, *delay)
        })
        .collect();
    pipeline.set_state(gst::State::Playing).unwrap();
    // One window for the three: while nothing has left the 5 s tap yet,
    // each frame received is held once, not once per tap.
    let stats = || delaybuffer.property::<gst::Structure>("stats");
    let count = |s: &gst::Structure, field: &str| s.get::<u64>(field).unwrap();
    assert!(common::poll_until(HANG, || count(&stats(), "received") >= 45));
    let held = stats();
    assert!(
        count(&held, "window-buffers") <= count(&held, "received")
            && count(&held, "window-buffers") + 2 >= count(&held, "received"),
        "{held:?}"
    );
    let log = common::collect_bus(&pipeline, HANG, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    assert!(log.warnings.is_empty(), "{:#?}", log.warnings);
    let main = main.lock().unwrap();
    assert_eq!(main.len(), frames as usize);
    for (pad, arrivals, delay) in &taps {
        let got = arrivals.lock().unwrap();
        assert_eq!(got.len(), frames as usize, "{} lost frames", pad.name());
        for (m, t) in main.iter().zip(got.iter()) {
            assert_eq!(m.pts, t.pts);
            assert_eq!(t.due, m.due + *delay, "{}: {t:?}", pad.name());
            assert!(t.arrived >= t.due, "{} left early: {t:?}", pad.name());
        }
        assert_eq!(stat(pad, "pushed"), frames as u64);
        assert_eq!(stat(pad, "dropped"), 0);
    }
}

#[test]
fn a_tap_moved_from_zero_to_five_seconds_replays_without_losing_anything() {
    let frames = 360; // 12 s
    let (pipeline, delaybuffer) =
        raw_delay_line(frames, " window=5000000000 ! fakesink name=main sync=true");
    let main = common::record_pts(&pipeline.by_name("main").unwrap());
    let sink = common::fakesink(true, true);
    let arrivals = common::record_arrivals(&sink);
    let tap = tap_into(&pipeline, &delaybuffer, gst::ClockTime::ZERO, &sink);
    pipeline.set_state(gst::State::Playing).unwrap();
    assert!(
        common::poll_until(HANG, || pipeline
            .current_running_time()
            .is_some_and(|t| t >= 6 * SECOND)),
        "never reached 6 s"
    );
    // The move happens between these two readings, however loaded the machine.
    let before = pipeline.current_running_time().unwrap();
    tap.set_property("delay", (5 * SECOND).nseconds());
    let moved_at = pipeline.current_running_time().unwrap();
    let log = common::collect_bus(&pipeline, HANG, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");

    let got = arrivals.lock().unwrap();
    let pts: Vec<_> = got.iter().map(|a| a.pts).collect();
    let jumps: Vec<_> = pts.windows(2).filter(|w| w[1] < w[0]).collect();
    assert_eq!(jumps.len(), 1, "one jump back: {jumps:?}");
    let at = pts.windows(2).position(|w| w[1] < w[0]).unwrap() + 1;
    // Back 5 s from the move, on the frame at or before that.
    let frame = gst::ClockTime::from_nseconds(33_333_334);
    let target = moved_at - 5 * SECOND;
    assert!(
        pts[at] <= target && pts[at] + frame >= before - 5 * SECOND,
        "moved between {before} and {moved_at}, replay from {}",
        pts[at]
    );
    // In order, every frame, to the end.
    let expected = main.lock().unwrap().clone();
    assert_eq!(expected.len(), frames as usize);
    assert_eq!(pts[..at], expected[..at]);
    let from = expected.iter().position(|p| *p == pts[at]).unwrap();
    assert_eq!(pts[at..], expected[from..]);
    // Running time at the sink never went back, and after the jump the tap
    // runs 5 s behind.
    assert!(
        got.windows(2).all(|w| w[1].due >= w[0].due),
        "running time went back"
    );
    for a in &got[at + 1..] {
        if a.pts >= target + SECOND {
            assert_eq!(a.due, a.pts + 5 * SECOND, "{a:?}");
        }
    }
    assert_eq!(stat(&tap, "dropped"), 0);
}

#[test]
fn lowering_a_tap_delay_skips_ahead_and_counts_what_it_skipped() {
    let frames = 120;
    let (pipeline, delaybuffer) = raw_delay_line(frames, " ! fakesink name=main sync=true");
    let main = common::record_pts(&pipeline.by_name("main").unwrap());
    let sink = common::fakesink(true, true);
    let arrivals = common::record_arrivals(&sink);
    let tap = tap_into(&pipeline, &delaybuffer, 2 * SECOND, &sink);
    pipeline.set_state(gst::State::Playing).unwrap();
    assert!(common::poll_until(HANG, || stat(&tap, "pushed") >= 15));
    tap.set_property("delay", 0u64);
    let log = common::collect_bus(&pipeline, HANG, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let got = arrivals.lock().unwrap();
    let pts: Vec<_> = got.iter().map(|a| a.pts).collect();
    assert!(pts.windows(2).all(|w| w[1] > w[0]), "never back");
    let dropped = stat(&tap, "dropped");
    assert!(dropped > 30, "skipped {dropped}");
    assert_eq!(got.len() as u64 + dropped, frames as u64);
    assert_eq!(
        got.last().unwrap().pts,
        *main.lock().unwrap().last().unwrap()
    );
}

/// Frames 100 ms apart; which tap got what.
fn non_live_taps(src_linked: bool) -> (u64, Vec<u64>) {
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=50 ! video/x-raw,format=GRAY8,width=64,height=48,framerate=10/1 ! \
         delaybuffer name=d delay=500000000 {}",
        if src_linked {
            "! fakesink name=main"
        } else {
            ""
        }
    ));
    let delaybuffer = pipeline.by_name("d").unwrap();
    let linked = tap_into(
        &pipeline,
        &delaybuffer,
        SECOND,
        &gst::ElementFactory::make("fakesink").build().unwrap(),
    );
    // Requested and never linked.
    let unlinked = delaybuffer.request_pad_simple("tap_%u").unwrap();
    run_to_eos(&pipeline);
    let stats: gst::Structure = delaybuffer.property("stats");
    (
        stats.get::<u64>("pushed").unwrap(),
        vec![stat(&linked, "pushed"), stat(&unlinked, "pushed")],
    )
}

#[test]
fn an_unlinked_tap_or_src_never_stops_the_others() {
    let (pushed, taps) = non_live_taps(true);
    assert_eq!(pushed, 50);
    assert_eq!(taps[0], 50);
    assert!(taps[1] <= 1, "{taps:?}");
    // `src` unlinked: the tap still gets everything.
    let (_, taps) = non_live_taps(false);
    assert_eq!(taps[0], 50);
}

/// Pre-record: a tap turned on with a 3 s delay writes what came 3 s before,
/// from a keyframe, into a file that decodes cleanly.
#[test]
fn pre_record_starts_on_a_keyframe_up_to_three_seconds_and_a_gop_back() {
    let dir = common::temp_dir("prerecord");
    let file = dir.join("event.mkv");
    let pipeline = launch(
        "videotestsrc is-live=true num-buffers=240 pattern=ball ! \
           video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
         x264enc key-int-max=30 bframes=0 tune=zerolatency speed-preset=ultrafast ! \
         h264parse config-interval=-1 ! delaybuffer name=d delay=0 ! fakesink sync=true",
    );
    let delaybuffer = pipeline.by_name("d").unwrap();
    let record = gst::parse::bin_from_description(
        &format!(
            "h264parse ! matroskamux ! filesink async=false location={}",
            file.display()
        ),
        true,
    )
    .unwrap();
    let tap = delaybuffer.request_pad_simple("tap_%u").unwrap();
    tap.set_property("active", false);
    tap.set_property("delay", (3 * SECOND).nseconds());
    pipeline.add(&record).unwrap();
    tap.link(&record.static_pad("sink").unwrap()).unwrap();
    // The input running time of the first recorded frame (x264enc's pts
    // start at 1000 h), and whether it is a keyframe.
    let first: Arc<Mutex<Option<(gst::ClockTime, bool)>>> = Arc::default();
    let f = first.clone();
    tap.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let buffer = info.buffer().unwrap();
        let segment = pad.sticky_event::<gst::event::Segment>(0).unwrap();
        let segment = segment.segment().downcast_ref::<gst::ClockTime>().unwrap();
        let running_time = segment.to_running_time(buffer.pts().unwrap()).unwrap();
        f.lock().unwrap().get_or_insert((
            running_time - 3 * SECOND,
            !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        ));
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    assert!(common::poll_until(HANG, || pipeline
        .current_running_time()
        .is_some_and(|t| t >= 5 * SECOND)));
    assert_eq!(stat(&tap, "pushed"), 0, "an inactive tap sends nothing");
    let before = pipeline.current_running_time().unwrap();
    tap.set_property("active", true);
    let activated_at = pipeline.current_running_time().unwrap();
    let log = common::collect_bus(&pipeline, HANG, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");

    let (start, keyframe) = first.lock().unwrap().expect("the tap recorded");
    assert!(keyframe, "the recording starts on a delta frame");
    // At most 3 s and one GOP (30 frames) before the activation.
    assert!(
        start <= activated_at - 3 * SECOND && start + SECOND + 50 * MS >= before - 3 * SECOND,
        "activated between {before} and {activated_at}: first frame at running time {start}"
    );
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs (make deps installs it)");
    assert!(out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.is_empty(), "ffmpeg: {said}");
    let (codec, frames) = common::probe_video(&file);
    assert_eq!(codec, "h264");
    assert!(frames >= 150, "{frames} frames recorded");
}

/// PAUSED for 3 s while a tap's 2 s delay fills (a queue behind it, so that
/// the tap's own thread is what is tested): it sends nothing, nothing warns,
/// and after PLAYING every frame leaves `delay` after its running time.
#[test]
fn paused_while_a_tap_fills_releases_nothing() {
    let delay = 2 * SECOND;
    let (pipeline, delaybuffer) = raw_delay_line(
        75,
        " ! queue max-size-time=300000000 ! fakesink name=main sync=true",
    );
    let main = common::record_pts(&pipeline.by_name("main").unwrap());
    let queue = gst::ElementFactory::make("queue").build().unwrap();
    let sink = common::fakesink(true, true);
    let arrivals = common::record_arrivals(&sink);
    let tap = tap_into(&pipeline, &delaybuffer, delay, &queue);
    pipeline.add(&sink).unwrap();
    queue.link(&sink).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    assert!(common::poll_until(HANG, || pipeline
        .current_running_time()
        .is_some_and(|t| t >= 500 * MS)));
    pipeline.set_state(gst::State::Paused).unwrap();
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(10));
    assert!(result.is_ok(), "{result:?}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(stat(&tap, "pushed"), 0, "released while PAUSED");
    let log = run_to_eos(&pipeline);
    assert!(log.warnings.is_empty(), "{:#?}", log.warnings);
    let main = main.lock().unwrap();
    let got = arrivals.lock().unwrap();
    assert_eq!(got.iter().map(|a| a.pts).collect::<Vec<_>>(), *main);
    for a in got.iter() {
        assert_eq!(a.due, a.pts + delay, "{a:?}");
        assert!(a.arrived >= a.due, "left early: {a:?}");
    }
}

/// A tap unlinked (between two pushes) and linked again: the others go on,
/// and once linked again it goes on `delay` behind, dropping (counted) what
/// fell due meanwhile instead of sending it late.
#[test]
fn a_tap_unlinked_and_relinked_goes_on_delay_behind() {
    let delay = 300 * MS;
    let frames = 120;
    let (pipeline, delaybuffer) = raw_delay_line(frames, " ! fakesink name=main sync=true");
    let main = common::record_pts(&pipeline.by_name("main").unwrap());
    let sink = common::fakesink(true, false);
    let arrivals = common::record_arrivals(&sink);
    let tap = tap_into(&pipeline, &delaybuffer, delay, &sink);
    pipeline.set_state(gst::State::Playing).unwrap();
    let at = |t: gst::ClockTime| {
        assert!(common::poll_until(HANG, || pipeline
            .current_running_time()
            .is_some_and(|now| now >= t)));
    };
    at(SECOND);
    let (done_tx, done) = std::sync::mpsc::channel();
    let sinkpad = sink.static_pad("sink").unwrap();
    tap.add_probe(gst::PadProbeType::IDLE, move |pad, _| {
        pad.unlink(&sinkpad).unwrap();
        let _ = done_tx.send(());
        gst::PadProbeReturn::Remove
    });
    done.recv_timeout(HANG).expect("the tap never went idle");
    let unlinked_at = pipeline.current_running_time().unwrap();
    at(unlinked_at + SECOND);
    tap.link(&sink.static_pad("sink").unwrap()).unwrap();
    let log = common::collect_bus(&pipeline, HANG, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");

    assert_eq!(main.lock().unwrap().len(), frames as usize);
    let got = arrivals.lock().unwrap();
    assert!(got.windows(2).all(|w| w[1].pts > w[0].pts), "in order");
    for a in got.iter() {
        assert_eq!(a.due, a.pts + delay, "{a:?}");
    }
    // It missed what came while unlinked, counted, and got the end.
    assert!((got.len() as u64) < frames as u64);
    assert!(stat(&tap, "dropped") > 0);
    assert_eq!(
        got.last().unwrap().pts,
        *main.lock().unwrap().last().unwrap()
    );
}

/// Each tap answers LATENCY for itself: upstream's minimum (its delay is a
/// running-time shift, not latency), and no maximum (it never blocks input).
#[test]
fn a_tap_answers_latency_without_its_delay() {
    let (pipeline, delaybuffer) = raw_delay_line(30, " ! fakesink sync=true");
    let tap = tap_into(
        &pipeline,
        &delaybuffer,
        5 * SECOND,
        &common::fakesink(true, true),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    assert!(common::poll_until(HANG, || stat(&tap, "pushed") > 0
        || pipeline
            .current_running_time()
            .is_some_and(|t| t >= 500 * MS)));
    let mut query = gst::query::Latency::new();
    assert!(tap.query(&mut query));
    pipeline.set_state(gst::State::Null).unwrap();
    let (live, min, max) = query.result();
    assert!(live);
    assert!(min < SECOND, "min latency {min} includes the delay");
    assert_eq!(max, gst::ClockTime::NONE);
}

/// A tap never turned on still gets the stream's EOS, so the pipeline ends.
#[test]
fn an_inactive_tap_ends_with_the_stream() {
    let pipeline = launch(
        "videotestsrc num-buffers=30 ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! \
         delaybuffer name=d delay=0 window=1000000000 ! fakesink",
    );
    let delaybuffer = pipeline.by_name("d").unwrap();
    // It never prerolls (an inactive tap sends no buffer): async=false.
    let sink = common::fakesink(false, false);
    let tap = tap_into(&pipeline, &delaybuffer, SECOND, &sink);
    tap.set_property("active", false);
    run_to_eos(&pipeline);
    assert_eq!(stat(&tap, "pushed"), 0);
}

#[test]
fn taps_are_named_after_the_template_without_clashing() {
    common::init();
    let delaybuffer = gst::ElementFactory::make("delaybuffer").build().unwrap();
    let named = delaybuffer.request_pad_simple("tap_1").unwrap();
    let first = delaybuffer.request_pad_simple("tap_%u").unwrap();
    let second = delaybuffer.request_pad_simple("tap_%u").unwrap();
    assert_eq!(
        [named.name(), first.name(), second.name()],
        ["tap_1", "tap_0", "tap_2"]
    );
    delaybuffer.release_request_pad(&first);
    assert!(delaybuffer.static_pad("tap_0").is_none());
    assert_eq!(stat(&second, "pushed"), 0);
}

/// Not live, a leaky tap whose downstream blocks holds back neither the
/// input nor `src`: `src` gets the whole stream while the tap is blocked,
/// and the tap counts what left the window unread. (With `leaky=no` the
/// input waits for the tap, as a tee waits for its slowest branch: this
/// test then hangs until its bound.)
#[test]
fn a_leaky_tap_blocked_downstream_holds_back_nothing() {
    let pipeline = launch(
        "videotestsrc num-buffers=100 ! video/x-raw,format=GRAY8,width=64,height=48,framerate=10/1 ! \
         delaybuffer name=d delay=0 window=1000000000 ! fakesink name=main sync=false",
    );
    let delaybuffer = pipeline.by_name("d").unwrap();
    // Not prerolling on its blocked buffer: the pipeline plays without it.
    let slow = common::fakesink(false, false);
    let tap = tap_into(&pipeline, &delaybuffer, gst::ClockTime::ZERO, &slow);
    tap.set_property_from_str("leaky", "downstream");
    // The tap's downstream takes its first buffer and then nothing.
    let blocked = slow
        .static_pad("sink")
        .unwrap()
        .add_probe(
            gst::PadProbeType::BLOCK | gst::PadProbeType::BUFFER,
            |_, _| gst::PadProbeReturn::Ok,
        )
        .unwrap();
    let (main_ended, ended) = std::sync::mpsc::channel();
    let main_buffers = Arc::new(Mutex::new(0u64));
    let counted = main_buffers.clone();
    pipeline
        .by_name("main")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                match &info.data {
                    Some(gst::PadProbeData::Buffer(_)) => *counted.lock().unwrap() += 1,
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos => {
                        let _ = main_ended.send(());
                    }
                    _ => (),
                }
                gst::PadProbeReturn::Ok
            },
        );
    pipeline.set_state(gst::State::Playing).unwrap();
    ended
        .recv_timeout(HANG)
        .expect("src never ended while the leaky tap was blocked");
    assert_eq!(*main_buffers.lock().unwrap(), 100);
    slow.static_pad("sink").unwrap().remove_probe(blocked);
    let log = common::collect_bus(&pipeline, HANG, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let dropped = stat(&tap, "dropped");
    assert!(dropped > 0, "the blocked tap lost nothing");
    assert_eq!(stat(&tap, "pushed") + dropped, 100);
}

/// A tap requested while the stream runs starts with the stream-start, caps
/// and segment in force, as a tee's new branch does (a buffer before them
/// is a GStreamer critical, fatal here).
#[test]
fn a_tap_requested_while_playing_starts_with_the_streams_sticky_events() {
    let (pipeline, delaybuffer) = raw_delay_line(90, " ! fakesink sync=true");
    pipeline.set_state(gst::State::Playing).unwrap();
    assert!(
        common::poll_until(HANG, || stat(&delaybuffer, "pushed") >= 15),
        "no stream"
    );
    let sink = common::fakesink(false, false);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let what = match &info.data {
                Some(gst::PadProbeData::Buffer(_)) => "buffer".to_string(),
                Some(gst::PadProbeData::Event(e)) => e.type_().name().to_string(),
                _ => return gst::PadProbeReturn::Ok,
            };
            s.lock().unwrap().push(what);
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.add(&sink).unwrap();
    let tap = delaybuffer.request_pad_simple("tap_%u").unwrap();
    tap.link(&sink.static_pad("sink").unwrap()).unwrap();
    sink.sync_state_with_parent().unwrap();
    let log = common::collect_bus(&pipeline, HANG, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let seen = seen.lock().unwrap().clone();
    let first_buffer = seen.iter().position(|w| w == "buffer").expect("no buffer");
    assert_eq!(
        seen[..first_buffer],
        ["stream-start", "caps", "segment"],
        "{seen:?}"
    );
    assert!(stat(&tap, "pushed") > 0);
}

/// A tap requested while playing whose downstream takes only other caps
/// (RGB, which the source can produce) has upstream renegotiate: the caps
/// change reaches the new tap as the next thing in the window, and it still
/// goes out after the stream-start, never before it.
#[test]
fn a_caps_change_reaching_a_new_tap_follows_its_stream_start() {
    let pipeline = launch(
        "videotestsrc is-live=true num-buffers=90 ! video/x-raw,width=64,height=48,framerate=30/1 \
         ! delaybuffer name=d delay=0 ! fakesink sync=true",
    );
    let delaybuffer = pipeline.by_name("d").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    assert!(
        common::poll_until(HANG, || stat(&delaybuffer, "pushed") >= 15),
        "no stream"
    );
    let rgb = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::from_str("video/x-raw,format=RGB").unwrap(),
        )
        .build()
        .unwrap();
    let sink = common::fakesink(false, false);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data {
                s.lock().unwrap().push(e.type_().name().to_string());
            }
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.add_many([&rgb, &sink]).unwrap();
    rgb.link(&sink).unwrap();
    let tap = delaybuffer.request_pad_simple("tap_%u").unwrap();
    tap.link(&rgb.static_pad("sink").unwrap()).unwrap();
    sink.sync_state_with_parent().unwrap();
    rgb.sync_state_with_parent().unwrap();
    let log = common::collect_bus(&pipeline, HANG, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.first().map(String::as_str),
        Some("stream-start"),
        "{seen:?}"
    );
    assert!(stat(&tap, "pushed") > 0, "{seen:?}");
}

/// On H.264 (a keyframe a second) a move lands on the keyframe before its
/// target, up to a GOP early: the tap's running time still goes on from
/// now, never back (a synced sink would drop the early frames as late).
/// Lowering the delay a little, where the keyframe before the new target
/// lies behind what the tap already sent, sends nothing again.
#[test]
fn moves_on_encoded_video_neither_pull_running_time_back_nor_send_frames_twice() {
    let pipeline = launch(
        "videotestsrc is-live=true num-buffers=300 ! \
           video/x-raw,format=I420,width=160,height=120,framerate=30/1 ! \
         x264enc key-int-max=30 bframes=0 tune=zerolatency speed-preset=ultrafast ! \
         h264parse ! delaybuffer name=d delay=0 window=4000000000 ! fakesink sync=true",
    );
    let delaybuffer = pipeline.by_name("d").unwrap();
    let sink = common::fakesink(true, true);
    let arrivals = common::record_arrivals(&sink);
    let tap = tap_into(&pipeline, &delaybuffer, gst::ClockTime::ZERO, &sink);
    pipeline.set_state(gst::State::Playing).unwrap();
    let reached = |t: gst::ClockTime| {
        common::poll_until(HANG, || {
            pipeline.current_running_time().is_some_and(|now| now >= t)
        })
    };
    assert!(reached(4 * SECOND), "never reached 4 s");
    let replayed_from = arrivals.lock().unwrap().len();
    tap.set_property("delay", (2500 * MS).nseconds());
    // Now about 3 s behind (2.5 s, and 0.5 s landed early): at 7.5 s the
    // tap is mid-GOP at 4.5 s, and the keyframe before the new target
    // (4.7 s) is the one at 4 s, behind it.
    assert!(reached(7500 * MS), "never reached 7.5 s");
    let lowered_from = arrivals.lock().unwrap().len();
    tap.set_property("delay", (2800 * MS).nseconds());
    let log = common::collect_bus(&pipeline, HANG, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");

    let got = arrivals.lock().unwrap();
    assert!(
        got.windows(2).all(|w| w[1].due >= w[0].due),
        "running time went back: {:?}",
        got.windows(2).find(|w| w[1].due < w[0].due)
    );
    let pts: Vec<_> = got.iter().map(|a| a.pts).collect();
    let back: Vec<_> = (1..pts.len()).filter(|&i| pts[i] <= pts[i - 1]).collect();
    // One jump back, the replay; none after lowering the delay.
    assert_eq!(back.len(), 1, "{back:?}");
    assert!(
        back[0] >= replayed_from && back[0] < lowered_from,
        "{back:?}"
    );
}

/// A tap whose downstream fails (here a probe answering NOT_NEGOTIATED from
/// the fifth buffer on, as a decoder refusing a format would) stops with an
/// ERROR on the bus, as a queue's task does: the tap runs on its own thread,
/// so nobody upstream would hear of it otherwise.
#[test]
fn a_tap_whose_downstream_fails_is_an_error_on_the_bus() {
    let (pipeline, delaybuffer) = raw_delay_line(30, " ! fakesink");
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    let seen = std::sync::atomic::AtomicU32::new(0);
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 4 {
                return gst::PadProbeReturn::Ok;
            }
            info.data = None;
            info.flow_res = Err(gst::FlowError::NotNegotiated);
            gst::PadProbeReturn::Handled
        });
    tap_into(&pipeline, &delaybuffer, gst::ClockTime::ZERO, &sink);
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, HANG, |log| !log.errors.is_empty());
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(log.errors.len(), 1, "{log:#?}");
    assert!(
        log.errors[0].contains("tap_0") && log.errors[0].contains("NotNegotiated"),
        "{log:#?}"
    );
}

/// A tap 500 ms behind, linked while playing to a downstream that refuses
/// the stream's caps (videotestsrc's first format into a capsfilter of RGB,
/// which the source could produce): what it sends was held in the first
/// format, which no renegotiation
/// upstream changes, as it would for a tee's branch. Its ERROR says so,
/// naming the tap and the caps.
#[test]
fn a_tap_whose_downstream_refuses_the_caps_says_which_caps_and_what_to_do() {
    let pipeline = launch(
        "videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=30/1 \
         ! delaybuffer name=d delay=500000000 ! fakesink",
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(HANG.as_secs()));
    result.unwrap();
    let sink =
        gst::parse::bin_from_description("capsfilter caps=video/x-raw,format=RGB ! fakesink", true)
            .unwrap();
    let tap = pipeline
        .by_name("d")
        .unwrap()
        .request_pad_simple("tap_%u")
        .unwrap();
    pipeline.add(&sink).unwrap();
    sink.sync_state_with_parent().unwrap();
    tap.link(&sink.static_pad("sink").unwrap()).unwrap();
    let log = common::collect_bus(&pipeline, HANG, |log| !log.errors.is_empty());
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(log.errors.len(), 1, "{log:#?}");
    let error = &log.errors[0];
    assert!(
        error.contains("tap_0")
            && error.contains("does not accept the stream's caps (video/x-raw, format="),
        "{log:#?}"
    );
    assert!(error.contains("videoconvert"), "{log:#?}");
}
