// SPDX-License-Identifier: MPL-2.0
//! delaybuffer through gst_check::Harness (with its test clock) and real
//! pipelines driven by a gst_check::TestClock.

mod common;

use gst::prelude::*;
use gst_allocators::prelude::*;
use gst_check::Harness;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MS: gst::ClockTime = gst::ClockTime::MSECOND;

/// A live harness (its src pad answers LATENCY as live) around a delaybuffer.
fn harness(delay: gst::ClockTime) -> Harness {
    common::init();
    let mut h = Harness::new("delaybuffer");
    let element = h.element().unwrap();
    element.set_property("delay", delay.nseconds());
    // Tests that stop pushing are not about starvation, unless they say so.
    element.set_property(
        "stall-timeout",
        gst::ClockTime::from_seconds(3600).nseconds(),
    );
    h.set_src_caps_str("video/x-raw,format=RGBA,width=4,height=4,framerate=10/1");
    h.play();
    h
}

fn buffer(pts: gst::ClockTime) -> gst::Buffer {
    let mut buffer = gst::Buffer::with_size(64).unwrap();
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(pts);
        b.set_duration(100 * MS);
    }
    buffer
}

fn level(h: &Harness, name: &str) -> u64 {
    let element = h.element().unwrap();
    let value = element.property_value(name);
    value
        .get::<u32>()
        .map(u64::from)
        .unwrap_or_else(|_| value.get::<u64>().unwrap())
}

/// The running time at which the harness's sink renders `buffer`: the
/// running time delaybuffer gave it, pad offsets included.
fn rendered_at(h: &Harness, buffer: &gst::Buffer) -> gst::ClockTime {
    let event = h
        .sinkpad()
        .unwrap()
        .sticky_event::<gst::event::Segment>(0)
        .unwrap();
    let segment = event.segment().downcast_ref::<gst::ClockTime>().unwrap();
    // GStreamer applies src pad offsets to the SEGMENT event: they are in it.
    segment.to_running_time(buffer.pts().unwrap()).unwrap()
}

fn wait_until(done: impl Fn() -> bool) {
    assert!(
        common::poll_until(Duration::from_secs(5), done),
        "waited 5 s in vain"
    );
}

/// Waits until the element holds `n` buffers (the push returns before the
/// src task has looked at it).
fn wait_level(h: &Harness, n: u64) {
    let reached = common::poll_until(Duration::from_secs(1), || {
        level(h, "current-level-buffers") == n
    });
    assert!(
        reached,
        "level never reached {n}: {}",
        level(h, "current-level-buffers")
    );
}

#[test]
fn live_buffers_leave_delay_after_their_running_time() {
    let mut h = harness(500 * MS);
    for i in 0..3u64 {
        h.push(buffer(i * 100 * MS)).unwrap();
    }
    wait_level(&h, 3);
    assert!(h.try_pull().is_none(), "nothing may leave before its time");
    for i in 0..3u64 {
        h.crank_single_clock_wait().unwrap();
        let out = h.pull().unwrap();
        assert_eq!(out.pts(), Some(i * 100 * MS));
        // The clock stood exactly at running time + delay when it left.
        let now = h.testclock().unwrap().time();
        assert_eq!(now, i * 100 * MS + 500 * MS);
    }
    assert_eq!(level(&h, "current-level-buffers"), 0);
}

#[test]
fn latency_is_not_raised_by_the_delay() {
    let mut h = harness(5 * gst::ClockTime::SECOND);
    let mut q = gst::query::Latency::new();
    assert!(
        h.element()
            .unwrap()
            .static_pad("src")
            .unwrap()
            .query(&mut q)
    );
    let (_, min, _) = q.result();
    assert!(min < gst::ClockTime::SECOND, "min latency {min}");
    // The running time of what leaves is shifted instead, and the src pad's
    // offset is left to the application.
    h.push(buffer(100 * MS)).unwrap();
    h.crank_single_clock_wait().unwrap();
    let out = h.pull().unwrap();
    assert_eq!(rendered_at(&h, &out), 100 * MS + 5 * gst::ClockTime::SECOND);
    assert_eq!(h.element().unwrap().static_pad("src").unwrap().offset(), 0);
}

