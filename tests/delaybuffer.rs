// SPDX-License-Identifier: MPL-2.0
//! delaybuffer through gst_check::Harness (with its test clock) and real
//! pipelines driven by a gst_check::TestClock.

mod common;

use gst::glib;
use gst::prelude::*;
use gst_allocators::prelude::*;
use gst_check::Harness;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

const MS: gst::ClockTime = gst::ClockTime::MSECOND;
const SECOND: gst::ClockTime = gst::ClockTime::SECOND;
/// How long a test waits for something that must happen before calling it a hang.
const HANG: Duration = Duration::from_secs(20);

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
    // Input stops (the pool is exhausted): the task notices at the stall
    // timeout after the last buffer, long before the first one is due.
    h.crank_single_clock_wait().unwrap();
    assert_eq!(h.testclock().unwrap().time(), 500 * MS);
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
        if i == 0 {
            // The first buffer's GAP prerolls the sink: the stall watch must
            // start with the second buffer even once PLAYING was reached.
            let (result, state, _) = pipeline.state(gst::ClockTime::from_seconds(10));
            assert_eq!(
                (result, state),
                (Ok(gst::StateChangeSuccess::Success), gst::State::Playing)
            );
        }
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
    let warning = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(5),
            &[gst::MessageType::Warning],
        )
        .expect("the stall is reported");
    pipeline.set_state(gst::State::Null).unwrap();
    let gst::MessageView::Warning(w) = warning.view() else {
        unreachable!()
    };
    // Three frames 33 ms apart, 30 fps, 10 s: it needs 300 + 2 buffers.
    assert_eq!(
        w.error().to_string(),
        "Input stopped while 3 buffers (66000000 of 10000000000 ns) are held: upstream's \
         buffer pool is probably too small for the delay, and the other branches of a tee in \
         front starve too. It needs 302 buffers: raise \
         nvvidconv output-buffers or nvv4l2decoder num-extra-surfaces, or the source's pool \
         size (v4l2src copies frames when more than 32 are needed)"
    );
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

/// A downstream pad that proposes one growable pool and one fixed pool of 4;
/// `prepare` has the element first.
fn allocation_answer(
    delay: gst::ClockTime,
    downstream_answers: bool,
    prepare: impl FnOnce(&gst::Element),
) -> Vec<(bool, u32, u32)> {
    common::init();
    let element = gst::ElementFactory::make("delaybuffer")
        .property("delay", delay.nseconds())
        .build()
        .unwrap();
    prepare(&element);
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
        allocation_answer(2 * gst::ClockTime::SECOND, true, |_| ()),
        vec![(true, 2 + 62, 0)]
    );
}

#[test]
fn allocation_asks_for_the_taps_window_too() {
    // src without delay, a tap 2 s behind: the window holds 2 s.
    let with_a_tap = |element: &gst::Element| {
        let tap = element.request_pad_simple("tap_%u").unwrap();
        tap.set_property("delay", (2 * gst::ClockTime::SECOND).nseconds());
    };
    assert_eq!(
        allocation_answer(gst::ClockTime::ZERO, true, with_a_tap),
        vec![(true, 2 + 62, 0)]
    );
}

