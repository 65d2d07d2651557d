// SPDX-License-Identifier: MPL-2.0
//! delaybuffer side by side, in one run, with what users would use instead:
//! (a) CPU added per buffer: delaybuffer vs `queue min-threshold-time` (same
//!     delay, unbounded sizes), over many small buffers;
//! (b) 1080p RGBA at 30 fps delayed 7 s: CPU time and peak RSS of delaybuffer vs
//!     a CPU deep-copy delay (appsink -> copy into a deque -> appsrc).
//!
//! (c) taps: CPU added per buffer by 3 taps of one delaybuffer vs 3
//!     delaybuffers behind a tee; peak RSS of 3 taps (7 s, 3.5 s, 1 s) of
//!     1080p RGBA / the frames 7 s holds; and the CPU of one short-pool copy
//!     (a source whose pool of 8 never grows) per copied buffer.
//!
//! Each variant runs in a child process (this binary again) so that peak RSS
//! is its own. Run with `make bench` or `cargo bench --bench delaybuffer`.

mod common;

use common::{launch, measure, median};
use gst::prelude::*;
use std::collections::VecDeque;

const SMALL_BUFFERS: u64 = 200_000;
const SMALL_DELAY_NS: u64 = 1_000_000_000;
const BIG_FRAMES: u64 = 900;
const BIG_DELAY_NS: u64 = 7_000_000_000;
const FRAME_BYTES: u64 = 1920 * 1080 * 4;
/// The delays of the three outputs in (c), small buffers.
const TAP_DELAYS_NS: [u64; 3] = [250_000_000, 500_000_000, 1_000_000_000];
/// Frames of 640x480 I420 pushed from a pool for the short-pool copy cost.
const POOL_FRAMES: u64 = 3000;

/// `source` into a delaybuffer whose three taps have `delays` (its `src`
/// unlinked), each into a fakesink.
fn taps(source: &str, delays: &[u64]) -> gst::Pipeline {
    let links: String = (0..delays.len())
        .map(|i| format!(" d.tap_{i} ! fakesink sync=false"))
        .collect();
    let pipeline = launch(&format!("{source} ! delaybuffer name=d{links}"));
    let d = pipeline.by_name("d").unwrap();
    for (i, delay) in delays.iter().enumerate() {
        d.static_pad(&format!("tap_{i}"))
            .unwrap()
            .set_property("delay", *delay);
    }
    pipeline
}

/// `source` into a tee with one delaybuffer per delay.
fn tee_of_delaybuffers(source: &str, delays: &[u64]) -> gst::Pipeline {
    let branches: String = delays
        .iter()
        .map(|d| format!(" t. ! delaybuffer delay={d} ! fakesink sync=false"))
        .collect();
    launch(&format!("{source} ! tee name=t{branches}"))
}

/// POOL_FRAMES frames from a pool of 8 (fixed) or growing (`max` 0), not
/// live, through a 1 s delaybuffer (short-pool=copy). Returns how many were
/// copied.
fn pool_source(max: u32) -> u64 {
    let caps: gst::Caps = "video/x-raw,format=I420,width=640,height=480,framerate=30/1"
        .parse()
        .unwrap();
    let pipeline = launch(&format!(
        "appsrc name=src format=time caps={} ! delaybuffer name=d delay=1000000000 ! fakesink sync=false",
        caps.to_string().replace(' ', "")
    ));
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let pool = gst::BufferPool::new();
    let mut config = pool.config();
    config.set_params(Some(&caps), 640 * 480 * 3 / 2, 8, max);
    pool.set_config(config).unwrap();
    pool.set_active(true).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..POOL_FRAMES {
        let mut buffer = pool.acquire_buffer(None).unwrap();
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::SECOND.mul_div_floor(i, 30));
        src.push_buffer(buffer).unwrap();
    }
    src.end_of_stream().unwrap();
    pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(600), &[gst::MessageType::Eos])
        .unwrap();
    let stats: gst::Structure = pipeline.by_name("d").unwrap().property("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    pool.set_active(false).unwrap();
    stats.get::<u64>("copied").unwrap()
}

/// CPU seconds (user, system), minor page faults and peak RSS in bytes of this process so far.
fn usage() -> (f64, f64, u64, u64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(ru.ru_utime),
        secs(ru.ru_stime),
        ru.ru_minflt as u64,
        ru.ru_maxrss as u64 * 1024,
    )
}

/// What one variant cost: CPU (user, system), page faults, peak RSS.
#[derive(Debug, Clone, Copy)]
struct Cost {
    user: f64,
    sys: f64,
    faults: u64,
    rss: u64,
}

impl Cost {
    fn cpu(&self) -> f64 {
        self.user + self.sys
    }
}

fn run_to_eos(pipeline: &gst::Pipeline) {
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(600),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    assert!(matches!(msg.view(), gst::MessageView::Eos(..)), "{msg:?}");
    pipeline.set_state(gst::State::Null).unwrap();
}