/// Like queue, delaybuffer raises the maximum latency by what it can still
/// hold once the delay is in (capacity - delay; unbounded without bounds),
/// never the minimum.
#[test]
fn max_latency_grows_by_what_can_be_held() {
    common::init();
    let frame = gst::ClockTime::from_nseconds(33_333_333);
    let latency_with = |props: &str| {
        // A live source that can keep one frame waiting: min = max = one frame.
        let pipeline = gst::parse::launch(&format!(
            "appsrc name=src is-live=true format=time min-latency={f} max-latency={f} \
               caps=video/x-raw,format=GRAY8,width=8,height=8,framerate=30/1 ! \
             delaybuffer name=delay delay=100000000 {props} ! fakesink name=sink",
            f = frame.nseconds()
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        // The caps (and so the framerate) reach delaybuffer with the first buffer.
        let src = pipeline.by_name("src").unwrap();
        let mut buffer = gst::Buffer::with_size(64).unwrap();
        buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        assert_eq!(
            src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]),
            gst::FlowReturn::Ok
        );
        let delay = pipeline.by_name("delay").unwrap();
        wait_until(|| {
            delay
                .property::<gst::Structure>("stats")
                .get::<u64>("received")
                == Ok(1)
        });
        let mut q = gst::query::Latency::new();
        let sink = pipeline.by_name("sink").unwrap();
        assert!(sink.static_pad("sink").unwrap().peer_query(&mut q));
        pipeline.set_state(gst::State::Null).unwrap();
        let (live, min, max) = q.result();
        assert!(live);
        (min, max)
    };
    assert_eq!(latency_with(""), (frame, None));
    assert_eq!(
        latency_with("leaky=downstream max-size-buffers=10"),
        (frame, None)
    );
    // What can be held beyond the 100 ms of the delay itself.
    assert_eq!(
        latency_with("max-size-time=2000000000"),
        (frame, Some(frame + 2 * gst::ClockTime::SECOND - 100 * MS))
    );
    assert_eq!(
        latency_with("max-size-buffers=10"),
        (frame, Some(frame + 10 * frame - 100 * MS))
    );
    // A bound below the delay leaves no headroom: upstream's own maximum.
    assert_eq!(latency_with("max-size-buffers=2"), (frame, Some(frame)));
    // A byte bound cannot be said in time: nothing is added.
    assert_eq!(latency_with("max-size-bytes=1000000"), (frame, Some(frame)));
}

#[test]
fn zero_copy_same_buffer_and_memory_out_while_shared() {
    let mut h = harness(100 * MS);
    let input = buffer(gst::ClockTime::ZERO);
    // Held elsewhere too, as behind a tee: refcount > 1.
    let keep = input.clone();
    let mem_in = input.peek_memory(0).as_ptr();
    h.push(input).unwrap();
    h.crank_single_clock_wait().unwrap();
    let out = h.pull().unwrap();
    assert_eq!(out.as_ptr(), keep.as_ptr());
    assert_eq!(out.peek_memory(0).as_ptr(), mem_in);
}

#[test]
fn zero_copy_dmabuf_memory_keeps_its_fd() {
    let mut h = harness(100 * MS);
    let name = std::ffi::CString::new("delaybuffer-test").unwrap();
    // SAFETY: memfd_create with a valid name; the fd is handed to the allocator.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    assert!(fd >= 0);
    assert_eq!(unsafe { libc::ftruncate(fd, 4096) }, 0);
    let allocator = gst_allocators::DmaBufAllocator::new();
    // SAFETY: fd is an open memfd of 4096 bytes; the memory takes ownership of it.
    let memory = unsafe {
        use std::os::fd::FromRawFd;
        allocator.alloc_dmabuf(std::os::fd::OwnedFd::from_raw_fd(fd), 4096)
    }
    .unwrap();
    let mem_ptr = memory.as_ptr();
    let mut input = gst::Buffer::new();
    {
        let b = input.get_mut().unwrap();
        b.append_memory(memory);
        b.set_pts(gst::ClockTime::ZERO);
    }
    let keep = input.clone();
    h.push(input).unwrap();
    h.crank_single_clock_wait().unwrap();
    let out = h.pull().unwrap();
    drop(keep);
    let out_mem = out.peek_memory(0);
    assert_eq!(out_mem.as_ptr(), mem_ptr);
    let dmabuf = out_mem
        .downcast_memory_ref::<gst_allocators::DmaBufMemory>()
        .expect("still DMABuf memory");
    assert_eq!(dmabuf.fd(), fd);
}