#[test]
fn allocation_without_a_downstream_answer_is_a_pool_less_minimum() {
    assert_eq!(
        allocation_answer(gst::ClockTime::SECOND, false, |_| ()),
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
    // The SEGMENT went out, shifted by the first delay.
    let first_segment = loop {
        let event = h.pull_event().unwrap();
        if event.type_() == gst::EventType::Segment {
            break event.seqnum();
        }
    };
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
    // The SEGMENT went out again with the new shift, with upstream's seqnum.
    let upstream = h
        .srcpad()
        .unwrap()
        .sticky_event::<gst::event::Segment>(0)
        .unwrap()
        .seqnum();
    let mut segments = vec![first_segment];
    while let Some(event) = h.try_pull_event() {
        if event.type_() == gst::EventType::Segment {
            segments.push(event.seqnum());
        }
    }
    assert_eq!(segments, [upstream, upstream]);
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

/// A push of `pts` from another thread into a harness whose delaybuffer is
/// full: `overrun` says when delaybuffer found its bound reached, `done` gets
/// the push's result and how many buffers had left delaybuffer by then.
struct BlockedPush {
    overrun: mpsc::Receiver<()>,
    done: mpsc::Receiver<(Result<gst::FlowSuccess, gst::FlowError>, u64)>,
}

impl BlockedPush {
    fn start(h: &Harness, pts: gst::ClockTime) -> BlockedPush {
        let element = h.element().unwrap();
        let (overrun_tx, overrun) = mpsc::channel();
        element.connect("overrun", false, move |_| {
            let _ = overrun_tx.send(());
            None
        });
        let upstream = element.static_pad("sink").unwrap().peer().unwrap();
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let result = upstream.push(buffer(pts));
            let pushed = element
                .property::<gst::Structure>("stats")
                .get::<u64>("pushed")
                .unwrap();
            let _ = done_tx.send((result, pushed));
        });
        let push = BlockedPush { overrun, done };
        push.overrun
            .recv_timeout(HANG)
            .expect("delaybuffer never found itself full");
        push
    }

    /// The push's result and what had left delaybuffer when it returned; a
    /// push that never returns fails here.
    fn finish(self) -> (Result<gst::FlowSuccess, gst::FlowError>, u64) {
        self.done
            .recv_timeout(HANG)
            .expect("upstream is still blocked")
    }
}

/// A harness holding two buffers under `max-size-buffers=2`, `leaky=no`.
fn full_harness() -> Harness {
    let mut h = harness(100 * MS);
    h.element().unwrap().set_property("max-size-buffers", 2u32);
    h.push(buffer(gst::ClockTime::ZERO)).unwrap();
    h.push(buffer(10 * MS)).unwrap();
    wait_level(&h, 2);
    h
}

#[test]
fn leaky_no_blocks_upstream_until_there_is_room() {
    let mut h = full_harness();
    let push = BlockedPush::start(&h, 20 * MS);
    h.crank_single_clock_wait().unwrap();
    assert_eq!(h.pull().unwrap().pts(), Some(gst::ClockTime::ZERO));
    // The third push returned only once the first buffer had left.
    assert_eq!(push.finish(), (Ok(gst::FlowSuccess::Ok), 1));
    assert_eq!(level(&h, "dropped"), 0);
}

#[test]
fn leaky_no_unblocks_at_once_when_the_bound_is_raised() {
    let h = full_harness();
    let push = BlockedPush::start(&h, 20 * MS);
    h.element().unwrap().set_property("max-size-buffers", 3u32);
    // Nothing left delaybuffer: the new bound made the room.
    assert_eq!(push.finish(), (Ok(gst::FlowSuccess::Ok), 0));
    assert_eq!(level(&h, "current-level-buffers"), 3);
}

