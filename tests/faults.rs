// SPDX-License-Identifier: MPL-2.0
//! Faults in whole pipelines (issue 7): flushing seeks while seven seconds are
//! held, an upstream pool that runs dry, EOS before the delay is filled and
//! caps renegotiated mid-stream. The element-level forms of these are in
//! tests/delaybuffer.rs; here they run behind a tee, beside a real-time branch.

mod common;

use gst::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECOND: gst::ClockTime = gst::ClockTime::SECOND;
const MS: gst::ClockTime = gst::ClockTime::MSECOND;
const TIMEOUT: Duration = Duration::from_secs(60);

fn pipeline(description: &str) -> gst::Pipeline {
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// The pts of every buffer a sink receives since the last FLUSH_STOP: after a
/// flushing seek it holds only what the new segment delivered.
fn pts_since_last_flush(sink: &gst::Element) -> Arc<Mutex<Vec<gst::ClockTime>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_FLUSH,
        move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(buffer)) => {
                    s.lock().unwrap().push(buffer.pts().unwrap());
                }
                Some(gst::PadProbeData::Event(event))
                    if event.type_() == gst::EventType::FlushStop =>
                {
                    s.lock().unwrap().clear();
                }
                _ => (),
            }
            gst::PadProbeReturn::Ok
        },
    );
    seen
}

fn level_time(delay: &gst::Element) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(delay.property::<u64>("current-level-time"))
}

/// Waits until the delaybuffer holds at least `span` of running time.
fn wait_until_held(delay: &gst::Element, span: gst::ClockTime) {
    assert!(
        common::poll_until(TIMEOUT, || level_time(delay) >= span),
        "the delay never filled: {}",
        level_time(delay)
    );
}

fn frame_pts(n: u64) -> gst::ClockTime {
    // videotestsrc's own rounding: n x 1 s / 30, floored.
    gst::ClockTime::from_nseconds(n * SECOND.nseconds() / 30)
}

/// Seeks several times, each time while the delay branch holds its full seven
/// seconds, then plays the last segment to EOS: both branches must get exactly
/// the frames of the last segment, in order, none from before the flush.
#[test]
fn flushing_seeks_while_seven_seconds_are_held_lose_and_repeat_nothing() {
    common::init();
    let delay = 7 * SECOND;
    // Sinks do not sync: the source runs as fast as it can, so the delay
    // branch holds a sliding seven seconds of stream whenever a seek lands.
    let pipeline = pipeline(&format!(
        "videotestsrc ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! tee name=t \
         t. ! queue ! fakesink name=realtime sync=false \
         t. ! queue ! delaybuffer name=delay delay={} ! fakesink name=delayed sync=false",
        delay.nseconds()
    ));
    let delaybuffer = pipeline.by_name("delay").unwrap();
    let realtime = pts_since_last_flush(&pipeline.by_name("realtime").unwrap());
    let delayed = pts_since_last_flush(&pipeline.by_name("delayed").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let seek = |start: gst::ClockTime, stop: gst::ClockTime| {
        pipeline
            .seek(
                1.0,
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::SeekType::Set,
                start,
                gst::SeekType::Set,
                stop,
            )
            .expect("the flushing seek is handled");
    };

    // Long segments, so that each seek lands while the stream still flows.
    for start_s in [100, 20, 300, 50] {
        wait_until_held(&delaybuffer, delay);
        let start = gst::ClockTime::from_seconds(start_s);
        seek(start, start + 600 * SECOND);
        // The flush dropped the old window; the new one starts at the seek.
        wait_until_held(&delaybuffer, delay);
        let delayed = delayed.lock().unwrap();
        assert!(
            delayed.iter().all(|pts| *pts >= start),
            "a frame from before the seek to {start} left after the flush: {:?}",
            delayed.iter().find(|pts| **pts < start)
        );
    }
    // The last seek, while seven seconds are held again, plays ten seconds to EOS.
    wait_until_held(&delaybuffer, delay);
    seek(10 * SECOND, 20 * SECOND);
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    let stats: gst::Structure = delaybuffer.property("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");

    let expected: Vec<_> = (300..600).map(frame_pts).collect();
    assert_eq!(*realtime.lock().unwrap(), expected, "real-time branch");
    assert_eq!(*delayed.lock().unwrap(), expected, "delayed branch");
    assert_eq!(stats.get::<u32>("current-level-buffers").unwrap(), 0);
    assert_eq!(stats.get::<u64>("dropped").unwrap(), 0, "{stats:?}");
}

/// A live source whose pool holds fewer buffers than the delay needs, like a
/// camera with a few capture buffers: the pool runs dry while the delay fills.
/// delaybuffer says what upstream needs, held frames still leave on schedule
/// (which gives the pool its buffers back), and every frame gets through.
/// With `short-pool=wait`: the default copies instead (tests/delaybuffer_short_pool.rs).
#[test]
fn exhausted_upstream_pool_warns_and_every_frame_gets_through_on_time() {
    run_exhausted_pool(|_| ());
}

/// The same, with a bus sync handler that reacts to the starvation WARNING
/// in the thread that posts it, as an application or a parent bin may: it
/// reads `stats` and `current-level-buffers` and sets `delay`. delaybuffer
/// posts without holding its lock, so nothing deadlocks.
#[test]
fn starvation_warning_handled_in_a_sync_handler_does_not_deadlock() {
    let handled = Arc::new(Mutex::new(Vec::new()));
    let seen = handled.clone();
    run_exhausted_pool(move |pipeline| {
        let delay = pipeline.by_name("delay").unwrap().downgrade();
        pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
            let from_delay = msg.src().map(|s| s.name()) == Some("delay".into());
            if let (gst::MessageView::Warning(_), true, Some(delay)) =
                (msg.view(), from_delay, delay.upgrade())
            {
                let stats = delay.property::<gst::Structure>("stats");
                let level = delay.property::<u32>("current-level-buffers");
                let value = delay.property::<u64>("delay");
                delay.set_property("delay", value);
                seen.lock().unwrap().push((stats, level));
            }
            gst::BusSyncReply::Pass
        });
    });
    let handled = handled.lock().unwrap();
    assert_eq!(handled.len(), 1);
    let (stats, level) = &handled[0];
    assert!(*level >= 2, "{stats:?}");
    assert_eq!(stats.get::<u32>("current-level-buffers").unwrap(), *level);
}

