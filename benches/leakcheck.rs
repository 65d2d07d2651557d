// SPDX-License-Identifier: MPL-2.0
//! leakcheck side by side with the same pipelines without it, in one run:
//! (a) throughput of `videotestsrc ! fakesink` with a stand-alone leakcheck
//!     in the pipeline (not in the data path) vs none, and with an inline
//!     leakcheck vs an inline `identity` (the cost of any pass-through
//!     element), for 720p video frames and, as the worst case, for 8x8 buffers;
//! (b) the cost per state change of a 50-element pipeline cycled
//!     NULL->PLAYING->NULL, with a leakcheck in it vs without;
//! (c) what a judgement costs on big pipelines: a flat one of 1000 elements
//!     and bins nested 200, 1000 and 2000 deep (time of `get-report`, RSS
//!     added): linear in depth, 2000 nested within 10 ms and 2 MiB;
//! (d) what leakcheck's tracking holds for bins nested 1000 and 2000 deep:
//!     the RSS a pipeline adds from before it is built to after one
//!     NULL->READY->NULL cycle, with a leakcheck in it minus the same
//!     pipeline with an `identity` in its place (the bins themselves cancel
//!     out): linear in depth (2000 nested within 2.2x of 1000 nested; the
//!     full paths kept before made it 3.7x), 1000 nested within 3 MiB and
//!     2000 within 6 MiB (about 1 KiB per element, GLib's weak references
//!     and qdata included).
//!
//! Every variant runs in its own child process (this binary again), the
//! variants of one comparison taking turns, so that drift in the machine's
//! speed falls on both sides.
//! Run with `make bench` or `cargo bench --bench leakcheck`.

mod common;

use common::{launch, measure};
use gst::prelude::*;
use std::time::Instant;

const TINY_BUFFERS: u32 = 200_000;
const FRAMES: u32 = 1_000;
const CYCLES: u32 = 100;
const ELEMENTS: usize = 50;

/// Where a leakcheck (or its stand-in) sits in the measured pipeline.
#[derive(Clone, Copy)]
enum Placement {
    None,
    /// In the pipeline, not in the data path: how it is meant to be used.
    StandAlone,
    Inline,
    /// An inline `identity`: what any pass-through element costs.
    InlineIdentity,
}