#[test]
fn zero_copy_memory_is_never_mapped() {
    let mut h = harness(100 * MS);
    let allocator = common::counting_allocator::CountingAllocator::default();
    let mut pushed = Vec::new();
    for i in 0..3u64 {
        let mut b = gst::Buffer::new();
        {
            let b = b.get_mut().unwrap();
            b.append_memory(allocator.memory(1024));
            b.set_pts(i * 10 * MS);
        }
        pushed.push(b.clone());
        h.push(b).unwrap();
    }
    for b in &pushed {
        h.crank_single_clock_wait().unwrap();
        let out = h.pull().unwrap();
        assert_eq!(out.as_ptr(), b.as_ptr());
    }
    assert_eq!(allocator.maps(), 0);
    // The counter does count: a map is seen.
    let _map = pushed[0].map_readable().unwrap();
    assert_eq!(allocator.maps(), 1);
}

#[test]
fn live_starvation_warns_once_with_what_upstream_needs() {
    let mut h = harness(5 * gst::ClockTime::SECOND);
    let element = h.element().unwrap();
    element.set_property("stall-timeout", (500 * MS).nseconds());
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    for i in 0..3u64 {
        h.push(buffer(i * 100 * MS)).unwrap();
    }
    wait_level(&h, 3);
    // Input stops (the pool is exhausted): the task notices at the stall timeout.
    h.crank_single_clock_wait().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Warning],
        )
        .expect("a starvation warning");
    let gst::MessageView::Warning(w) = msg.view() else {
        unreachable!()
    };
    let text = w.error().to_string();
    // 5 s at 10 fps + 2.
    assert!(text.contains("It needs 52 buffers"), "{text}");
    assert!(text.contains("nvvidconv output-buffers"), "{text}");
    assert!(text.contains("num-extra-surfaces"), "{text}");
    // Live: the held frames still leave on schedule, and only one warning.
    h.crank_single_clock_wait().unwrap();
    assert_eq!(h.pull().unwrap().pts(), Some(gst::ClockTime::ZERO));
    assert!(bus.pop_filtered(&[gst::MessageType::Warning]).is_none());
    element.set_bus(None);
}

#[test]
fn non_live_stall_releases_what_is_held() {
    common::init();
    let pipeline = gst::parse::launch(
        "appsrc name=src is-live=false format=time \
           caps=video/x-raw,format=GRAY8,width=4,height=4,framerate=30/1 ! \
         delaybuffer delay=10000000000 stall-timeout=200000000 ! appsink name=sink sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..3u64 {
        let mut b = gst::Buffer::with_size(16).unwrap();
        b.get_mut().unwrap().set_pts(i * 33 * MS);
        src.push_buffer(b).unwrap();
    }
    // No EOS, no more data: after the stall timeout the three come out anyway.
    let mut got = 0;
    while got < 3 {
        let sample = sink
            .try_pull_sample(gst::ClockTime::from_seconds(10))
            .expect("held buffers are released after a stall");
        assert_eq!(sample.buffer().unwrap().pts(), Some(got * 33 * MS));
        got += 1;
    }
    let warning = pipeline.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(5),
        &[gst::MessageType::Warning],
    );
    assert!(warning.is_some());
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn eos_waits_for_held_buffers() {
    let mut h = harness(300 * MS);
    h.push(buffer(gst::ClockTime::ZERO)).unwrap();
    h.push(buffer(100 * MS)).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    for _ in 0..2 {
        h.crank_single_clock_wait().unwrap();
        h.pull().unwrap();
    }
    // After the buffers: EOS, and nothing else held.
    let mut saw_eos = false;
    for _ in 0..10 {
        if let Ok(e) = h.pull_event()
            && e.type_() == gst::EventType::Eos
        {
            saw_eos = true;
            break;
        }
    }
    assert!(saw_eos);
}

#[test]
fn flush_releases_everything_held_and_flow_resumes() {
    let mut h = harness(gst::ClockTime::SECOND);
    for i in 0..3u64 {
        h.push(buffer(i * 100 * MS)).unwrap();
    }
    wait_level(&h, 3);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert_eq!(level(&h, "current-level-buffers"), 0);
    assert_eq!(level(&h, "current-level-bytes"), 0);
    // A new segment after the flush, then data flows again.
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
        gst::ClockTime,
    >::new()));
    h.push(buffer(gst::ClockTime::ZERO)).unwrap();
    h.crank_single_clock_wait().unwrap();
    assert_eq!(h.pull().unwrap().pts(), Some(gst::ClockTime::ZERO));
}

