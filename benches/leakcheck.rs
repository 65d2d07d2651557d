// SPDX-License-Identifier: MPL-2.0
//! leakcheck side by side with the same pipelines without it, in one run:
//! (a) throughput of a pipeline with an inline leakcheck vs without, for
//!     720p video frames and, as the worst case, for tiny 8x8 buffers;
//! (b) the cost per state change of a 50-element pipeline cycled
//!     NULL->PLAYING->NULL, with a leakcheck in it vs without.
//!
//! The tracer hooks stay installed for the life of a process once a leakcheck
//! exists, so every variant runs in its own child process (this binary again).
//! Run with `make bench` or `cargo bench --bench leakcheck`.

use gst::prelude::*;
use std::process::Command;
use std::time::Instant;

const TINY_BUFFERS: u32 = 200_000;
const FRAMES: u32 = 1_000;
const CYCLES: u32 = 100;
const ELEMENTS: usize = 50;

fn launch(description: &str) -> gst::Pipeline {
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// Buffers per second through `source ! [leakcheck !] fakesink`.
fn throughput(source: &str, buffers: u32, with_leakcheck: bool) -> f64 {
    let check = if with_leakcheck {
        "leakcheck grace=0 ! "
    } else {
        ""
    };
    let p = launch(&format!(
        "videotestsrc num-buffers={buffers} {source} ! {check}fakesink sync=false"
    ));
    let start = Instant::now();
    p.set_state(gst::State::Playing).unwrap();
    p.bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(300), &[gst::MessageType::Eos])
        .expect("EOS");
    let elapsed = start.elapsed().as_secs_f64();
    p.set_state(gst::State::Null).unwrap();
    f64::from(buffers) / elapsed
}

/// The source's pattern and caps (videotestsrc is prepended).
const TINY: &str = "pattern=black ! video/x-raw,format=GRAY8,width=8,height=8";
const VIDEO: &str = "! video/x-raw,format=I420,width=1280,height=720";

fn state_change_cost(with_leakcheck: bool) -> f64 {
    // 50 elements: source, identities, sink, and the leakcheck counted among them.
    let identities = ELEMENTS - 2 - usize::from(with_leakcheck);
    let mut description = String::from("fakesrc num-buffers=1");
    for _ in 0..identities {
        description.push_str(" ! identity");
    }
    description.push_str(" ! fakesink");
    if with_leakcheck {
        description.push_str(" leakcheck grace=0");
    }
    let p = launch(&description);
    let start = Instant::now();
    for _ in 0..CYCLES {
        p.set_state(gst::State::Playing).unwrap();
        let _ = p.state(gst::ClockTime::from_seconds(10));
        p.set_state(gst::State::Null).unwrap();
    }
    // Six transitions per element per cycle (three up, three down).
    start.elapsed().as_secs_f64() / f64::from(CYCLES) / (ELEMENTS * 6) as f64 * 1e6
}

fn child(variant: &str) {
    gst::init().unwrap();
    gstedgeguard::plugin_register_static().unwrap();
    let value = match variant {
        "tiny-without" => throughput(TINY, TINY_BUFFERS, false),
        "tiny-with" => throughput(TINY, TINY_BUFFERS, true),
        "video-without" => throughput(VIDEO, FRAMES, false),
        "video-with" => throughput(VIDEO, FRAMES, true),
        "states-without" => state_change_cost(false),
        "states-with" => state_change_cost(true),
        other => panic!("unknown variant {other}"),
    };
    println!("RESULT {value}");
}

fn measure(variant: &str) -> f64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .env("EDGEGUARD_BENCH_VARIANT", variant)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{variant}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap()
        .parse()
        .unwrap()
}

fn median(variant: &str) -> f64 {
    let mut v: Vec<f64> = (0..5).map(|_| measure(variant)).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[2]
}

fn main() {
    if let Ok(variant) = std::env::var("EDGEGUARD_BENCH_VARIANT") {
        child(&variant);
        return;
    }
    println!(
        "leakcheck (a): throughput with an inline leakcheck vs without, median of 5 processes each:"
    );
    for (what, without, with, buffers) in [
        (
            "1280x720 I420 frames",
            "video-without",
            "video-with",
            FRAMES,
        ),
        (
            "8x8 buffers (worst case)",
            "tiny-without",
            "tiny-with",
            TINY_BUFFERS,
        ),
    ] {
        let (without, with) = (median(without), median(with));
        println!(
            "  {what:<26}: {without:10.0} vs {with:10.0} buffers/s, ratio {:.3} (target >= 0.99), {:.2} us added per buffer ({buffers} buffers)",
            with / without,
            (1.0 / with - 1.0 / without) * 1e6
        );
        println!(
            "RATIO|leakcheck|throughput with/without, {what}|{:.3}|>= 0.99",
            with / without
        );
    }
    let (without, with) = (median("states-without"), median("states-with"));
    println!(
        "leakcheck (b): {ELEMENTS}-element pipeline, {CYCLES} NULL->PLAYING->NULL cycles, median of 5:"
    );
    println!("  without leakcheck : {without:8.2} us per state change");
    println!("  with leakcheck    : {with:8.2} us per state change");
    println!("  ratio with/without: {:8.2}", with / without);
    println!(
        "RATIO|leakcheck|state change cost with/without|{:.2}|-",
        with / without
    );
}