/// Buffers per second through `videotestsrc ! [element !] fakesink`.
fn throughput(source: &str, buffers: u32, placement: Placement) -> f64 {
    let (inline, beside) = match placement {
        Placement::None => ("", ""),
        Placement::StandAlone => ("", " leakcheck grace=0"),
        Placement::Inline => ("leakcheck grace=0 ! ", ""),
        Placement::InlineIdentity => ("identity ! ", ""),
    };
    let p = launch(&format!(
        "videotestsrc num-buffers={buffers} {source} ! {inline}fakesink sync=false{beside}"
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

/// RSS of this process, KiB.
fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A pipeline of `n` identities, flat or each in a bin inside the one
/// before, with a leakcheck, cycled to READY and back; the judgement's time
/// (ms) and the RSS it added (KiB).
fn judgement_cost(n: usize, nested: bool) -> Vec<f64> {
    let pipeline = gst::Pipeline::new();
    let check = gst::ElementFactory::make("leakcheck")
        .property("grace", 0u64)
        .build()
        .unwrap();
    pipeline.add(&check).unwrap();
    let mut parent: gst::Bin = pipeline.clone().upcast();
    for i in 0..n {
        let identity = gst::ElementFactory::make("identity").build().unwrap();
        if nested {
            let bin = gst::Bin::with_name(&format!("b{i}"));
            parent.add(&bin).unwrap();
            bin.add(&identity).unwrap();
            parent = bin;
        } else {
            parent.add(&identity).unwrap();
        }
    }
    pipeline.set_state(gst::State::Ready).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    let before = rss_kib();
    let start = Instant::now();
    let report = check.emit_by_name::<gst::Structure>("get-report", &[]);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(report);
    vec![ms, rss_kib() - before]
}

/// RSS (KiB) that bins nested `n` deep add from before they are built to
/// after one NULL->READY->NULL cycle, with a leakcheck in the pipeline or an
/// identity in its place. The grace is an hour: no judgement runs, so what
/// is added with leakcheck is what it holds to track the pipeline.
fn tracking_cost(n: usize, with_leakcheck: bool) -> Vec<f64> {
    let before = rss_kib();
    let pipeline = gst::Pipeline::new();
    let beside = match with_leakcheck {
        true => gst::ElementFactory::make("leakcheck")
            .property("grace", 3_600_000_000_000u64)
            .build(),
        false => gst::ElementFactory::make("identity").build(),
    };
    pipeline.add(&beside.unwrap()).unwrap();
    let mut parent: gst::Bin = pipeline.clone().upcast();
    for i in 0..n {
        let bin = gst::Bin::with_name(&format!("b{i}"));
        parent.add(&bin).unwrap();
        bin.add(&gst::ElementFactory::make("identity").build().unwrap())
            .unwrap();
        parent = bin;
    }
    pipeline.set_state(gst::State::Ready).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    let added = rss_kib() - before;
    std::hint::black_box(pipeline);
    vec![added]
}

fn child(variant: &str) {
    if let Some(n) = variant.strip_prefix("track-with-") {
        gst::init().unwrap();
        gstedgeguard::plugin_register_static().unwrap();
        return common::report(&tracking_cost(n.parse().unwrap(), true));
    }
    if let Some(n) = variant.strip_prefix("track-without-") {
        gst::init().unwrap();
        gstedgeguard::plugin_register_static().unwrap();
        return common::report(&tracking_cost(n.parse().unwrap(), false));
    }
    if let Some(n) = variant.strip_prefix("judge-flat-") {
        gst::init().unwrap();
        gstedgeguard::plugin_register_static().unwrap();
        return common::report(&judgement_cost(n.parse().unwrap(), false));
    }
    if let Some(n) = variant.strip_prefix("judge-nested-") {
        gst::init().unwrap();
        gstedgeguard::plugin_register_static().unwrap();
        return common::report(&judgement_cost(n.parse().unwrap(), true));
    }
    gst::init().unwrap();
    gstedgeguard::plugin_register_static().unwrap();
    let (source, buffers) = match variant.split_once('-').map(|(size, _)| size) {
        Some("tiny") => (TINY, TINY_BUFFERS),
        _ => (VIDEO, FRAMES),
    };
    let value = match variant {
        "tiny-none" | "video-none" => throughput(source, buffers, Placement::None),
        "tiny-standalone" | "video-standalone" => {
            throughput(source, buffers, Placement::StandAlone)
        }
        "tiny-inline" | "video-inline" => throughput(source, buffers, Placement::Inline),
        "tiny-identity" | "video-identity" => {
            throughput(source, buffers, Placement::InlineIdentity)
        }
        "states-without" => state_change_cost(false),
        "states-with" => state_change_cost(true),
        other => panic!("unknown variant {other}"),
    };
    common::report(&[value]);
}

/// The median of 5 runs of each variant, the variants taking turns.
fn medians<const N: usize>(variants: [&str; N]) -> [f64; N] {
    let mut runs: Vec<[f64; N]> = (0..5).map(|_| variants.map(|v| measure(v)[0])).collect();
    std::array::from_fn(|i| {
        runs.sort_by(|a, b| a[i].partial_cmp(&b[i]).unwrap());
        runs[2][i]
    })
}

fn main() {
    if let Some(variant) = common::variant() {
        child(&variant);
        return;
    }
    println!("leakcheck (a): throughput, median of 5 processes each:");
    for (what, size, buffers, standalone_target, inline_target) in [
        ("1280x720 I420 frames", "video", FRAMES, 0.99, 0.99),
        ("8x8 buffers (worst case)", "tiny", TINY_BUFFERS, 0.97, 0.95),
    ] {
        let variant = |placement: &str| format!("{size}-{placement}");
        let [none, standalone, inline, identity] = medians([
            variant("none").as_str(),
            variant("standalone").as_str(),
            variant("inline").as_str(),
            variant("identity").as_str(),
        ]);
        println!(
            "  {what:<26}: none {none:10.0}, stand-alone leakcheck {standalone:10.0}, \
             inline identity {identity:10.0}, inline leakcheck {inline:10.0} buffers/s ({buffers} buffers)"
        );
        println!(
            "RATIO|leakcheck|stand-alone vs none, {what}|{:.3}|>= {standalone_target}",
            standalone / none
        );
        println!(
            "RATIO|leakcheck|inline vs inline identity, {what}|{:.3}|>= {inline_target}",
            inline / identity
        );
    }
    let [without, with] = medians(["states-without", "states-with"]);
    println!(
        "leakcheck (b): {ELEMENTS}-element pipeline, {CYCLES} NULL->PLAYING->NULL cycles, median of 5:"
    );
    println!("  without leakcheck : {without:8.2} us per state change");
    println!("  with leakcheck    : {with:8.2} us per state change");
    println!("  ratio with/without: {:8.2}", with / without);
    println!(
        "RATIO|leakcheck|state change cost with/without|{:.2}|<= 1.5",
        with / without
    );
    println!("leakcheck (c): a judgement (get-report) after one cycle, median of 5:");
    for (what, variant, ms_bound, kib_bound) in [
        ("1000 elements, flat", "judge-flat-1000", 50.0, 5120.0),
        ("200 bins nested", "judge-nested-200", 50.0, 5120.0),
        ("1000 bins nested", "judge-nested-1000", 10.0, 2048.0),
        ("2000 bins nested", "judge-nested-2000", 10.0, 2048.0),
    ] {
        let runs: Vec<Vec<f64>> = (0..5).map(|_| measure(variant)).collect();
        let ms = common::median(runs.iter().map(|r| r[0]).collect());
        let kib = common::median(runs.iter().map(|r| r[1]).collect());
        println!(
            "  {what:<20}: {ms:7.1} ms, {kib:7.0} KiB RSS added \
             (bound: {ms_bound} ms, {kib_bound} KiB)"
        );
        println!("RATIO|leakcheck|judgement of {what} (ms)|{ms:.1}|<= {ms_bound}");
        println!("RATIO|leakcheck|judgement of {what} (KiB RSS)|{kib:.0}|<= {kib_bound}");
    }
    println!(
        "leakcheck (d): what tracking bins nested N deep holds after one cycle \
         (RSS added with leakcheck minus with an identity in its place), median of 5:"
    );
    let mut held_by_depth = Vec::new();
    for (n, kib_bound) in [(1000, 3072.0), (2000, 6144.0)] {
        let (with, without) = (format!("track-with-{n}"), format!("track-without-{n}"));
        let [with, without] = medians([with.as_str(), without.as_str()]);
        let held = with - without;
        println!(
            "  {n} bins nested: {with:7.0} KiB with leakcheck, {without:7.0} KiB without, \
             {held:7.0} KiB held by tracking (bound: {kib_bound} KiB)"
        );
        println!("RATIO|leakcheck|tracking of {n} bins nested (KiB RSS)|{held:.0}|<= {kib_bound}");
        held_by_depth.push(held);
    }
    println!(
        "RATIO|leakcheck|tracking 2000 vs 1000 bins nested (linear: 2)|{:.2}|<= 2.2",
        held_by_depth[1] / held_by_depth[0]
    );
}