#[test]
fn leaky_no_unblocks_at_once_when_switched_to_leaky_downstream() {
    let h = full_harness();
    let push = BlockedPush::start(&h, 20 * MS);
    h.element()
        .unwrap()
        .set_property_from_str("leaky", "downstream");
    assert_eq!(push.finish(), (Ok(gst::FlowSuccess::Ok), 0));
    assert_eq!(level(&h, "dropped"), 1);
    assert_eq!(level(&h, "current-level-buffers"), 2);
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

// ---- running time, latency, flow ------------------------------------------------

#[test]
fn application_src_pad_offset_adds_to_the_delay() {
    let mut h = harness(500 * MS);
    let src = h.element().unwrap().static_pad("src").unwrap();
    src.set_offset(SECOND.nseconds() as i64);
    h.push(buffer(gst::ClockTime::ZERO)).unwrap();
    h.crank_single_clock_wait().unwrap();
    let out = h.pull().unwrap();
    assert_eq!(rendered_at(&h, &out), 500 * MS + SECOND);
    // A delay change keeps the application's offset.
    h.element()
        .unwrap()
        .set_property("delay", (700 * MS).nseconds());
    h.push(buffer(100 * MS)).unwrap();
    h.crank_single_clock_wait().unwrap();
    let out = h.pull().unwrap();
    assert_eq!(rendered_at(&h, &out), 100 * MS + 700 * MS + SECOND);
    assert_eq!(src.offset(), SECOND.nseconds() as i64);
}

#[test]
fn segment_with_a_base_and_rate_two_is_delayed_in_running_time() {
    let mut h = harness(500 * MS);
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_base(2 * SECOND);
    segment.set_rate(2.0);
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    for pts in [0, 200] {
        h.push(buffer(pts * MS)).unwrap();
    }
    // Running time = base + pts / rate: 2 s, 2.1 s; each leaves `delay` later
    // and is rendered `delay` later.
    for running_time in [2000 * MS, 2100 * MS] {
        h.crank_single_clock_wait().unwrap();
        let out = h.pull().unwrap();
        assert_eq!(h.testclock().unwrap().time(), running_time + 500 * MS);
        assert_eq!(rendered_at(&h, &out), running_time + 500 * MS);
    }
}

fn caps_at(fps: i32) -> gst::Event {
    let caps = gst::Caps::builder("video/x-raw")
        .field("framerate", gst::Fraction::new(fps, 1))
        .build();
    gst::event::Caps::new(&caps)
}

#[test]
fn latency_answers_and_messages_follow_delay_bounds_and_framerate() {
    common::init();
    let element = gst::ElementFactory::make("delaybuffer")
        .property("delay", SECOND.nseconds())
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    // Downstream accepts any caps (an unlinked src pad refuses them; a pad
    // without a template only its current ones).
    let any = gst::PadTemplate::new(
        "sink",
        gst::PadDirection::Sink,
        gst::PadPresence::Always,
        &gst::Caps::new_any(),
    )
    .unwrap();
    let sink = gst::Pad::builder_from_template(&any).build();
    sink.set_active(true).unwrap();
    element.static_pad("src").unwrap().link(&sink).unwrap();
    // A live upstream that buffers nothing itself: min = max = 0.
    let src = upstream_of(&element, true, Some(caps_at(10)), |_| ());
    let latency = || {
        let mut q = gst::query::Latency::new();
        assert!(element.static_pad("src").unwrap().query(&mut q));
        let (live, min, max) = q.result();
        assert!(live);
        // The delay is never latency: min stays upstream's.
        assert_eq!(min, gst::ClockTime::ZERO);
        max
    };
    let latency_messages =
        || std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Latency])).count();
    // No bound: upstream may wait as long as it likes.
    assert_eq!(latency(), None);
    // 100 frames at 10 fps hold 10 s, 1 s of it the delay.
    element.set_property("max-size-buffers", 100u32);
    assert_eq!(latency_messages(), 1);
    assert_eq!(latency(), Some(9 * SECOND));
    element.set_property("delay", (2 * SECOND).nseconds());
    assert_eq!(latency_messages(), 1);
    assert_eq!(latency(), Some(8 * SECOND));
    // The same delay again changes nothing.
    element.set_property("delay", (2 * SECOND).nseconds());
    assert_eq!(latency_messages(), 0);
    // 20 fps: 100 frames hold 5 s.
    assert!(src.push_event(caps_at(20)));
    assert_eq!(latency_messages(), 1);
    assert_eq!(latency(), Some(3 * SECOND));
    element.set_property("max-size-buffers", 0u32);
    assert_eq!(latency_messages(), 1);
    assert_eq!(latency(), None);
    element.set_state(gst::State::Null).unwrap();
    element.set_bus(None);
}

#[test]
fn allocation_query_without_caps_does_not_warn() {
    common::init();
    let element = gst::ElementFactory::make("delaybuffer").build().unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    // appsrc asks before it negotiated: no caps, nothing to go by yet.
    let mut q = gst::query::Allocation::new(None, true);
    assert!(element.static_pad("sink").unwrap().query(&mut q));
    assert!(bus.pop_filtered(&[gst::MessageType::Warning]).is_none());
    element.set_bus(None);
}