/// The CPU deep-copy delay people write by hand: every frame copied to a deque.
fn copy_delay(source: &str) {
    let input = launch(&format!("{source} ! appsink name=sink sync=false"));
    let output = launch("appsrc name=src format=time ! fakesink sync=false");
    let sink = input
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let src = output
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    output.set_state(gst::State::Playing).unwrap();
    input.set_state(gst::State::Playing).unwrap();
    let mut held: VecDeque<gst::Buffer> = VecDeque::new();
    let mut caps_set = false;
    while let Ok(sample) = sink.pull_sample() {
        if !caps_set {
            src.set_caps(sample.caps_owned().as_ref());
            caps_set = true;
        }
        let copy = sample.buffer().unwrap().copy_deep().unwrap();
        let newest = copy.pts().unwrap();
        held.push_back(copy);
        while held
            .front()
            .is_some_and(|b| newest.nseconds() - b.pts().unwrap().nseconds() >= BIG_DELAY_NS)
        {
            src.push_buffer(held.pop_front().unwrap()).unwrap();
        }
    }
    for b in held {
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    let bus = output.bus().unwrap();
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(600), &[gst::MessageType::Eos])
        .unwrap();
    input.set_state(gst::State::Null).unwrap();
    output.set_state(gst::State::Null).unwrap();
}

/// Runs one variant in this process and prints "cpu rss".
fn child(variant: &str) {
    gst::init().unwrap();
    gstedgeguard::plugin_register_static().unwrap();
    let small = format!(
        "videotestsrc num-buffers={SMALL_BUFFERS} pattern=black ! video/x-raw,format=GRAY8,width=8,height=8,framerate=1000/1"
    );
    let big = format!(
        "videotestsrc num-buffers={BIG_FRAMES} pattern=black ! video/x-raw,format=RGBA,width=1920,height=1080,framerate=30/1"
    );
    let known = [
        "small-none",
        "small-queue",
        "small-delaybuffer",
        "big-none",
        "big-delaybuffer",
        "big-queue",
        "big-copy",
        "small-taps",
        "small-tee",
        "big-taps",
        "pool-fixed",
        "pool-growing",
    ];
    assert!(known.contains(&variant), "unknown variant {variant}");
    let (user0, sys0, faults0, _) = usage();
    match variant {
        "small-none" => run_to_eos(&launch(&format!("{small} ! fakesink sync=false"))),
        "small-queue" => run_to_eos(&launch(&format!(
            "{small} ! queue min-threshold-time={SMALL_DELAY_NS} max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! fakesink sync=false"
        ))),
        "small-delaybuffer" => run_to_eos(&launch(&format!(
            "{small} ! delaybuffer delay={SMALL_DELAY_NS} ! fakesink sync=false"
        ))),
        "big-none" => run_to_eos(&launch(&format!("{big} ! fakesink sync=false"))),
        "big-delaybuffer" => run_to_eos(&launch(&format!(
            "{big} ! delaybuffer delay={BIG_DELAY_NS} ! fakesink sync=false"
        ))),
        "big-queue" => run_to_eos(&launch(&format!(
            "{big} ! queue min-threshold-time={BIG_DELAY_NS} max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! fakesink sync=false"
        ))),
        "big-copy" => copy_delay(&big),
        "small-taps" => run_to_eos(&taps(&small, &TAP_DELAYS_NS)),
        "small-tee" => run_to_eos(&tee_of_delaybuffers(&small, &TAP_DELAYS_NS)),
        "big-taps" => run_to_eos(&taps(
            &big,
            &[BIG_DELAY_NS, BIG_DELAY_NS / 2, 1_000_000_000],
        )),
        _ => (),
    }
    let copied = match variant {
        "pool-fixed" => pool_source(8),
        "pool-growing" => pool_source(0),
        _ => 0,
    };
    let (user1, sys1, faults1, rss) = usage();
    common::report(&[
        user1 - user0,
        sys1 - sys0,
        (faults1 - faults0) as f64,
        rss as f64,
        copied as f64,
    ]);
}

/// The child's figures as its `Cost`.
fn cost(variant: &str) -> Cost {
    let v = measure(variant);
    Cost {
        user: v[0],
        sys: v[1],
        faults: v[2] as u64,
        rss: v[3] as u64,
    }
}