/// Runs the exhausted-pool pipeline after `prepare` and checks its outcome.
fn run_exhausted_pool(prepare: impl FnOnce(&gst::Pipeline)) {
    common::init();
    const POOL_SIZE: u32 = 6;
    const FRAMES: usize = 18;
    let delay = 1500 * MS;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "GRAY8")
        .field("width", 64i32)
        .field("height", 48i32)
        .field("framerate", gst::Fraction::new(30, 1))
        .build();
    let pipeline = pipeline(&format!(
        "appsrc name=camera is-live=true format=time do-timestamp=true ! tee name=t \
         t. ! queue ! fakesink name=realtime sync=true \
         t. ! delaybuffer name=delay delay={} stall-timeout=500000000 short-pool=wait ! fakesink name=delayed sync=true",
        delay.nseconds()
    ));
    prepare(&pipeline);
    let camera = pipeline
        .by_name("camera")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    camera.set_caps(Some(&caps));
    let realtime = common::record_arrivals(&pipeline.by_name("realtime").unwrap());
    let delayed = common::record_arrivals(&pipeline.by_name("delayed").unwrap());

    let pool = gst::BufferPool::new();
    let mut config = pool.config();
    config.set_params(Some(&caps), 64 * 48, POOL_SIZE, POOL_SIZE);
    pool.set_config(config).unwrap();
    pool.set_active(true).unwrap();

    pipeline.set_state(gst::State::Playing).unwrap();
    let producer = {
        let pool = pool.clone();
        let camera = camera.clone();
        std::thread::spawn(move || {
            let dont_wait =
                gst::BufferPoolAcquireParams::with_flags(gst::BufferPoolAcquireFlags::DONTWAIT);
            let mut found_empty = 0;
            for _ in 0..FRAMES {
                let buffer = match pool.acquire_buffer(Some(&dont_wait)) {
                    Ok(buffer) => buffer,
                    Err(_) => {
                        found_empty += 1;
                        // Blocks until a held frame leaves delaybuffer.
                        let Ok(buffer) = pool.acquire_buffer(None) else {
                            return found_empty;
                        };
                        buffer
                    }
                };
                camera.push_buffer(buffer).unwrap();
                std::thread::sleep(Duration::from_millis(33));
            }
            camera.end_of_stream().unwrap();
            found_empty
        })
    };
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    // A deadlocked pipeline fails here, before the teardown would hang on it.
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let found_empty = producer.join().unwrap();
    pipeline.bus().unwrap().unset_sync_handler();
    pipeline.set_state(gst::State::Null).unwrap();
    pool.set_active(false).unwrap();

    // The pool really ran dry: the producer had to wait for held frames.
    assert!(found_empty > 0, "the pool never ran dry");
    let needed = (delay.nseconds() * 30).div_ceil(SECOND.nseconds()) + 2;
    // One WARNING, the starvation one: delaybuffer also raises the maximum
    // latency by what it can hold, so the sink's processing deadline is met
    // even though appsrc itself buffers nothing ("Not enough buffering").
    assert_eq!(log.warnings.len(), 1, "{:#?}", log.warnings);
    let starvation = &log.warnings;
    assert!(starvation[0].contains("GstDelayBuffer:delay: Input stopped"));
    assert!(
        starvation[0].contains(&format!("It needs {needed} buffers")),
        "{}",
        starvation[0]
    );

    let realtime = realtime.lock().unwrap();
    let delayed = delayed.lock().unwrap();
    assert_eq!(realtime.len(), FRAMES);
    assert_eq!(delayed.len(), FRAMES);
    for (r, d) in realtime.iter().zip(delayed.iter()) {
        assert_eq!(r.pts, d.pts, "frames in the same order on both branches");
        assert_eq!(d.due, r.due + delay, "{r:?} {d:?}");
        assert!(d.arrived >= d.due, "left before it was due: {d:?}");
    }
}