/// An upstream pad for a bare delaybuffer, which it takes to PAUSED. It
/// sends stream-start, `caps` and a segment, and answers LATENCY with `live`,
/// min = max = 0, after calling `on_latency` (asked on the first buffer).
fn upstream_of(
    element: &gst::Element,
    live: bool,
    caps: Option<gst::Event>,
    on_latency: impl Fn(&gst::Pad) + Send + Sync + 'static,
) -> gst::Pad {
    let src = gst::Pad::builder(gst::PadDirection::Src)
        .query_function(move |pad, _, query| match query.view_mut() {
            gst::QueryViewMut::Latency(q) => {
                on_latency(pad);
                q.set(live, gst::ClockTime::ZERO, gst::ClockTime::ZERO);
                true
            }
            _ => false,
        })
        .build();
    src.set_active(true).unwrap();
    src.link(&element.static_pad("sink").unwrap()).unwrap();
    element.set_state(gst::State::Paused).unwrap();
    assert!(src.push_event(gst::event::StreamStart::new("delaybuffer-test")));
    if let Some(caps) = caps {
        assert!(src.push_event(caps));
    }
    assert!(
        src.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()))
    );
    src
}

#[test]
fn a_buffer_arriving_while_a_flush_starts_stays_out_of_the_ring() {
    common::init();
    let element = gst::ElementFactory::make("delaybuffer").build().unwrap();
    // The flush starts while the first buffer is in delaybuffer's chain
    // function, waiting for upstream's LATENCY answer.
    // (It returns false: delaybuffer's src pad has no peer to forward it to.)
    let src = upstream_of(&element, false, None, |pad| {
        let _ = pad
            .peer()
            .unwrap()
            .send_event(gst::event::FlushStart::new());
    });
    assert_eq!(
        src.push(buffer(gst::ClockTime::ZERO)),
        Err(gst::FlowError::Flushing)
    );
    // (Not forwarded either: false.)
    let _ = src.push_event(gst::event::FlushStop::new(true));
    let stats = element.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u32>("current-level-buffers").unwrap(), 0);
    assert_eq!(stats.get::<u64>("received").unwrap(), 0);
    element.set_state(gst::State::Null).unwrap();
}

/// Pushes buffers until delaybuffer returns what its task got from downstream.
fn push_until(src: &gst::Pad, expected: Result<gst::FlowSuccess, gst::FlowError>) {
    let mut pts = gst::ClockTime::ZERO;
    assert!(
        common::poll_until(HANG, || {
            pts += MS;
            src.push(buffer(pts)) == expected
        }),
        "delaybuffer never returned {expected:?}"
    );
}

#[test]
fn not_linked_then_relinked_flows_again_and_eos_after_not_linked_is_an_error() {
    common::init();
    // Not live with no delay: every buffer leaves at once.
    let element = gst::ElementFactory::make("delaybuffer")
        .property("delay", 0u64)
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let src = upstream_of(&element, false, None, |_| ());
    push_until(&src, Err(gst::FlowError::NotLinked));

    // A peer is linked (gst_pad_link sends RECONFIGURE): data flows again.
    let received = Arc::new(Mutex::new(0u32));
    let counter = received.clone();
    let sink = gst::Pad::builder(gst::PadDirection::Sink)
        .chain_function(move |_, _, _| {
            *counter.lock().unwrap() += 1;
            Ok(gst::FlowSuccess::Ok)
        })
        .build();
    sink.set_active(true).unwrap();
    let delay_src = element.static_pad("src").unwrap();
    delay_src.link(&sink).unwrap();
    push_until(&src, Ok(gst::FlowSuccess::Ok));
    wait_until(|| *received.lock().unwrap() > 0);

    // Unlinked again, then EOS: like queue, an ERROR says the stream failed.
    delay_src.unlink(&sink).unwrap();
    push_until(&src, Err(gst::FlowError::NotLinked));
    assert!(bus.pop_filtered(&[gst::MessageType::Error]).is_none());
    assert!(!src.push_event(gst::event::Eos::new()));
    let msg = bus
        .pop_filtered(&[gst::MessageType::Error])
        .expect("an ERROR for the EOS that cannot go out");
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    assert_eq!(e.error().to_string(), "Internal data stream error.");
    assert!(e.debug().unwrap().contains("NotLinked"), "{:?}", e.debug());
    element.set_state(gst::State::Null).unwrap();
    element.set_bus(None);
}

