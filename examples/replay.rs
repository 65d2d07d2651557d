// SPDX-License-Identifier: MPL-2.0
//! An instant-replay branch behind a tee: the live branch shows frames as they
//! come, the replay branch records the same frames `--delay` seconds later,
//! without copying them (delaybuffer holds references).
//!
//! Usage: replay [--seconds N] [--delay SECONDS] [--out FILE]

use gst::prelude::*;
use std::time::Duration;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() {
    gst::init().unwrap();
    gstedgeguard::plugin_register_static().unwrap();
    let seconds: u64 = arg("--seconds", "5").parse().expect("--seconds: a number");
    let delay: f64 = arg("--delay", "2").parse().expect("--delay: seconds");
    let out = arg("--out", "replay.mkv");

    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true do-timestamp=true num-buffers={frames} ! \
           video/x-raw,format=I420,width=640,height=360,framerate=30/1 ! timeoverlay ! tee name=t \
         t. ! queue ! fakesink name=live sync=true \
         t. ! delaybuffer name=replay delay={delay_ns} ! queue ! x264enc speed-preset=ultrafast tune=zerolatency ! \
           matroskamux ! filesink location={out}",
        frames = seconds * 30,
        delay_ns = (delay * 1e9) as u64,
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let replay = pipeline.by_name("replay").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut peak = 0u32;
    loop {
        match bus.timed_pop(gst::ClockTime::from_mseconds(200)) {
            Some(msg) => match msg.view() {
                gst::MessageView::Eos(_) => break,
                gst::MessageView::Error(e) => {
                    eprintln!("replay: {}", e.error());
                    std::process::exit(1);
                }
                _ => (),
            },
            None => {
                let held: u32 = replay.property("current-level-buffers");
                peak = peak.max(held);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats: gst::Structure = replay.property("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    println!(
        "replay: {} frames in, {} out, {} dropped; at most {peak} frames held ({delay} s at 30 fps is {} frames)",
        stats.get::<u64>("received").unwrap(),
        stats.get::<u64>("pushed").unwrap(),
        stats.get::<u64>("dropped").unwrap(),
        (delay * 30.0).round()
    );
    println!("replay: written to {out}");
}
