// SPDX-License-Identifier: MPL-2.0
//! vpuguardenc side by side with the bare encoder it wraps, in one run:
//! (a) encoding throughput through the guard vs the bare chain it builds, with
//!     the same properties: on x264enc (the default software encoder), on
//!     x265enc (`sw-encoder=x265enc`), and on the failover encoder (x265enc)
//!     after the H.265 MPP test double failed, counted once it took over;
//! (b) the failover on a live 320x240@30 stream: the MPP test double fails on
//!     its output thread at its 100th frame with 3 more in flight. The longest
//!     gap between frames leaving the guard around the switch, less the frame
//!     interval, is the stall; the same stream without failure gives the
//!     baseline gap. Each failover run is checked: no ERROR, no frame lost,
//!     every frame out once and in order, the double's session closed;
//! (c) decision latency: take the machine-wide lock (polled, as the element
//!     does), read the slots, read (or reuse the snapshot of) and parse the
//!     session listing with its encoder tables, and combine them into the load;
//! (d) vpuguarddec: decoding throughput through the guard on its software
//!     decoder vs bare avdec_h264, 1280x720 H.264 from a file, counted from
//!     output `COUNT_FROM` on (the guard creates its decoder in the CAPS
//!     event, the bare pipeline before PLAYING);
//! (e) the decoder failover on a live 320x240@30 H.264 stream: the MPP decoder
//!     double fails on its output thread at its 100th access unit with 3 more
//!     queued; the largest gap between frames leaving the guard, less the
//!     frame interval, vs the same stream without failure.
//!
//! Every pipeline runs in its own child process (this binary again), the
//! variants of one comparison taking turns, as in benches/leakcheck.rs: runs
//! in one process disturb each other (of two identical x265enc pipelines run
//! in turns in one process, the second was about 10% faster), and turns
//! spread the machine's drift over both sides. Ratios are medians of each
//! round's ratio. EDGEGUARD_BENCH_VERBOSE=1 prints every run on stderr.
//!
//! Run with `make bench` (or `cargo bench --bench vpuguardenc`).

#[path = "common/mod.rs"]
mod bench;
#[path = "../tests/common/mod.rs"]
mod common;

use bench::cpu_time;
use common::fake_mpp::FACTORY_NAME as FAKE_H265;
use common::fake_mpp_dec::FACTORY_NAME as FAKE_DEC;
use common::vpu::Vpu;
use gst::prelude::*;
use gstedgeguard::vpu::budget::{self, BudgetSettings, Patience};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(120);
/// Frames per throughput run: x264enc is about twice as fast as x265enc.
const X264_FRAMES: u32 = 200;
const X265_FRAMES: u32 = 100;
/// The software encoders' properties, bare and in the guard; also what the
/// guard gives x265enc as failover encoder (child_props::switchable_defaults).
const SW_PROPS: &str = "speed-preset=ultrafast tune=zerolatency";
/// The failover throughput run: the double fails on the frame it is given as
/// this one, and the frames out are counted from this one on, when the
/// failover encoder has long taken over.
const FAILOVER_FRAMES: u32 = 120;
const FAIL_AFTER: u32 = 10;
const COUNT_FROM: usize = 30;

/// The live stream: the double fails at its 100th frame with 3 more queued.
const LIVE_FRAMES: u32 = 120;
const LIVE_FAIL_AFTER: u32 = 100;
const IN_FLIGHT: u32 = 3;
const FRAME_INTERVAL_MS: f64 = 1000.0 / 30.0;
/// Frames of the decoding throughput runs' file.
const DECODE_FRAMES: u32 = 300;

/// The double's properties for these runs: on its output thread.
fn on_output_thread(double_props: &str) -> String {
    format!(",output-thread=true{double_props}")
}

/// A guard named `out` on the H.265 double, `double_props` added to the
/// double's properties.
fn encoder_guard(vpu: &Vpu, double_props: &str) -> String {
    vpu.guard_on(FAKE_H265, &on_output_thread(double_props), "name=out")
}

/// A vpuguarddec named `out` on the decoder double.
fn decoder_guard(vpu: &Vpu, double_props: &str) -> String {
    vpu.decoder_guard(&on_output_thread(double_props), "name=out")
}

/// One buffer leaving the element named `out`: when (wall and CPU time), and
/// its running time.
#[derive(Debug, Clone, Copy)]
struct Out {
    at: Instant,
    cpu: Duration,
    running_time: gst::ClockTime,
}