#[test]
fn leaky_downstream_drops_the_oldest() {
    let mut h = harness(gst::ClockTime::SECOND);
    let e = h.element().unwrap();
    e.set_property("max-size-buffers", 2u32);
    e.set_property_from_str("leaky", "downstream");
    for i in 0..5u64 {
        h.push(buffer(i * 100 * MS)).unwrap();
    }
    wait_level(&h, 2);
    assert_eq!(level(&h, "dropped"), 3);
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("received").unwrap(), 5);
    assert_eq!(stats.get::<u64>("dropped").unwrap(), 3);
    // The two newest remain.
    h.crank_single_clock_wait().unwrap();
    assert_eq!(h.pull().unwrap().pts(), Some(300 * MS));
}

#[test]
fn lowering_the_delay_drops_what_is_too_old_without_a_burst() {
    let mut h = harness(gst::ClockTime::SECOND);
    for i in 0..10u64 {
        h.push(buffer(i * 100 * MS)).unwrap();
    }
    wait_level(&h, 10);
    h.set_time(gst::ClockTime::SECOND).unwrap();
    h.element()
        .unwrap()
        .set_property("delay", (250 * MS).nseconds());
    // Running time now 1 s: frames before 750 ms are late for a 250 ms delay.
    assert_eq!(level(&h, "dropped"), 8);
    assert_eq!(level(&h, "current-level-buffers"), 2);
    h.crank_single_clock_wait().unwrap();
    assert_eq!(h.pull().unwrap().pts(), Some(800 * MS));
}

#[test]
fn caps_change_reaches_downstream_before_the_new_buffers() {
    let mut h = harness(100 * MS);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    h.element().unwrap().static_pad("src").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let what = match &info.data {
                Some(gst::PadProbeData::Buffer(_)) => "buffer".to_string(),
                Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Caps => {
                    let gst::EventView::Caps(c) = e.view() else {
                        unreachable!()
                    };
                    format!(
                        "caps {}",
                        c.caps().structure(0).unwrap().get::<i32>("width").unwrap()
                    )
                }
                _ => return gst::PadProbeReturn::Ok,
            };
            seen2.lock().unwrap().push(what);
            gst::PadProbeReturn::Ok
        },
    );
    h.push(buffer(gst::ClockTime::ZERO)).unwrap();
    h.set_src_caps_str("video/x-raw,format=RGBA,width=8,height=8,framerate=10/1");
    h.push(buffer(100 * MS)).unwrap();
    for _ in 0..2 {
        h.crank_single_clock_wait().unwrap();
        h.pull().unwrap();
    }
    // The first caps may have gone out before the probe was installed.
    let seen = seen.lock().unwrap();
    let from_first_buffer: Vec<_> = seen.iter().skip_while(|s| *s != "buffer").collect();
    assert_eq!(from_first_buffer, vec!["buffer", "caps 8", "buffer"]);
}

/// A downstream pad that proposes one growable pool and one fixed pool of 4.
fn allocation_answer(delay: gst::ClockTime, downstream_answers: bool) -> Vec<(bool, u32, u32)> {
    common::init();
    let element = gst::ElementFactory::make("delaybuffer")
        .property("delay", delay.nseconds())
        .build()
        .unwrap();
    let peer = gst::Pad::builder(gst::PadDirection::Sink)
        .query_function(move |_, _, query| match query.view_mut() {
            gst::QueryViewMut::Allocation(q) if downstream_answers => {
                let growable = gst::BufferPool::new();
                let fixed = gst::BufferPool::new();
                q.add_allocation_pool(Some(&growable), 4096, 2, 0);
                q.add_allocation_pool(Some(&fixed), 4096, 4, 4);
                true
            }
            _ => false,
        })
        .build();
    peer.set_active(true).unwrap();
    element.static_pad("src").unwrap().link(&peer).unwrap();
    let caps = gst::Caps::from_str("video/x-raw,format=RGBA,width=4,height=4,framerate=30/1");
    let mut q = gst::query::Allocation::new(Some(&caps.unwrap()), true);
    assert!(element.static_pad("sink").unwrap().query(&mut q));
    q.allocation_pools()
        .map(|(pool, _, min, max)| (pool.is_some(), min, max))
        .collect()
}