fn main() {
    if let Some(variant) = common::variant() {
        child(&variant);
        return;
    }
    const ROUNDS: usize = 5;
    let cpu = |variant: &str| median((0..ROUNDS).map(|_| cost(variant).cpu()).collect());
    let none = cpu("small-none");
    let queue = cpu("small-queue");
    let delay = cpu("small-delaybuffer");
    let per = |t: f64| (t - none) / SMALL_BUFFERS as f64 * 1e6;
    println!(
        "delaybuffer (a): CPU added per buffer, {SMALL_BUFFERS} 8x8 GRAY8 buffers, 1 s delay, median of {ROUNDS}:"
    );
    println!("  queue min-threshold-time : {:7.2} us/buffer", per(queue));
    println!("  delaybuffer              : {:7.2} us/buffer", per(delay));
    println!(
        "  ratio delaybuffer/queue  : {:7.2}   (target <= 1)",
        per(delay) / per(queue)
    );
    println!(
        "RATIO|delaybuffer|CPU per buffer delaybuffer/queue|{:.2}|<= 1",
        per(delay) / per(queue)
    );

    // Page faulting dominates (b) and its system time varies from run to run:
    // each variant is the run of median CPU among three.
    let measure_median = |variant: &str| {
        let mut runs: Vec<Cost> = (0..3).map(|_| cost(variant)).collect();
        runs.sort_by(|a, b| a.cpu().partial_cmp(&b.cpu()).unwrap());
        runs[1]
    };
    let none = measure_median("big-none");
    let held = (BIG_DELAY_NS / 1_000_000_000 * 30) * FRAME_BYTES;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "delaybuffer (b): 1080p RGBA 30 fps, {BIG_FRAMES} frames, 7 s delay ({:.0} MiB of frames held); \
         cost above the same pipeline without a delay stage (median of 3):",
        mib(held)
    );
    println!(
        "  {:<22} {:>8} {:>8} {:>8} {:>12} {:>14}",
        "variant", "CPU s", "user s", "sys s", "page faults", "peak RSS MiB"
    );
    let mut costs = Vec::new();
    for (name, variant) in [
        ("delaybuffer", "big-delaybuffer"),
        ("queue min-threshold", "big-queue"),
        ("copy delay (appsink)", "big-copy"),
    ] {
        let c = measure_median(variant);
        println!(
            "  {:<22} {:>8.3} {:>8.3} {:>8.3} {:>12} {:>14.0}",
            name,
            c.cpu() - none.cpu(),
            c.user - none.user,
            c.sys - none.sys,
            c.faults.saturating_sub(none.faults),
            mib(c.rss.saturating_sub(none.rss))
        );
        costs.push(c);
    }
    let (db, copy) = (costs[0], costs[2]);
    let cpu_ratio = (copy.cpu() - none.cpu()) / (db.cpu() - none.cpu()).max(1e-3);
    let rss_ratio = db.rss.saturating_sub(none.rss) as f64 / held as f64;
    println!(
        "  ratio copy/delaybuffer CPU: {cpu_ratio:.1} (target >= 10); delaybuffer peak RSS / held frames: {rss_ratio:.2} (target <= 1)"
    );
    println!("RATIO|delaybuffer|delay stage CPU copy/delaybuffer, 1080p 7 s|{cpu_ratio:.1}|>= 10");
    println!("RATIO|delaybuffer|peak RSS / held frames|{rss_ratio:.2}|<= 1");
    taps_and_short_pools(none);
}

/// (c): taps against a tee of delaybuffers, and what a short-pool copy costs.
fn taps_and_short_pools(big_none: Cost) {
    const ROUNDS: usize = 5;
    let cpu = |variant: &str| median((0..ROUNDS).map(|_| cost(variant).cpu()).collect());
    let none = cpu("small-none");
    let per = |t: f64| (t - none) / SMALL_BUFFERS as f64 * 1e6;
    let taps = per(cpu("small-taps"));
    let tee = per(cpu("small-tee"));
    println!(
        "delaybuffer (c): 3 outputs delayed 0.25, 0.5 and 1 s, {SMALL_BUFFERS} 8x8 buffers, median of {ROUNDS}:"
    );
    println!("  tee + 3 delaybuffers     : {tee:7.2} us/buffer");
    println!("  3 taps of one window     : {taps:7.2} us/buffer");
    println!(
        "  ratio taps/tee           : {:7.2}   (target <= 1)",
        taps / tee
    );
    println!(
        "RATIO|delaybuffer|CPU per buffer 3 taps/3 delaybuffers|{:.2}|<= 1",
        taps / tee
    );

    let held = (BIG_DELAY_NS / 1_000_000_000 * 30) * FRAME_BYTES;
    let big = cost("big-taps");
    let rss_ratio = big.rss.saturating_sub(big_none.rss) as f64 / held as f64;
    println!(
        "  1080p RGBA, taps of 7, 3.5 and 1 s: peak RSS / held frames {rss_ratio:.2} (target <= 1.05)"
    );
    println!("RATIO|delaybuffer|peak RSS of 3 taps / held frames|{rss_ratio:.2}|<= 1.05");

    let run = |variant: &str| {
        let v = measure(variant);
        (v[0] + v[1], v[4])
    };
    let runs = |variant: &str| {
        let mut r: Vec<_> = (0..ROUNDS).map(|_| run(variant)).collect();
        r.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        r[ROUNDS / 2]
    };
    let (fixed, copied) = runs("pool-fixed");
    let (growing, _) = runs("pool-growing");
    let per_copy = (fixed - growing) / (copied.max(1.0)) * 1e6;
    println!(
        "  short-pool=copy, 640x480 I420 from a pool of 8: {copied:.0} of {POOL_FRAMES} copied, \
         {per_copy:.1} us CPU per copy ({:.0} bytes)",
        640.0 * 480.0 * 1.5
    );
}