/// The decision that announced a failover, as a sync handler saw it (in the
/// posting thread, just before the frames in flight are sent again).
#[derive(Debug, Clone)]
struct Switch {
    at: Instant,
    replayed: u64,
    lost: u64,
    running_time: gst::ClockTime,
}

struct Run {
    elapsed: Duration,
    cpu: Duration,
    out: Vec<Out>,
    reasons: Vec<String>,
    switch: Option<Switch>,
    /// When the double's failing stage last took a frame: the one it failed
    /// on, when it fails.
    failed_at: Option<Instant>,
    log: common::BusLog,
}

/// Runs `description` (with an element named `out`) from PLAYING to EOS,
/// recording what leaves `out`, the decisions and the double's failure.
fn run(description: &str) -> Run {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let out = Arc::new(Mutex::new(Vec::with_capacity(512)));
    let o = out.clone();
    pipeline
        .by_name("out")
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let (at, cpu) = (Instant::now(), cpu_time());
            if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                let segment = pad.sticky_event::<gst::event::Segment>(0).unwrap();
                let segment = segment.segment().downcast_ref::<gst::ClockTime>().unwrap();
                let running_time = segment.to_running_time(pts).unwrap();
                o.lock().unwrap().push(Out {
                    at,
                    cpu,
                    running_time,
                });
            }
            gst::PadProbeReturn::Ok
        });
    // The double's failing stage (identity error-after) is created when the
    // double goes to READY, inside the guard.
    let failed_at = Arc::new(Mutex::new(None));
    let f = failed_at.clone();
    pipeline.connect_deep_element_added(move |_, _, element| {
        if element.name() == "mpp-encode" {
            let f = f.clone();
            element.static_pad("sink").unwrap().add_probe(
                gst::PadProbeType::BUFFER,
                move |_, _| {
                    *f.lock().unwrap() = Some(Instant::now());
                    gst::PadProbeReturn::Ok
                },
            );
        }
    });
    let switch = Arc::new(Mutex::new(None));
    let s = switch.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let Some(d) = msg
            .structure()
            .filter(|d| d.name() == "vpuguardenc-decision")
            .filter(|d| d.get::<String>("reason").as_deref() == Ok("hw-failed-mid-stream"))
        {
            *s.lock().unwrap() = Some(Switch {
                at: Instant::now(),
                replayed: d.get("frames-replayed").unwrap(),
                lost: d.get("frames-lost").unwrap(),
                running_time: gst::ClockTime::from_nseconds(
                    d.get::<u64>("switch-running-time").unwrap(),
                ),
            });
        }
        gst::BusSyncReply::Pass
    });
    let (start, cpu_start) = (Instant::now(), cpu_time());
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    let (elapsed, cpu) = (start.elapsed(), cpu_time() - cpu_start);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{description}: {log:#?}");
    let reasons = log
        .named("vpuguardenc-decision")
        .iter()
        .map(|d| d.get::<String>("reason").unwrap())
        .collect();
    let out = std::mem::take(&mut *out.lock().unwrap());
    let switch = switch.lock().unwrap().take();
    let failed_at = failed_at.lock().unwrap().take();
    Run {
        elapsed,
        cpu,
        out,
        reasons,
        switch,
        failed_at,
        log,
    }
}

/// Every frame out once, in order.
fn assert_every_frame_once(run: &Run, frames: u32) {
    assert_eq!(run.out.len(), frames as usize, "frames out");
    assert!(
        run.out
            .windows(2)
            .all(|w| w[0].running_time < w[1].running_time),
        "running times out of order"
    );
}

/// Checks that a run failed over once, losing nothing, and that every frame
/// left the guard once, in order; returns the switch.
fn assert_failed_over(run: &Run, frames: u32) -> Switch {
    let switch = run.switch.clone().unwrap_or_else(|| {
        panic!(
            "no failover: decisions {:?}, warnings {:#?}",
            run.reasons, run.log.warnings
        )
    });
    assert_eq!(run.reasons, ["budget", "hw-failed-mid-stream"]);
    assert_eq!(switch.lost, 0, "frames lost at the switch: {switch:?}");
    assert_every_frame_once(run, frames);
    switch
}

fn source_720p(frames: u32) -> String {
    format!(
        "videotestsrc num-buffers={frames} pattern=ball ! \
         video/x-raw,format=I420,width=1280,height=720,framerate=30/1"
    )
}