/// EOS arrives while the delay is still filling: in a live pipeline the held
/// frames leave on schedule and EOS follows them; not live they all leave at
/// EOS. Either way every frame gets through and the pipeline ends.
#[test]
fn eos_while_the_delay_is_filling_live() {
    common::init();
    let delay = 2 * SECOND;
    let pipeline = pipeline(&format!(
        "videotestsrc is-live=true num-buffers=15 ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! tee name=t \
         t. ! queue ! fakesink name=realtime sync=true \
         t. ! delaybuffer delay={} ! fakesink name=delayed sync=true",
        delay.nseconds()
    ));
    let realtime = common::record_arrivals(&pipeline.by_name("realtime").unwrap());
    let delayed = common::record_arrivals(&pipeline.by_name("delayed").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    let eos_at = pipeline.current_running_time().unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    // Input ended with EOS while filling: that is not a stalled pool.
    assert!(log.warnings.is_empty(), "{:#?}", log.warnings);

    let realtime = realtime.lock().unwrap();
    let delayed = delayed.lock().unwrap();
    assert_eq!(realtime.len(), 15);
    assert_eq!(delayed.len(), 15);
    for (r, d) in realtime.iter().zip(delayed.iter()) {
        assert_eq!((r.pts, r.pts + delay), (d.pts, d.due));
        assert!(d.arrived >= d.due, "left before it was due: {d:?}");
    }
    // The source's EOS came after half a second; the pipeline's waited for the delayed branch.
    let last_due = delayed.last().unwrap().due;
    assert!(
        eos_at >= last_due,
        "EOS at {eos_at}, last frame due {last_due}"
    );
}

/// The application ends a live rig (gst-launch -e, `send_event(eos)`) before
/// the first delayed frame has left. The delayed sink prerolled at once on a
/// GAP, so the pipeline is PLAYING and the EOS goes through: without it the
/// pipeline stayed PAUSED for `delay`, and the EOS deadlocked (send_event
/// holds the state lock that the pipeline needed to reach PLAYING).
#[test]
fn application_eos_before_the_first_delayed_frame_ends_the_pipeline() {
    common::init();
    let delay = 3 * SECOND;
    let pipeline = pipeline(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! tee name=t \
         t. ! queue ! fakesink name=realtime sync=true \
         t. ! queue ! delaybuffer name=delay delay={} ! fakesink name=delayed sync=true",
        delay.nseconds()
    ));
    let realtime = common::record_arrivals(&pipeline.by_name("realtime").unwrap());
    let delayed = common::record_arrivals(&pipeline.by_name("delayed").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    // PLAYING before the first delayed frame left.
    let (result, state, _) = pipeline.state(gst::ClockTime::from_seconds(2));
    assert_eq!(
        (result, state),
        (Ok(gst::StateChangeSuccess::Success), gst::State::Playing)
    );
    let stats = pipeline
        .by_name("delay")
        .unwrap()
        .property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("pushed").unwrap(), 0, "{stats:?}");
    std::thread::sleep(Duration::from_millis(500));
    // From another thread, as gst-launch's interrupt handler does: if it
    // deadlocks, the bus below times out instead of the test hanging.
    let sender = {
        let pipeline = pipeline.clone();
        std::thread::spawn(move || pipeline.send_event(gst::event::Eos::new()))
    };
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    assert!(sender.join().unwrap());
    pipeline.set_state(gst::State::Null).unwrap();

    // Every frame the real-time branch got also left the delayed one, on time.
    let realtime = realtime.lock().unwrap();
    let delayed = delayed.lock().unwrap();
    assert!(!realtime.is_empty());
    assert_eq!(
        realtime.iter().map(|a| a.pts).collect::<Vec<_>>(),
        delayed.iter().map(|a| a.pts).collect::<Vec<_>>()
    );
    for d in delayed.iter() {
        assert!(d.arrived >= d.due, "left before it was due: {d:?}");
    }
}

