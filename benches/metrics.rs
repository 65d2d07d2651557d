// SPDX-License-Identifier: MPL-2.0
//! The `edgeguard-metrics` tracer side by side with no tracer, in one run:
//! (a) throughput of 8x8 buffers through all three kinds of elements
//!     (vpuguardenc ! vpuguarddec ! delaybuffer ! leakcheck), with the tracer
//!     serving HTTP, scraped every 100 ms, and writing its textfile every
//!     second, vs without it;
//! (b) the time of one scrape of 16 such pipelines.
//!
//! Every variant runs in its own child process (this binary again, the
//! tracer created there as GST_TRACERS would), the two variants of (a)
//! taking turns. Run with `make bench` or `cargo bench --bench metrics`.

mod common;

use common::{launch, measure};
use gst::glib;
use gst::prelude::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const FRAMES: u32 = 4_000;
const PIPELINES: usize = 16;
const SCRAPES: usize = 100;

fn pipeline(i: usize, frames: u32) -> gst::Pipeline {
    launch(&format!(
        "videotestsrc num-buffers={frames} ! video/x-raw,format=I420,width=8,height=8 ! \
         vpuguardenc name=enc{i} ! vpuguarddec name=dec{i} ! delaybuffer name=delay{i} ! \
         leakcheck name=leaks{i} ! fakesink sync=false"
    ))
}

fn run_to_eos(p: &gst::Pipeline) {
    p.set_state(gst::State::Playing).unwrap();
    p.bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(300), &[gst::MessageType::Eos])
        .expect("EOS");
}

/// Buffers per second through the elements: per second of wall-clock time,
/// and per second of this process's CPU time (every thread's, the
/// exporter's included), which another load on the machine disturbs less.
fn throughput() -> [f64; 2] {
    let p = pipeline(0, FRAMES);
    let (start, cpu) = (Instant::now(), common::cpu_time());
    run_to_eos(&p);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = (common::cpu_time() - cpu).as_secs_f64();
    p.set_state(gst::State::Null).unwrap();
    [f64::from(FRAMES) / elapsed, f64::from(FRAMES) / cpu]
}

/// Creates the tracer as GST_TRACERS would; returns its HTTP address.
fn start_tracer(textfile: bool) -> String {
    let address = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut params = format!("address={address}");
    if textfile {
        let path =
            std::env::temp_dir().join(format!("edgeguard-bench-{}.prom", std::process::id()));
        params.push_str(&format!(",textfile={},interval=1", path.display()));
    }
    let factory = gst::TracerFactory::factories()
        .into_iter()
        .find(|f| f.name() == "edgeguard-metrics")
        .expect("the plugin registers edgeguard-metrics");
    // GStreamer keeps no reference either: the exporter lives on its own.
    let _tracer = glib::Object::builder_with_type(factory.tracer_type())
        .property("params", params)
        .build();
    address
}

fn scrape(address: &str) -> usize {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = Vec::new();
    stream.read_to_end(&mut body).unwrap();
    body.len()
}

/// A scraper as an impatient Prometheus would be, until the process ends.
fn scrape_every_100ms(address: String) {
    std::thread::spawn(move || {
        loop {
            std::hint::black_box(scrape(&address));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// Milliseconds per scrape of `PIPELINES` pipelines (median of `SCRAPES`).
fn scrape_time() -> f64 {
    let address = start_tracer(false);
    let pipelines: Vec<gst::Pipeline> = (0..PIPELINES).map(|i| pipeline(i, 2)).collect();
    pipelines.iter().for_each(run_to_eos);
    let times: Vec<f64> = (0..SCRAPES)
        .map(|_| {
            let start = Instant::now();
            assert!(scrape(&address) > 0);
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    for p in &pipelines {
        p.set_state(gst::State::Null).unwrap();
    }
    common::median(times)
}

fn child(variant: &str) {
    gst::init().unwrap();
    gstedgeguard::plugin_register_static().unwrap();
    let values = match variant {
        "without" => throughput(),
        "with" => {
            scrape_every_100ms(start_tracer(true));
            throughput()
        }
        "scrape" => [scrape_time(), 0.0],
        other => panic!("unknown variant {other}"),
    };
    common::report(&values);
}

fn main() {
    if let Some(variant) = common::variant() {
        child(&variant);
        return;
    }
    // Each pair runs back to back and gives its ratios: on a shared machine
    // the speed drifts between pairs more than within one. Which goes first
    // alternates, so that neither side always gets the warmer machine.
    let pairs: Vec<[Vec<f64>; 2]> = (0..6)
        .map(|i| {
            if i % 2 == 0 {
                [measure("without"), measure("with")]
            } else {
                let with = measure("with");
                [measure("without"), with]
            }
        })
        .collect();
    let median_of =
        |f: &dyn Fn(&[Vec<f64>; 2]) -> f64| common::median(pairs.iter().map(f).collect());
    let without = median_of(&|p| p[0][0]);
    let with = median_of(&|p| p[1][0]);
    let wall = median_of(&|p| p[1][0] / p[0][0]);
    let cpu = median_of(&|p| p[1][1] / p[0][1]);
    println!(
        "metrics (a): 8x8 buffers through vpuguardenc, vpuguarddec, delaybuffer, leakcheck, \
         {FRAMES} buffers, 6 pairs of runs:"
    );
    println!("  without the tracer: {without:10.0} buffers/s");
    println!(
        "  with the tracer   : {with:10.0} buffers/s (HTTP scraped every 100 ms, textfile every 1 s)"
    );
    println!(
        "  with / without    : {wall:10.3} per wall-clock second, {cpu:.3} per CPU second (medians of the pairs)"
    );
    println!(
        "RATIO|metrics|throughput with tracer / without, 8x8, per CPU second|{cpu:.3}|>= 0.99"
    );
    println!(
        "RATIO|metrics|throughput with tracer / without, 8x8, per wall second|{wall:.3}|>= 0.99"
    );
    let ms = common::median((0..3).map(|_| measure("scrape")[0]).collect());
    println!(
        "metrics (b): one scrape of {PIPELINES} pipelines (4 elements each): {ms:.2} ms (median)"
    );
    println!("RATIO|metrics|scrape of {PIPELINES} pipelines (ms)|{ms:.2}|printed");
}
