// SPDX-License-Identifier: MPL-2.0
//! vpuguardenc side by side with the bare encoder it wraps, in one run:
//! (a) encoding throughput through the guard (software path) vs bare x264enc;
//! (b) decision latency: take the machine-wide lock (polled, as the element
//!     does), read the slots, read and parse the session listing with its
//!     encoder tables, and combine them into the load.
//!
//! Run with `make bench` (or `cargo bench --bench vpuguardenc`).

use gst::prelude::*;
use gstedgeguard::vpuguardenc::{ledger::Ledger, load, sessions};
use std::time::{Duration, Instant};

const FRAMES: u32 = 300;
const ROUNDS: usize = 5;

fn run(description: &str) -> Duration {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let bus = pipeline.bus().unwrap();
    let start = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(300),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("pipeline finishes");
    let elapsed = start.elapsed();
    assert!(matches!(msg.view(), gst::MessageView::Eos(..)), "{msg:?}");
    pipeline.set_state(gst::State::Null).unwrap();
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    gst::init().unwrap();
    gstedgeguard::plugin_register_static().unwrap();

    let source = format!(
        "videotestsrc num-buffers={FRAMES} pattern=ball ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1"
    );
    let props = "speed-preset=ultrafast tune=zerolatency";
    let bare = format!("{source} ! x264enc {props} ! h264parse ! fakesink");
    let guarded = format!(
        "{source} ! vpuguardenc mode=software sw-properties=\"props,speed-preset=ultrafast,tune=zerolatency\" ! fakesink"
    );
    // Warm up caches and the registry, then alternate so drift hits both alike.
    run(&bare);
    let (mut bare_t, mut guarded_t) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        bare_t.push(run(&bare));
        guarded_t.push(run(&guarded));
    }
    let (b, g) = (median(bare_t), median(guarded_t));
    let fps = |d: Duration| f64::from(FRAMES) / d.as_secs_f64();
    println!("vpuguardenc throughput, 1280x720 I420, {FRAMES} frames, median of {ROUNDS}:");
    println!("  bare x264enc ! h264parse : {:8.1} fps", fps(b));
    println!("  vpuguardenc (software)   : {:8.1} fps", fps(g));
    println!(
        "  ratio guard/bare         : {:8.3}   (target >= 0.98)",
        fps(g) / fps(b)
    );

    let dir = std::env::temp_dir().join(format!("edgeguard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listing = dir.join("sessions-summary");
    std::fs::write(
        &listing,
        include_str!("../tests/data/sessions-summary.sample").repeat(2),
    )
    .unwrap();
    let mut latencies = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let start = Instant::now();
        let ledger = Ledger::open(&dir.join("lock")).unwrap();
        let lock = ledger
            .lock_decision_within(Duration::from_secs(2), || false)
            .unwrap();
        let slots = lock.live_slots(&ledger).unwrap();
        let (_, loads) = sessions::read_session_loads(Some(&listing)).unwrap();
        let seen = load::machine_load(&loads, &slots, load::process_of_thread);
        std::hint::black_box(seen);
        drop(lock);
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!("vpuguardenc decision latency (lock + slots + read + parse + load), 1000 runs:");
    println!(
        "  median {:?}  p99 {:?}  max {:?}   (target median < 1 ms)",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    println!(
        "RATIO|vpuguardenc|throughput guard/bare x264enc|{:.3}|>= 0.98",
        fps(g) / fps(b)
    );
    println!(
        "RATIO|vpuguardenc|decision latency median (us)|{:.1}|< 1000",
        p(0.5).as_secs_f64() * 1e6
    );
    println!(
        "RATIO|vpuguardenc|decision latency p99 (us)|{:.1}|-",
        p(0.99).as_secs_f64() * 1e6
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