/// The chain the guard builds for a stream it will not switch is encoder !
/// parser, the encoder given sw-properties: the bare one is the same.
fn software(encoder: &str, guarded: bool) -> Vec<f64> {
    let (parser, frames) = match encoder {
        "x264enc" => ("h264parse", X264_FRAMES),
        _ => ("h265parse", X265_FRAMES),
    };
    let source = source_720p(frames);
    let description = if guarded {
        format!(
            "{source} ! vpuguardenc name=out mode=software sw-encoder={encoder} \
             sw-properties=\"props,{}\" ! fakesink",
            SW_PROPS.replace(' ', ",")
        )
    } else {
        format!("{source} ! {encoder} {SW_PROPS} ! {parser} name=out ! fakesink")
    };
    let r = run(&description);
    assert_eq!(r.out.len(), frames as usize, "{description}");
    vec![
        f64::from(frames) / r.elapsed.as_secs_f64(),
        r.cpu.as_secs_f64() * 1e3 / f64::from(frames),
    ]
}

/// The double (x265enc inside) fails at frame `FAIL_AFTER`; the guard's
/// failover chain is x265enc (with its low-latency defaults) ! h265parse
/// config-interval=-1 ! capsfilter pinning the stream format the double
/// negotiated: the bare one is the same. Counted from output `COUNT_FROM` on.
fn after_failover(vpu: &Vpu, guarded: bool) -> Vec<f64> {
    let source = source_720p(FAILOVER_FRAMES);
    let r = if guarded {
        let r = run(&format!(
            "{source} ! {} ! fakesink",
            encoder_guard(vpu, &format!(",fail-after-buffers={FAIL_AFTER}"))
        ));
        assert_failed_over(&r, FAILOVER_FRAMES);
        assert_eq!(vpu.sessions(), 0, "the double's session was left open");
        r
    } else {
        run(&format!(
            "{source} ! x265enc {SW_PROPS} ! h265parse config-interval=-1 ! capsfilter name=out \
             caps=video/x-h265,stream-format=byte-stream,alignment=au ! fakesink"
        ))
    };
    steady_rate(&r)
}

/// Frames per second and CPU ms per frame from output `COUNT_FROM` on.
fn steady_rate(r: &Run) -> Vec<f64> {
    let (first, last) = (&r.out[COUNT_FROM], r.out.last().unwrap());
    let frames = (r.out.len() - 1 - COUNT_FROM) as f64;
    vec![
        frames / (last.at - first.at).as_secs_f64(),
        (last.cpu - first.cpu).as_secs_f64() * 1e3 / frames,
    ]
}

/// The double's property making it fail at `LIVE_FAIL_AFTER`, if `fail`.
fn live_failure(fail: bool) -> String {
    if fail {
        format!(",fail-after-buffers={LIVE_FAIL_AFTER}")
    } else {
        String::new()
    }
}

/// The live stream through the guard on the double holding `IN_FLIGHT`
/// frames, failing at frame `LIVE_FAIL_AFTER` if `fail`. Returns, in ms: the
/// largest gap between frames out (around the switch when it fails); then,
/// when it fails, from the failing frame entering the double's failing stage
/// to the decision and to the last frame in flight out, and how many frames
/// were sent again.
fn live(vpu: &Vpu, fail: bool) -> Vec<f64> {
    let failing = live_failure(fail);
    let r = run(&format!(
        "videotestsrc is-live=true num-buffers={LIVE_FRAMES} ! \
         video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! {} ! fakesink sync=false",
        encoder_guard(vpu, &format!(",frames-in-flight={IN_FLIGHT}{failing}"))
    ));
    assert_eq!(vpu.sessions(), 0, "the double's session was left open");
    let gaps: Vec<f64> = r
        .out
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64() * 1e3)
        .collect();
    let largest = |gaps: &[f64]| gaps.iter().copied().fold(0.0, f64::max);
    if !fail {
        assert_eq!(r.reasons, ["budget"]);
        assert_eq!(r.out.len(), LIVE_FRAMES as usize);
        return vec![largest(&gaps)];
    }
    let switch = assert_failed_over(&r, LIVE_FRAMES);
    let first = r
        .out
        .iter()
        .position(|o| o.running_time == switch.running_time)
        .expect("the first frame sent again left the guard");
    let last = first + switch.replayed as usize - 1;
    // gaps[i] ends at output i + 1: from 5 frames before the first frame sent
    // again to 5 after the last.
    let around = &gaps[first.saturating_sub(6)..(last + 5).min(gaps.len())];
    let failed_at = r.failed_at.expect("the double's failing stage took frames");
    vec![
        largest(around),
        (switch.at - failed_at).as_secs_f64() * 1e3,
        (r.out[last].at - failed_at).as_secs_f64() * 1e3,
        switch.replayed as f64,
    ]
}