#[test]
fn delay_and_stall_timeout_maxima_are_far_from_overflow() {
    common::init();
    let hour = 3600 * SECOND.nseconds();
    let element = gst::ElementFactory::make("delaybuffer").build().unwrap();
    for name in ["delay", "stall-timeout"] {
        let pspec = element.find_property(name).unwrap();
        let pspec = pspec.downcast_ref::<glib::ParamSpecUInt64>().unwrap();
        assert_eq!(pspec.maximum(), hour, "{name}");
    }
    // The longest delay behind a running time near the end of the clock's
    // range: the due time saturates instead of overflowing in the task.
    let mut h = harness(SECOND);
    h.element().unwrap().set_property("delay", hour);
    h.element().unwrap().set_property("stall-timeout", hour);
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_base(gst::ClockTime::MAX - SECOND);
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    h.push(buffer(gst::ClockTime::ZERO)).unwrap();
    wait_level(&h, 1);
    // The task sleeps on the clock until then, far away (had the sum
    // overflowed, the task would have panicked instead of waiting).
    let clock = h.testclock().unwrap();
    assert!(
        common::poll_until(HANG, || clock.peek_next_pending_id().is_some()),
        "the task never waited on the clock"
    );
    let id = clock.peek_next_pending_id().unwrap();
    assert_eq!(id.time(), gst::ClockTime::MAX);
    assert!(h.try_pull().is_none());
}

#[test]
fn qos_from_the_delayed_branch_reaches_upstream_in_its_running_time() {
    let mut h = harness(SECOND);
    h.push(buffer(gst::ClockTime::ZERO)).unwrap();
    h.crank_single_clock_wait().unwrap();
    h.pull().unwrap();
    // Downstream reports in the delayed running time, 1 s after upstream's.
    let late = 1100 * MS;
    assert!(h.push_upstream_event(gst::event::Qos::new(gst::QOSType::Underflow, 1.0, 0, late)));
    let event = loop {
        let event = h.pull_upstream_event().unwrap();
        if event.type_() == gst::EventType::Qos {
            break event;
        }
    };
    let gst::EventView::Qos(qos) = event.view() else {
        unreachable!()
    };
    assert_eq!(qos.get().3, Some(100 * MS));
}

// ---- pipelines: linking late, pausing while filling ---------------------------

use common::{launch, running_time};

fn wait_for_running_time(pipeline: &gst::Pipeline, t: gst::ClockTime) {
    common::wait_for_running_time(pipeline, t, HANG);
}

/// A sync sink linked to `delay`'s src pad while the pipeline plays.
struct LateSink {
    sink: gst::Element,
    arrivals: Arc<Mutex<Vec<common::Arrival>>>,
    linked_at: gst::ClockTime,
}

impl LateSink {
    fn link(pipeline: &gst::Pipeline, delay: &gst::Element) -> LateSink {
        // async=false: it joins a playing pipeline without a preroll.
        let sink = common::fakesink(true, false);
        let arrivals = common::record_arrivals(&sink);
        pipeline.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        delay.link(&sink).unwrap();
        let linked_at = running_time(pipeline);
        LateSink {
            sink,
            arrivals,
            linked_at,
        }
    }

