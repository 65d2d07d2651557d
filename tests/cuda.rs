// SPDX-License-Identifier: MPL-2.0
//! delaybuffer with real CUDA memory (`video/x-raw(memory:CUDAMemory)` made by
//! cudaupload). Needs an NVIDIA GPU and GStreamer's nvcodec plugin, so it is
//! ignored by `make test`; on a GPU machine: `make cuda`.

mod common;

use gst::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// GStreamer's name for CUDA device memory (GST_CUDA_MEMORY_TYPE_NAME).
const CUDA_MEMORY: &str = "gst.cuda.memory";
const FRAMES: usize = 90;

/// What a probe saw of each buffer, by pts: its first GstMemory and whether
/// that memory is CUDA device memory.
type Memories = Arc<Mutex<HashMap<u64, (usize, bool)>>>;

fn record_memories(pad: &gst::Pad) -> Memories {
    let seen = Memories::default();
    let s = seen.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let buffer = info.buffer().unwrap();
        let memory = buffer.peek_memory(0);
        s.lock().unwrap().insert(
            buffer.pts().unwrap().nseconds(),
            (memory.as_ptr() as usize, memory.is_type(CUDA_MEMORY)),
        );
        gst::PadProbeReturn::Ok
    });
    seen
}

/// A checksum of each downloaded frame, by pts.
fn record_checksums(sink: &gst::Element) -> Arc<Mutex<Vec<(u64, u64)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let buffer = info.buffer().unwrap();
            let map = buffer.map_readable().unwrap();
            // FNV-1a: any changed byte changes it.
            let sum = map.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            s.lock()
                .unwrap()
                .push((buffer.pts().unwrap().nseconds(), sum));
            gst::PadProbeReturn::Ok
        });
    seen
}

#[test]
#[ignore = "needs an NVIDIA GPU and GStreamer's nvcodec plugin (cudaupload)"]
fn cuda_memory_is_delayed_without_a_copy() {
    common::init();
    assert!(
        gst::ElementFactory::find("cudaupload").is_some(),
        "nvcodec registered no cudaupload: no usable CUDA device or driver"
    );
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={FRAMES} pattern=ball ! \
           video/x-raw,format=NV12,width=1280,height=720,framerate=30/1 ! \
         cudaupload ! video/x-raw(memory:CUDAMemory) ! tee name=t \
         t. ! queue ! cudadownload ! video/x-raw ! fakesink name=realtime \
         t. ! delaybuffer name=delay delay=1000000000 ! cudadownload ! video/x-raw ! fakesink name=delayed"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let tee = pipeline.by_name("t").unwrap();
    let delay = pipeline.by_name("delay").unwrap();
    let uploaded = record_memories(&tee.static_pad("sink").unwrap());
    let delay_src = delay.static_pad("src").unwrap();
    let delayed_memories = record_memories(&delay_src);
    let realtime = record_checksums(&pipeline.by_name("realtime").unwrap());
    let delayed = record_checksums(&pipeline.by_name("delayed").unwrap());

    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, Duration::from_secs(120), |_| false);
    let caps = delay_src.current_caps();
    let stats: gst::Structure = delay.property("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    // cudaupload's pool took the ALLOCATION answer: no starvation while 1 s was held.
    assert!(log.warnings.is_empty(), "{:#?}", log.warnings);
    println!("delayed caps: {caps:?}\ndelaybuffer stats: {stats:?}");

    let caps = caps.unwrap();
    assert!(
        caps.features(0).unwrap().contains("memory:CUDAMemory"),
        "{caps}"
    );
    let uploaded = uploaded.lock().unwrap();
    let delayed_memories = delayed_memories.lock().unwrap();
    assert_eq!(uploaded.len(), FRAMES);
    assert_eq!(delayed_memories.len(), FRAMES);
    for (pts, (memory, is_cuda)) in delayed_memories.iter() {
        assert!(is_cuda, "frame {pts} left delaybuffer in non-CUDA memory");
        // The very GstMemory cudaupload made: held, never copied.
        assert_eq!(uploaded.get(pts), Some(&(*memory, true)), "frame {pts}");
    }
    // What came back from the GPU after the delay is what the real-time branch saw.
    let realtime = realtime.lock().unwrap();
    let delayed = delayed.lock().unwrap();
    assert_eq!(realtime.len(), FRAMES);
    assert_eq!(*realtime, *delayed);
    println!(
        "{FRAMES} frames of 1280x720 NV12 in CUDA memory delayed 1 s: same GstMemory in and out, \
         identical content after download"
    );
}

/// A live NV12 camera of `frames` frames at `size`, uploaded to CUDA memory,
/// into a tee: `realtime` in real time, `delayed` behind the delaybuffer
/// `delay` (with `properties`).
fn live_cuda_tee(frames: usize, (width, height): (u32, u32), properties: &str) -> gst::Pipeline {
    gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers={frames} ! \
           video/x-raw,format=NV12,width={width},height={height},framerate=30/1 ! \
         cudaupload ! video/x-raw(memory:CUDAMemory) ! tee name=t \
         t. ! queue ! fakesink name=realtime sync=true \
         t. ! delaybuffer name=delay {properties} ! fakesink name=delayed sync=true"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap()
}