/// The decoding runs' file: 1280x720 H.264 (GOP 30) in Matroska, made once
/// by the parent before any run.
fn h264_720p() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("edgeguard-bench-720p-{DECODE_FRAMES}.mkv"))
}

fn make_h264_720p() {
    let path = h264_720p();
    if path.exists() {
        return;
    }
    common::init();
    let log = common::run_to_eos(
        &format!(
            "{} ! x264enc key-int-max=30 speed-preset=ultrafast ! h264parse ! matroskamux ! \
             filesink location={}",
            source_720p(DECODE_FRAMES),
            path.display()
        ),
        TIMEOUT,
    );
    assert!(log.eos && log.errors.is_empty(), "{:?}", log.errors);
}

/// Decodes the file through vpuguarddec on its software decoder, or through
/// the bare avdec_h264 it builds.
fn decode(guarded: bool) -> Vec<f64> {
    let decoder = if guarded {
        "vpuguarddec name=out mode=software"
    } else {
        "avdec_h264 name=out"
    };
    let r = run(&format!(
        "filesrc location={} ! matroskademux ! h264parse ! {decoder} ! fakesink",
        h264_720p().display()
    ));
    assert_eq!(r.out.len(), DECODE_FRAMES as usize, "{decoder}");
    // From output COUNT_FROM on: the guard creates its decoder (and so loads
    // the libav plugin, about 40 ms) in the CAPS event, the bare pipeline
    // before PLAYING; what is compared is the decoding itself.
    steady_rate(&r)
}

/// The live H.264 stream through vpuguarddec on the decoder double holding
/// `IN_FLIGHT` access units, failing at unit `LIVE_FAIL_AFTER` if `fail`:
/// the largest gap between frames out, in ms. A failing run is checked: every
/// frame out once, in order, and the double's session closed.
fn decoder_live(vpu: &Vpu, fail: bool) -> Vec<f64> {
    let failing = live_failure(fail);
    let r = run(&format!(
        "videotestsrc is-live=true num-buffers={LIVE_FRAMES} ! \
         video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
         x264enc speed-preset=ultrafast tune=zerolatency key-int-max=30 ! h264parse ! {} ! \
         fakesink sync=false",
        decoder_guard(vpu, &format!(",frames-in-flight={IN_FLIGHT}{failing}"))
    ));
    assert_eq!(vpu.sessions(), 0, "the double's session was left open");
    let reasons: Vec<String> = r
        .log
        .named("vpuguarddec-decision")
        .iter()
        .map(|d| d.get::<String>("reason").unwrap())
        .collect();
    let expected: &[&str] = if fail {
        &["budget", "hw-failed-mid-stream"]
    } else {
        &["budget"]
    };
    assert_eq!(reasons, expected);
    assert_every_frame_once(&r, LIVE_FRAMES);
    let largest = r
        .out
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64() * 1e3)
        .fold(0.0, f64::max);
    vec![largest]
}

fn child(variant: &str) {
    common::init();
    let vpu = Vpu::new("bench-vpuguardenc", "");
    let values = match variant {
        "x264-bare" => software("x264enc", false),
        "x264-guard" => software("x264enc", true),
        "x265-bare" => software("x265enc", false),
        "x265-guard" => software("x265enc", true),
        "failover-bare" => after_failover(&vpu, false),
        "failover-guard" => after_failover(&vpu, true),
        "live" => live(&vpu, false),
        "live-failover" => live(&vpu, true),
        "avdec-bare" => decode(false),
        "avdec-guard" => decode(true),
        "dec-live" => decoder_live(&vpu, false),
        "dec-live-failover" => decoder_live(&vpu, true),
        other => panic!("unknown variant {other}"),
    };
    vpu.remove();
    bench::report(&values);
}

