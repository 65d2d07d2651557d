// SPDX-License-Identifier: MPL-2.0
//! A live 30 fps source whose buffer pool holds 8 buffers and never grows,
//! like nvarguscamerasrc (6 to 8 buffers): it ignores any ALLOCATION answer
//! asking for more, blocks when the pool is empty, and loses the frames whose
//! capture time passed meanwhile, as a camera does. It is an appsrc fed from
//! a thread of its own that paces itself on the pipeline clock and measures,
//! on that clock, how long it waited for a buffer.

use gst::prelude::*;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How many buffers the pool holds, for good.
pub const BUFFERS: u32 = 8;
pub const FPS: u64 = 30;

/// What the source went through.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceStats {
    /// Frames pushed.
    pub sent: u64,
    /// Frames whose time passed while it waited for a buffer.
    pub lost: u64,
    /// Acquires that found the pool empty.
    pub found_empty: u64,
    /// The longest wait for a buffer, on the pipeline clock.
    pub longest_wait: gst::ClockTime,
}

pub struct FixedPoolSource {
    pool: gst::BufferPool,
    stats: Arc<Mutex<SourceStats>>,
    thread: Option<JoinHandle<()>>,
}

impl FixedPoolSource {
    /// A pool of `BUFFERS` buffers for `caps` (memory from `allocator`, or
    /// system memory), fixed at min = max.
    pub fn new(caps: &gst::Caps, allocator: Option<&gst::Allocator>) -> Self {
        let info = gst_video::VideoInfo::from_caps(caps).unwrap();
        let pool = gst::BufferPool::new();
        let mut config = pool.config();
        config.set_params(Some(caps), info.size() as u32, BUFFERS, BUFFERS);
        if allocator.is_some() {
            config.set_allocator(allocator, None);
        }
        pool.set_config(config).unwrap();
        pool.set_active(true).unwrap();
        FixedPoolSource {
            pool,
            stats: Arc::default(),
            thread: None,
        }
    }

    /// Feeds `frames` frames at 30 fps into `appsrc` (live, format time), then
    /// EOS. `pipeline` must have been set to PLAYING (its live sinks complete
    /// the change only with the first frame): its clock and base time pace
    /// the source.
    pub fn start(&mut self, pipeline: &gst::Pipeline, appsrc: gst_app::AppSrc, frames: u64) {
        let clock = pipeline.clock().expect("a PLAYING pipeline has a clock");
        let base = pipeline
            .base_time()
            .expect("a PLAYING pipeline has a base time");
        let pool = self.pool.clone();
        let stats = self.stats.clone();
        self.thread = Some(std::thread::spawn(move || {
            feed(&pool, &clock, base, &appsrc, frames, &stats);
            let _ = appsrc.end_of_stream();
        }));
    }

    pub fn stats(&self) -> SourceStats {
        *self.stats.lock().unwrap()
    }

    /// Unblocks and joins the feeding thread.
    pub fn stop(&mut self) {
        self.pool.set_flushing(true);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for FixedPoolSource {
    fn drop(&mut self) {
        self.stop();
        let _ = self.pool.set_active(false);
    }
}

fn frame_time(i: u64) -> gst::ClockTime {
    gst::ClockTime::SECOND.mul_div_floor(i, FPS).unwrap()
}

fn feed(
    pool: &gst::BufferPool,
    clock: &gst::Clock,
    base: gst::ClockTime,
    appsrc: &gst_app::AppSrc,
    frames: u64,
    stats: &Mutex<SourceStats>,
) {
    let dont_wait = gst::BufferPoolAcquireParams::with_flags(gst::BufferPoolAcquireFlags::DONTWAIT);
    let mut i = 0;
    while i < frames {
        let _ = clock.new_single_shot_id(base + frame_time(i)).wait();
        let asked = clock.time();
        let mut buffer = match pool.acquire_buffer(Some(&dont_wait)) {
            Ok(buffer) => buffer,
            Err(_) => {
                stats.lock().unwrap().found_empty += 1;
                let Ok(buffer) = pool.acquire_buffer(None) else {
                    return; // flushing: stopped
                };
                // The frames whose capture time passed meanwhile are lost.
                let now = clock.time().saturating_sub(base);
                let current = now.nseconds() * FPS / gst::ClockTime::SECOND.nseconds();
                if current > i {
                    stats.lock().unwrap().lost += current.min(frames - 1) - i;
                    i = current.min(frames - 1);
                }
                buffer
            }
        };
        let waited = clock.time().saturating_sub(asked);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(frame_time(i));
            b.set_duration(frame_time(i + 1) - frame_time(i));
        }
        if appsrc.push_buffer(buffer).is_err() {
            return;
        }
        let mut s = stats.lock().unwrap();
        s.sent += 1;
        s.longest_wait = s.longest_wait.max(waited);
        drop(s);
        i += 1;
    }
}