/// The case on a GPU: a live 1080p camera, one branch in real time and
/// one 7 s late, every frame in CUDA memory. cudaupload's pool takes the
/// ALLOCATION answer (7 s x 30 fps + 2 more buffers), so 210 frames are held
/// at once without starving the source, and every frame leaves on time.
#[test]
#[ignore = "needs an NVIDIA GPU and GStreamer's nvcodec plugin (cudaupload)"]
fn live_seven_second_delay_holds_210_cuda_frames() {
    common::init();
    const LIVE_FRAMES: usize = 240;
    let pipeline = live_cuda_tee(LIVE_FRAMES, (1920, 1080), "delay=7000000000");
    let delay = pipeline.by_name("delay").unwrap();
    let delayed_memories = record_memories(&delay.static_pad("src").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut most_held = 0u32;
    let log = common::collect_bus(&pipeline, Duration::from_secs(60), |_| {
        most_held = most_held.max(delay.property::<u32>("current-level-buffers"));
        false
    });
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    assert!(log.warnings.is_empty(), "{:#?}", log.warnings);
    let delayed_memories = delayed_memories.lock().unwrap();
    assert_eq!(delayed_memories.len(), LIVE_FRAMES);
    assert!(delayed_memories.values().all(|(_, is_cuda)| *is_cuda));
    // 7 s at 30 fps: 210 frames, give or take the one in flight.
    assert!(most_held >= 209, "held at most {most_held} frames");
    println!("live 1080p, 7 s delay: up to {most_held} CUDA frames held at once");
}

/// Makes every pool proposed to `pad`'s peer hold exactly 8 buffers, so that
/// the CUDA pool upstream cannot grow for the delay (as a camera's cannot).
fn answer_fixed_pools_of_8(pad: &gst::Pad) {
    pad.add_probe(gst::PadProbeType::QUERY_DOWNSTREAM, |_, info| {
        // After the query was answered (the PULL call of a query probe).
        if !info.mask.contains(gst::PadProbeType::PULL) {
            return gst::PadProbeReturn::Ok;
        }
        let Some(gst::QueryViewMut::Allocation(q)) = info.query_mut().map(|q| q.view_mut()) else {
            return gst::PadProbeReturn::Ok;
        };
        let pools: Vec<_> = q.allocation_pools().collect();
        for i in (0..pools.len()).rev() {
            q.remove_nth_allocation_pool(i as u32);
        }
        let size = pools.first().map_or(1920 * 1080 * 3 / 2, |p| p.1);
        q.add_allocation_pool(None::<&gst::BufferPool>, size, 8, 8);
        gst::PadProbeReturn::Ok
    });
}

/// short-pool=copy on a fixed pool of 8 CUDA buffers, live, 3 s delay: the
/// oldest held frames are copied by the CUDA allocator (device to device),
/// so the copies stay CUDA memory and the real-time branch never starves.
#[test]
#[ignore = "needs an NVIDIA GPU and GStreamer's nvcodec plugin (cudaupload)"]
fn short_cuda_pool_copies_stay_cuda_memory() {
    common::init();
    const LIVE_FRAMES: usize = 150;
    let pipeline = live_cuda_tee(LIVE_FRAMES, (1280, 720), "delay=3000000000");
    let tee = pipeline.by_name("t").unwrap();
    answer_fixed_pools_of_8(&tee.static_pad("sink").unwrap());
    let uploaded = record_memories(&tee.static_pad("sink").unwrap());
    let delay = pipeline.by_name("delay").unwrap();
    let delayed_memories = record_memories(&delay.static_pad("src").unwrap());
    let realtime = common::record_pts(&pipeline.by_name("realtime").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, Duration::from_secs(60), |_| false);
    let stats: gst::Structure = delay.property("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    println!("delaybuffer stats: {stats:?}");
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    assert!(log.warnings.is_empty(), "{:#?}", log.warnings);
    assert_eq!(realtime.lock().unwrap().len(), LIVE_FRAMES);
    let copied = stats.get::<u64>("copied").unwrap();
    assert!(copied > 0, "{stats:?}");
    let uploaded = uploaded.lock().unwrap();
    let delayed_memories = delayed_memories.lock().unwrap();
    assert_eq!(delayed_memories.len(), LIVE_FRAMES);
    assert!(delayed_memories.values().all(|(_, is_cuda)| *is_cuda));
    let copies = delayed_memories
        .iter()
        .filter(|(pts, memory)| uploaded.get(pts) != Some(memory))
        .count();
    assert_eq!(copies as u64, copied);
    println!("fixed CUDA pool of 8, 3 s delay: {copied} frames copied, all in CUDA memory");
}