/// `ROUNDS` runs of each of two variants, taking turns, every other round
/// the second first (on a busy machine, whichever runs first in a round may
/// fare differently); after one warm-up run, if `warm_up`, that leaves the
/// files they need in the page cache.
fn rounds(variants: [&str; 2], warm_up: bool) -> Vec<[Vec<f64>; 2]> {
    if warm_up {
        bench::measure(variants[0]);
    }
    (0..ROUNDS)
        .map(|round| {
            if round % 2 == 0 {
                variants.map(bench::measure)
            } else {
                let second = bench::measure(variants[1]);
                [bench::measure(variants[0]), second]
            }
        })
        .collect()
}

/// A throughput comparison: median frames per second of each side, and the
/// medians of each round's guard/bare ratios of frames per second and of
/// frames per CPU second (the runs of a round saw much the same machine; CPU
/// time is less sensitive than wall time to the machine's other work).
struct Compared {
    what: String,
    bare: f64,
    guard: f64,
    ratio: f64,
    cpu_ratio: f64,
}

fn compare(what: String, bare: &str, guard: &str) -> Compared {
    let runs = rounds([bare, guard], true);
    let m = |f: &dyn Fn(&[Vec<f64>; 2]) -> f64| bench::median(runs.iter().map(f).collect());
    Compared {
        bare: m(&|[b, _]| b[0]),
        guard: m(&|[_, g]| g[0]),
        ratio: m(&|[b, g]| g[0] / b[0]),
        cpu_ratio: m(&|[b, g]| b[1] / g[1]),
        what,
    }
}

fn decision_latency(dir: &Path) -> Vec<Duration> {
    let listing = dir.join("sessions-summary");
    std::fs::write(
        &listing,
        include_str!("../tests/data/sessions-summary.sample").repeat(2),
    )
    .unwrap();
    let settings = BudgetSettings {
        session_file: listing.display().to_string(),
        lock_dir: dir.join("lock").display().to_string(),
        ..Default::default()
    };
    let mut latencies = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let start = Instant::now();
        // What a guard does for a decision: lock, slots, listing (or its
        // snapshot), count.
        let count =
            budget::count(&settings, "mpph265enc", Patience::LockTimeout, || false).unwrap();
        std::hint::black_box(&count.view);
        drop(count);
        latencies.push(start.elapsed());
    }
    latencies.sort();
    latencies
}

/// The largest gaps between frames out, with and without a failover.
fn print_gaps(failover_gap: f64, baseline_gap: f64) {
    println!(
        "  largest gap between frames out of the guard, around the switch: {failover_gap:6.1} ms \
         = stall of {:.1} ms over the {FRAME_INTERVAL_MS:.1} ms frame interval",
        failover_gap - FRAME_INTERVAL_MS
    );
    println!(
        "  largest gap between frames out of the guard, without failure  : {baseline_gap:6.1} ms \
         = {:.1} ms over the interval",
        baseline_gap - FRAME_INTERVAL_MS
    );
}