    /// Unlinks it between two pushes (an idle probe), then removes it.
    fn unlink(&self, pipeline: &gst::Pipeline, delay: &gst::Element) {
        let (done_tx, done) = mpsc::channel();
        let sinkpad = self.sink.static_pad("sink").unwrap();
        delay
            .static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::IDLE, move |pad, _| {
                pad.unlink(&sinkpad).unwrap();
                let _ = done_tx.send(());
                gst::PadProbeReturn::Remove
            });
        done.recv_timeout(HANG)
            .expect("the src pad never went idle");
        self.sink.set_state(gst::State::Null).unwrap();
        pipeline.remove(&self.sink).unwrap();
    }

    /// Checks that it got every frame the real-time branch got from its
    /// linking on (to `until`, if given), each `delay` late.
    fn check(
        &self,
        realtime: &[common::Arrival],
        delay: gst::ClockTime,
        until: Option<gst::ClockTime>,
    ) {
        let frame = gst::ClockTime::from_nseconds(33_333_334);
        let got = self.arrivals.lock().unwrap();
        let first = got.first().expect("the linked branch got frames");
        assert!(
            first.pts <= self.linked_at + frame,
            "linked at {}, first frame {}",
            self.linked_at,
            first.pts
        );
        let start = realtime.iter().position(|r| r.pts == first.pts).unwrap();
        let expected: Vec<_> = realtime[start..start + got.len()]
            .iter()
            .map(|r| r.pts)
            .collect();
        assert_eq!(
            got.iter().map(|a| a.pts).collect::<Vec<_>>(),
            expected,
            "frames missing"
        );
        if until.is_none() {
            assert_eq!(got.last().unwrap().pts, realtime.last().unwrap().pts);
        }
        for a in got.iter() {
            assert_eq!(a.due, a.pts + delay, "{a:?}");
            assert!(a.arrived >= a.due, "left early: {a:?}");
        }
    }
}

#[test]
fn tee_branch_linked_after_playing_and_relinked_gets_every_frame_delayed() {
    common::init();
    let delay = 300 * MS;
    let pipeline = launch(&format!(
        "videotestsrc is-live=true num-buffers=120 ! \
           video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! \
         tee name=t allow-not-linked=true \
         t. ! queue ! fakesink name=realtime sync=true \
         t. ! delaybuffer name=delay delay={}",
        delay.nseconds()
    ));
    let delaybuffer = pipeline.by_name("delay").unwrap();
    let realtime = common::record_arrivals(&pipeline.by_name("realtime").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    // Nothing is linked behind delaybuffer for the first second.
    wait_for_running_time(&pipeline, SECOND);
    let first = LateSink::link(&pipeline, &delaybuffer);
    wait_for_running_time(&pipeline, 2 * SECOND);
    first.unlink(&pipeline, &delaybuffer);
    let unlinked_at = running_time(&pipeline);
    // Relinked when everything held from before the unlink is older than
    // the delay (and dropped as late), however long the unlink took.
    wait_for_running_time(&pipeline, unlinked_at + delay + 500 * MS);
    let second = LateSink::link(&pipeline, &delaybuffer);
    let log = common::collect_bus(&pipeline, Duration::from_secs(60), |_| false);
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    pipeline.set_state(gst::State::Null).unwrap();

    let realtime = realtime.lock().unwrap();
    assert_eq!(realtime.len(), 120);
    first.check(&realtime, delay, Some(unlinked_at));
    second.check(&realtime, delay, None);
}

/// PAUSED for 3 s while a 2 s delay fills, with a queue (a thread boundary)
/// behind delaybuffer, so that its own loop is what is tested, not the
/// sink's preroll: no WARNING, nothing released, and after PLAYING every
/// frame leaves `delay` after its running time.
fn paused_while_filling(live: bool) {
    common::init();
    let delay = 2 * SECOND;
    let pipeline = launch(&format!(
        "videotestsrc is-live={live} num-buffers=75 ! \
           video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! tee name=t \
         t. ! queue max-size-time=300000000 ! fakesink name=realtime sync=true \
         t. ! delaybuffer name=delay delay={} ! queue ! fakesink name=delayed sync=true",
        delay.nseconds()
    ));
    let delaybuffer = pipeline.by_name("delay").unwrap();
    let realtime = common::record_pts(&pipeline.by_name("realtime").unwrap());
    let delayed = common::record_arrivals(&pipeline.by_name("delayed").unwrap());
    let pushed = || {
        delaybuffer
            .property::<gst::Structure>("stats")
            .get::<u64>("pushed")
            .unwrap()
    };
    pipeline.set_state(gst::State::Playing).unwrap();
    wait_until(|| delaybuffer.property::<u64>("current-level-time") >= (500 * MS).nseconds());
    pipeline.set_state(gst::State::Paused).unwrap();
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(10));
    assert!(result.is_ok(), "{result:?}");
    // Longer than stall-timeout (1 s), and than the delay.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pushed(), 0, "released while PAUSED");
    let bus = pipeline.bus().unwrap();
    assert!(bus.pop_filtered(&[gst::MessageType::Warning]).is_none());
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, Duration::from_secs(60), |_| false);
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    assert!(log.warnings.is_empty(), "{:#?}", log.warnings);
    pipeline.set_state(gst::State::Null).unwrap();

    // A live source drops the frame it was waiting to send when paused: the
    // delayed branch gets what the real-time branch got.
    let realtime = realtime.lock().unwrap();
    let delayed = delayed.lock().unwrap();
    assert!(realtime.len() >= 74, "{}", realtime.len());
    assert_eq!(delayed.iter().map(|d| d.pts).collect::<Vec<_>>(), *realtime);
    for d in delayed.iter() {
        assert_eq!(d.due, d.pts + delay, "{d:?}");
        // Live, delaybuffer holds each frame until then; not live it lets
        // it go once `delay` is held, and the sink waits for the clock.
        if live {
            assert!(d.arrived >= d.due, "left early: {d:?}");
        }
    }
}