use std::str::FromStr;

#[test]
fn allocation_raises_min_buffers_and_drops_fixed_pools() {
    // 2 s at 30 fps: 60 frames + 2.
    assert_eq!(
        allocation_answer(2 * gst::ClockTime::SECOND, true),
        vec![(true, 2 + 62, 0)]
    );
}

#[test]
fn allocation_without_a_downstream_answer_is_a_pool_less_minimum() {
    assert_eq!(
        allocation_answer(gst::ClockTime::SECOND, false),
        vec![(false, 32, 0)]
    );
}

// ---- whole pipelines ---------------------------------------------------------

#[test]
fn live_tee_delays_one_branch_and_not_the_other() {
    common::init();
    let delay = 300 * MS;
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers=20 ! video/x-raw,width=64,height=48,framerate=30/1 ! tee name=t \
         t. ! queue ! fakesink name=realtime sync=true \
         t. ! delaybuffer delay={} ! fakesink name=delayed sync=true",
        delay.nseconds()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let realtime = common::record_arrivals(&pipeline.by_name("realtime").unwrap());
    let delayed = common::record_arrivals(&pipeline.by_name("delayed").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, Duration::from_secs(30), |_| false);
    let mut latency = gst::query::Latency::new();
    assert!(pipeline.query(&mut latency));
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");

    // The pipeline latency does not include the delay.
    let (live, min, _) = latency.result();
    assert!(live);
    assert!(min < delay, "latency {min} includes the delay");

    let realtime = realtime.lock().unwrap();
    let delayed = delayed.lock().unwrap();
    assert_eq!(realtime.len(), 20);
    assert_eq!(delayed.len(), 20);
    for (r, d) in realtime.iter().zip(delayed.iter()) {
        assert_eq!(r.pts, d.pts);
        // The real-time branch renders at the frame's own running time...
        assert_eq!(r.due, r.pts);
        // ...and the delayed one exactly `delay` later, with the same latency.
        assert_eq!(d.due, r.due + delay, "{r:?} {d:?}");
        // It was held, not just relabelled: it left no earlier than that.
        assert!(d.arrived >= d.due, "{d:?} left early");
    }
}

#[test]
fn non_live_tee_prerolls_and_never_deadlocks() {
    common::init();
    // A delay longer than the whole stream: only a GAP lets the branch preroll.
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=60 ! video/x-raw,width=64,height=48,framerate=30/1 ! tee name=t \
         t. ! queue ! fakesink name=realtime sync=false \
         t. ! delaybuffer delay=10000000000 ! fakesink name=delayed sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Paused).unwrap();
    let (result, state, _) = pipeline.state(gst::ClockTime::from_seconds(10));
    assert_eq!(result, Ok(gst::StateChangeSuccess::Success));
    assert_eq!(state, gst::State::Paused);
    let log = {
        pipeline.set_state(gst::State::Playing).unwrap();
        common::collect_bus(&pipeline, Duration::from_secs(30), |_| false)
    };
    let delayed = pipeline.by_name("delayed").unwrap();
    let stats: gst::Structure = pipeline
        .iterate_elements()
        .into_iter()
        .map(Result::unwrap)
        .find(|e| e.factory().unwrap().name() == "delaybuffer")
        .unwrap()
        .property("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    assert_eq!(stats.get::<u64>("pushed").unwrap(), 60);
    drop(delayed);
}

#[test]
fn delay_zero_passes_through_in_order() {
    let mut h = harness(gst::ClockTime::ZERO);
    // Every buffer is due on arrival: none waits on the clock.
    h.set_time(gst::ClockTime::SECOND).unwrap();
    for i in 0..5u64 {
        h.push(buffer(i * 100 * MS)).unwrap();
    }
    for i in 0..5u64 {
        assert_eq!(h.pull().unwrap().pts(), Some(i * 100 * MS));
    }
    assert_eq!(h.element().unwrap().static_pad("src").unwrap().offset(), 0);
}