fn main() {
    if let Some(variant) = bench::variant() {
        child(&variant);
        return;
    }

    make_h264_720p();
    let rows = [
        compare(
            format!("x264enc ! h264parse, {X264_FRAMES} frames"),
            "x264-bare",
            "x264-guard",
        ),
        compare(
            format!("x265enc ! h265parse, {X265_FRAMES} frames"),
            "x265-bare",
            "x265-guard",
        ),
        compare(
            format!(
                "x265enc after failover, outputs {COUNT_FROM}..{FAILOVER_FRAMES} \
                 (failed at {FAIL_AFTER})"
            ),
            "failover-bare",
            "failover-guard",
        ),
    ];
    println!(
        "vpuguardenc (a) throughput vs the bare chain with the same properties, 1280x720 I420, \
         {ROUNDS} processes each in turns, medians (ratios: of each round's):"
    );
    for c in &rows {
        println!(
            "  {:<58}: bare {:6.1} fps, guard {:6.1} fps, guard/bare {:.3} (target >= 0.98); \
             frames per CPU second guard/bare {:.3}",
            c.what, c.bare, c.guard, c.ratio, c.cpu_ratio
        );
    }

    let runs = rounds(["live", "live-failover"], false);
    let m = |f: &dyn Fn(&[Vec<f64>; 2]) -> f64| bench::median(runs.iter().map(f).collect());
    let (baseline_gap, failover_gap) = (m(&|[b, _]| b[0]), m(&|[_, f]| f[0]));
    let (to_decision, replay) = (m(&|[_, f]| f[1]), m(&|[_, f]| f[2]));
    let mut replayed: Vec<u64> = runs.iter().map(|[_, f]| f[3] as u64).collect();
    replayed.sort();
    replayed.dedup();
    let stall = failover_gap - FRAME_INTERVAL_MS;
    println!(
        "vpuguardenc (b) failover on a live 320x240@30 stream of {LIVE_FRAMES} frames into \
         fakesink sync=false: {FAKE_H265} failing on its output thread at its frame \
         {LIVE_FAIL_AFTER} with {IN_FLIGHT} more in flight, vs the same without failure; \
         {ROUNDS} processes each in turns, medians:"
    );
    print_gaps(failover_gap, baseline_gap);
    println!(
        "  failing frame into the double's failing stage -> decision posted: {to_decision:6.1} ms \
         (a switch made at once is announced after its replay)"
    );
    println!(
        "  failing frame -> last of the frames in flight ({replayed:?} sent again) out: \
         {replay:6.1} ms"
    );

    let dir = std::env::temp_dir().join(format!("edgeguard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let latencies = decision_latency(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!("vpuguardenc (c) decision latency (lock + slots + read + parse + load), 1000 runs:");
    println!(
        "  median {:?}  p99 {:?}  max {:?}   (target median < 1 ms)",
        p(0.5),
        p(0.99),
        p(1.0)
    );

    let decoding = compare(
        format!("avdec_h264, 1280x720 H.264, {DECODE_FRAMES} frames"),
        "avdec-bare",
        "avdec-guard",
    );
    println!(
        "vpuguarddec (d) throughput vs bare avdec_h264 (the guard on its software decoder), \
         {ROUNDS} processes each in turns, medians (ratios: of each round's):"
    );
    println!(
        "  {:<58}: bare {:6.1} fps, guard {:6.1} fps, guard/bare {:.3} (target >= 0.98); \
         frames per CPU second guard/bare {:.3}",
        decoding.what, decoding.bare, decoding.guard, decoding.ratio, decoding.cpu_ratio
    );
    let dec_runs = rounds(["dec-live", "dec-live-failover"], false);
    let dm = |i: usize| bench::median(dec_runs.iter().map(|r| r[i][0]).collect());
    let (dec_baseline, dec_failover) = (dm(0), dm(1));
    let dec_stall = dec_failover - FRAME_INTERVAL_MS;
    println!(
        "vpuguarddec (e) failover on a live 320x240@30 H.264 stream of {LIVE_FRAMES} frames into \
         fakesink sync=false: {FAKE_DEC} failing on its output thread at its unit \
         {LIVE_FAIL_AFTER} with {IN_FLIGHT} more queued, vs the same without failure; \
         {ROUNDS} processes each in turns, medians:"
    );
    print_gaps(dec_failover, dec_baseline);

    let names = [
        "throughput guard/bare x264enc ! h264parse",
        "throughput guard/bare x265enc ! h265parse",
        "throughput guard/bare x265enc after failover",
    ];
    for (name, c) in names.iter().zip(&rows) {
        println!("RATIO|vpuguardenc|{name}|{:.3}|>= 0.98", c.ratio);
    }
    println!("RATIO|vpuguardenc|failover stall on a live stream (ms)|{stall:.1}|ms, printed");
    println!(
        "RATIO|vpuguardenc|largest gap over 33.3 ms without failure (ms)|{:.1}|ms, printed",
        baseline_gap - FRAME_INTERVAL_MS
    );
    println!("RATIO|vpuguardenc|failure to frames in flight out (ms)|{replay:.1}|ms, printed");
    println!(
        "RATIO|vpuguardenc|decision latency median (us)|{:.1}|< 1000",
        p(0.5).as_secs_f64() * 1e6
    );
    println!(
        "RATIO|vpuguardenc|decision latency p99 (us)|{:.1}|-",
        p(0.99).as_secs_f64() * 1e6
    );
    println!(
        "RATIO|vpuguarddec|throughput guard/bare avdec_h264|{:.3}|>= 0.98",
        decoding.ratio
    );
    println!("RATIO|vpuguarddec|failover stall on a live stream (ms)|{dec_stall:.1}|ms, printed");
    println!(
        "RATIO|vpuguarddec|largest gap over 33.3 ms without failure (ms)|{:.1}|ms, printed",
        dec_baseline - FRAME_INTERVAL_MS
    );
}