#[test]
fn paused_while_filling_live_releases_nothing_and_warns_nothing() {
    paused_while_filling(true);
}

#[test]
fn paused_while_filling_not_live_releases_nothing_and_warns_nothing() {
    paused_while_filling(false);
}

/// Input stopping while a 7 s delay fills, in a real pipeline with a
/// synchronised sink (which takes the preroll GAP only at its running time,
/// 7 s ahead): the WARNING comes `stall-timeout` after the last input, on the
/// pipeline's test clock, and says the other branches starve too.
#[test]
fn a_seven_second_delay_whose_input_stops_warns_after_the_stall_timeout() {
    common::init();
    let pipeline = gst::parse::launch(
        "appsrc name=src is-live=true format=time \
         caps=video/x-raw,format=I420,width=64,height=48,framerate=30/1 ! \
         delaybuffer delay=7000000000 stall-timeout=1000000000 ! fakesink sync=true",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let clock = gst_check::TestClock::new();
    pipeline.use_clock(Some(&clock));
    pipeline.set_start_time(gst::ClockTime::NONE);
    pipeline.set_base_time(gst::ClockTime::ZERO);
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..3u64 {
        let mut buffer = gst::Buffer::with_size(64 * 48 * 3 / 2).unwrap();
        buffer.get_mut().unwrap().set_pts(i * 33 * MS);
        src.push_buffer(buffer).unwrap();
    }
    // The input stops. Nothing is due for 7 s; the stall is 1 s after the
    // last input (at running time 0: the test clock stood still meanwhile).
    let bus = pipeline.bus().unwrap();
    let warning = (|| {
        for _ in 0..200 {
            if let Some(id) = clock.peek_next_pending_id()
                && id.time() <= gst::ClockTime::SECOND
            {
                clock.set_time(id.time());
                clock.process_next_clock_id();
            }
            if let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(50),
                &[gst::MessageType::Warning],
            ) {
                return Some((msg, clock.time()));
            }
        }
        None
    })();
    pipeline.set_state(gst::State::Null).unwrap();
    let (msg, at) = warning.expect("a starvation WARNING before the delay ran out");
    assert!(at <= gst::ClockTime::SECOND, "warned at {at}");
    let gst::MessageView::Warning(w) = msg.view() else {
        unreachable!()
    };
    let text = w.error().to_string();
    assert!(text.contains("other branches of a tee"), "{text}");
}