#[test]
fn buffers_without_timestamps_use_their_arrival_time() {
    let mut h = harness(200 * MS);
    h.set_time(300 * MS).unwrap();
    let mut b = gst::Buffer::with_size(8).unwrap();
    b.get_mut().unwrap().set_pts(gst::ClockTime::NONE);
    h.push(b).unwrap();
    h.crank_single_clock_wait().unwrap();
    let out = h.pull().unwrap();
    assert_eq!(out.pts(), None);
    // Arrived at running time 300 ms, left at 300 ms + delay.
    assert_eq!(h.testclock().unwrap().time(), 500 * MS);
}

#[test]
fn raising_the_delay_pauses_output_until_the_longer_span_is_held() {
    let mut h = harness(100 * MS);
    h.push(buffer(gst::ClockTime::ZERO)).unwrap();
    h.push(buffer(100 * MS)).unwrap();
    wait_level(&h, 2);
    h.element()
        .unwrap()
        .set_property("delay", (400 * MS).nseconds());
    h.crank_single_clock_wait().unwrap();
    let out = h.pull().unwrap();
    assert_eq!(out.pts(), Some(gst::ClockTime::ZERO));
    assert_eq!(h.testclock().unwrap().time(), 400 * MS);
    // The running time downstream follows the new delay.
    assert_eq!(rendered_at(&h, &out), 400 * MS);
    assert_eq!(level(&h, "dropped"), 0);
}

#[test]
fn bounds_that_cannot_hold_the_delay_warn_with_the_numbers() {
    common::init();
    let element = gst::ElementFactory::make("delaybuffer")
        .property("delay", gst::ClockTime::from_seconds(7).nseconds())
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    element.set_property("max-size-time", gst::ClockTime::from_seconds(2).nseconds());
    let msg = bus
        .pop_filtered(&[gst::MessageType::Warning])
        .expect("a warning when the bound is set");
    let gst::MessageView::Warning(w) = msg.view() else {
        unreachable!()
    };
    let text = w.error().to_string();
    assert!(text.contains("max-size-time=2000000000"), "{text}");
    assert!(text.contains("delay=7000000000"), "{text}");
    // A bound that holds the delay says nothing.
    element.set_property("max-size-time", gst::ClockTime::from_seconds(8).nseconds());
    assert!(bus.pop_filtered(&[gst::MessageType::Warning]).is_none());
    element.set_bus(None);
}

#[test]
fn leaky_no_blocks_upstream_until_there_is_room() {
    let mut h = harness(100 * MS);
    h.element().unwrap().set_property("max-size-buffers", 2u32);
    h.push(buffer(gst::ClockTime::ZERO)).unwrap();
    h.push(buffer(10 * MS)).unwrap();
    wait_level(&h, 2);
    let element = h.element().unwrap();
    let sink = element.static_pad("sink").unwrap();
    let pusher = std::thread::spawn(move || {
        // The third push blocks until the first buffer has left.
        sink.peer().unwrap().push(buffer(20 * MS))
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!pusher.is_finished(), "upstream was not blocked");
    h.crank_single_clock_wait().unwrap();
    assert_eq!(h.pull().unwrap().pts(), Some(gst::ClockTime::ZERO));
    assert!(pusher.join().unwrap().is_ok());
    assert_eq!(level(&h, "dropped"), 0);
}

#[test]
fn allocation_without_framerate_uses_max_size_buffers_or_warns_once() {
    common::init();
    let element = gst::ElementFactory::make("delaybuffer").build().unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let caps = gst::Caps::from_str("video/x-raw,format=RGBA,width=4,height=4").unwrap();
    let ask = || {
        let mut q = gst::query::Allocation::new(Some(&caps), true);
        assert!(element.static_pad("sink").unwrap().query(&mut q));
        q.allocation_pools()
            .map(|(_, _, min, _)| min)
            .collect::<Vec<_>>()
    };
    // Nothing to go by: no extra buffers, and a warning saying what to set, once.
    assert_eq!(ask(), vec![0]);
    assert_eq!(ask(), vec![0]);
    let warnings: Vec<_> =
        std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning])).collect();
    assert_eq!(warnings.len(), 1);
    let gst::MessageView::Warning(w) = warnings[0].view() else {
        unreachable!()
    };
    assert!(w.error().to_string().contains("set max-size-buffers"));
    // With a bound, the bound (+2) is what upstream is asked for.
    element.set_property("max-size-buffers", 40u32);
    assert_eq!(ask(), vec![42]);
    element.set_bus(None);
}