#[test]
fn eos_while_the_delay_is_filling_not_live() {
    common::init();
    // The whole stream is one second; the delay seven.
    let delay = 7 * SECOND;
    let pipeline = pipeline(&format!(
        "videotestsrc num-buffers=30 ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! tee name=t \
         t. ! queue ! fakesink name=realtime sync=false \
         t. ! delaybuffer name=delay delay={} ! fakesink name=delayed sync=false",
        delay.nseconds()
    ));
    let realtime = pts_since_last_flush(&pipeline.by_name("realtime").unwrap());
    let delayed = pts_since_last_flush(&pipeline.by_name("delayed").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let expected: Vec<_> = (0..30).map(frame_pts).collect();
    assert_eq!(*realtime.lock().unwrap(), expected);
    assert_eq!(*delayed.lock().unwrap(), expected);
}

/// The resolution changes mid-stream (a capsfilter is changed after 30 frames)
/// in a pipeline with all three elements: every delayed buffer matches the caps
/// in force when it leaves, the software guard's encoder follows the new size,
/// no frame is lost and leakcheck finds nothing.
#[test]
fn caps_renegotiated_mid_stream_through_all_three_elements() {
    common::init();
    let dir = common::temp_dir("faults-renegotiation");
    // A byte-stream file: Matroska refuses caps changes, an elementary stream does not.
    let out = dir.join("out.h264");
    let pipeline = pipeline(&format!(
        "videotestsrc num-buffers=90 ! capsfilter name=size \
           caps=video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! tee name=t \
         t. ! queue ! vpuguardenc name=guard mode=software sw-properties=\"props,speed-preset=ultrafast\" ! \
              video/x-h264,stream-format=byte-stream ! filesink location={} \
         t. ! queue ! delaybuffer delay=500000000 ! fakesink name=delayed sync=false \
         leakcheck name=check grace=0",
        out.display()
    ));
    common::change_caps_at(
        &pipeline.by_name("size").unwrap(),
        29,
        common::i420(640, 480),
    );
    // Every delayed buffer against the caps in force on the pad it arrives on.
    let delayed_widths = Arc::new(Mutex::new(Vec::new()));
    let widths = delayed_widths.clone();
    pipeline
        .by_name("delayed")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let caps = pad.current_caps().unwrap();
            let video = gst_video::VideoInfo::from_caps(&caps).unwrap();
            let buffer = info.buffer().unwrap();
            assert_eq!(buffer.size(), video.size(), "buffer does not match {caps}");
            widths.lock().unwrap().push(video.width());
            gst::PadProbeReturn::Ok
        });
    // The widths of the encoded stream's caps, as the guard sends them.
    let encoded_widths = common::caps_widths(
        &pipeline
            .by_name("guard")
            .unwrap()
            .static_pad("src")
            .unwrap(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    let check = pipeline.by_name("check").unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let report = check.emit_by_name::<gst::Structure>("get-report", &[]);
    assert_eq!(report.get::<u32>("leaks").unwrap(), 0, "{report:?}");

    let delayed_widths = delayed_widths.lock().unwrap();
    assert_eq!(delayed_widths.len(), 90);
    assert!(
        delayed_widths[..30].iter().all(|w| *w == 320),
        "{delayed_widths:?}"
    );
    assert_eq!(delayed_widths.last(), Some(&640), "{delayed_widths:?}");
    let mut encoded_widths = encoded_widths.lock().unwrap().clone();
    encoded_widths.dedup();
    assert_eq!(encoded_widths, [320, 640]);
    let (codec, frames) = common::probe_video(&out);
    assert_eq!((codec.as_str(), frames), ("h264", 90));
    std::fs::remove_dir_all(&dir).unwrap();
}
