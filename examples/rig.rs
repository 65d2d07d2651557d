// SPDX-License-Identifier: MPL-2.0
//! The edgeguard demo rig (`make demo`): a live 1280x720 30 fps camera-like
//! source with a time overlay, into a tee with three branches:
//!
//! - recording: vpuguardenc into a Matroska file;
//! - preview: a second vpuguardenc, at 640x360, into a second file;
//! - display: delaybuffer (3 s) with a clock overlay after it, into a sink;
//!
//! plus a real-time sink to measure the display delay against, and a leakcheck
//! writing its report. After the run it prints which encoder each guard chose
//! and why, the delay it measured, the leak report, and the files it wrote.
//!
//! The source timestamps frames with the clock, as a camera does, so that a
//! slow first frame does not leave the live branch late for the whole run.
//!
//! Usage: rig [--seconds N] [--delay SECONDS] [--out DIR] [--simulate-vpu]
//!
//! --simulate-vpu: x265enc stands in for the VPU encoder and the budget is one
//! session, so the first guard to negotiate gets the "hardware" and the second
//! falls back to software.

mod media;

use gst::prelude::*;
use media::{Arrival, probe_video, record_arrivals};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Options {
    seconds: u64,
    delay: f64,
    out: PathBuf,
    simulate_vpu: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        seconds: 10,
        delay: 3.0,
        out: PathBuf::from("target/demo"),
        simulate_vpu: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--seconds" => {
                o.seconds = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?
            }
            "--delay" => {
                o.delay = value("--delay")?
                    .parse()
                    .map_err(|e| format!("--delay: {e}"))?
            }
            "--out" => o.out = PathBuf::from(value("--out")?),
            "--simulate-vpu" => o.simulate_vpu = true,
            "-h" | "--help" => {
                return Err(
                    "usage: rig [--seconds N] [--delay SECONDS] [--out DIR] [--simulate-vpu]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.seconds == 0 || !(0.0..=60.0).contains(&o.delay) {
        return Err("--seconds must be > 0 and --delay between 0 and 60".into());
    }
    Ok(o)
}

/// Seconds between a frame's arrival at the live sink and at the delayed
/// one, on the pipeline clock, for every frame both rendered.
fn display_delays(live: &[Arrival], delayed: &[Arrival]) -> Vec<f64> {
    let live: HashMap<gst::ClockTime, gst::ClockTime> =
        live.iter().map(|a| (a.pts, a.arrived)).collect();
    delayed
        .iter()
        .filter_map(|d| {
            let at = live.get(&d.pts)?;
            Some(d.arrived.nseconds() as f64 / 1e9 - at.nseconds() as f64 / 1e9)
        })
        .collect()
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rig: {e}");
            std::process::exit(2);
        }
    };
    gst::init().unwrap();
    gstedgeguard::plugin_register_static().unwrap();
    std::fs::create_dir_all(&o.out).unwrap();
    let out = o.out.canonicalize().unwrap();
    let recording = out.join("recording.mkv");
    let preview = out.join("preview.mkv");
    let report_file = out.join("leaks.json");

    let sw = "sw-properties=\"props,speed-preset=ultrafast,tune=zerolatency\"";
    let guard = if o.simulate_vpu {
        let lock_dir = out.join("vpu-lock");
        let _ = std::fs::remove_dir_all(&lock_dir);
        // An empty kernel listing: x265enc opens no VPU session, so the count
        // comes from the guards' own slots in the lock directory.
        let listing = out.join("vpu-sessions-summary");
        std::fs::write(&listing, "").unwrap();
        format!(
            "hw-encoder=x265enc hw-properties=\"props,speed-preset=ultrafast,tune=zerolatency\" \
             max-sessions=1 lock-dir={} session-file={} {sw}",
            lock_dir.display(),
            listing.display()
        )
    } else {
        sw.to_string()
    };
    let delay_ns = (o.delay * 1e9) as u64;
    let description = format!(
        "videotestsrc is-live=true do-timestamp=true pattern=ball ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 ! \
         timeoverlay halignment=left valignment=top ! tee name=t \
         t. ! queue ! vpuguardenc name=recording {guard} bitrate=4000 gop=30 ! matroskamux ! filesink location={rec} \
         t. ! queue ! videoscale ! video/x-raw,width=640,height=360 ! vpuguardenc name=preview {guard} bitrate=1000 ! \
              matroskamux ! filesink location={prev} \
         t. ! queue ! fakesink name=live sync=true \
         t. ! delaybuffer name=display delay={delay_ns} ! clockoverlay halignment=right valignment=top ! fakesink name=delayed sync=true \
         leakcheck name=check grace=0 report-file={report}",
        rec = recording.display(),
        prev = preview.display(),
        report = report_file.display(),
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let live = record_arrivals(&pipeline.by_name("live").unwrap());
    let delayed = record_arrivals(&pipeline.by_name("delayed").unwrap());
    let bus = pipeline.bus().unwrap();

    println!(
        "edgeguard demo: {} s of a live 1280x720 30 fps source, display delayed {:.1} s{}",
        o.seconds,
        o.delay,
        if o.simulate_vpu {
            " (simulated VPU: x265enc as the hardware encoder, budget of 1 session)"
        } else {
            ""
        }
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut decisions: Vec<(String, gst::Structure)> = Vec::new();
    let mut warnings = Vec::new();
    let started = Instant::now();
    // The delayed branch finishes `delay` after the others.
    let deadline = started
        + Duration::from_secs(o.seconds)
        + Duration::from_secs_f64(o.delay)
        + Duration::from_secs(20);
    let mut failed = false;
    let mut eos_sent = false;
    loop {
        // The run ends as an application ends it (gst-launch -e, Ctrl-C): an
        // EOS sent to the pipeline, which flows through every branch, the
        // delayed one finishing `delay` after the others. From its own thread,
        // so that a pipeline that could not take it would show as a missed
        // deadline rather than a hang.
        if !eos_sent && started.elapsed() >= Duration::from_secs(o.seconds) {
            eos_sent = true;
            let pipeline = pipeline.clone();
            std::thread::spawn(move || pipeline.send_event(gst::event::Eos::new()));
        }
        if Instant::now() > deadline {
            eprintln!("rig: no EOS before the deadline");
            failed = true;
            break;
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                eprintln!(
                    "rig: error from {:?}: {} ({:?})",
                    msg.src().map(|s| s.path_string()),
                    e.error(),
                    e.debug()
                );
                failed = true;
                break;
            }
            gst::MessageView::Warning(w) => warnings.push(format!(
                "{}: {}",
                msg.src().map(|s| s.name().to_string()).unwrap_or_default(),
                w.error()
            )),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure()
                    && s.name() == "vpuguardenc-decision"
                {
                    let name = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                    decisions.push((name, s.to_owned()));
                }
            }
            _ => (),
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();

    println!("encoders:");
    decisions.sort_by(|a, b| a.0.cmp(&b.0));
    let mut any_hw = false;
    for (name, d) in &decisions {
        let hardware = d.get::<bool>("hardware").unwrap();
        any_hw |= hardware;
        println!(
            "  {name:<10} {} ({}), reason: {}, VPU sessions seen: {} of {}",
            d.get::<String>("encoder").unwrap(),
            if hardware { "hardware" } else { "software" },
            d.get::<String>("reason").unwrap(),
            d.get::<u32>("sessions").unwrap(),
            d.get::<u32>("max-sessions").unwrap(),
        );
    }
    if !o.simulate_vpu && !any_hw {
        println!(
            "  (no mpph265enc on this machine: both guards chose software; `make demo-vpu` simulates a VPU)"
        );
    }

    let mut delays = display_delays(&live.lock().unwrap(), &delayed.lock().unwrap());
    delays.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if delays.is_empty() {
        println!("display: no frame reached both the live and the delayed sink");
        failed = true;
    } else {
        let on_time = delays
            .iter()
            .filter(|d| (*d - o.delay).abs() <= 0.010)
            .count();
        println!(
            "display: delaybuffer delay={:.3} s; measured between the live and display branches: median {:.3} s, \
             {on_time} of {} frames within 10 ms of the delay (min {:.3} s, max {:.3} s)",
            o.delay,
            delays[delays.len() / 2],
            delays.len(),
            delays[0],
            delays[delays.len() - 1],
        );
    }
    if !warnings.is_empty() {
        println!("warnings:");
        for w in &warnings {
            println!("  {w}");
        }
    }

    // Asking for the report judges the cycle now that the pipeline is in NULL
    // (grace=0); the judgement also writes the report file.
    let report = pipeline
        .by_name("check")
        .expect("the rig has a leakcheck")
        .emit_by_name::<gst::Structure>("get-report", &[]);
    println!(
        "leakcheck: {} finding(s) after {} cycle(s)",
        report.get::<u32>("leaks").unwrap_or_default(),
        report.get::<u32>("cycles").unwrap_or_default()
    );
    let findings = report.get::<gst::Array>("findings").unwrap_or_default();
    for f in findings.iter() {
        if let Ok(f) = f.get::<gst::Structure>() {
            println!(
                "  {}: {}",
                f.name(),
                f.get::<&str>("message").unwrap_or_default()
            );
        }
    }
    println!("files:");
    for (what, path) in [("recording", &recording), ("preview", &preview)] {
        let what_is_in = match probe_video(path) {
            Ok(v) => format!("{} {}x{}, {} frames", v.codec, v.width, v.height, v.frames),
            Err(e) => e,
        };
        println!("  {what:<10} {} ({what_is_in})", path.display());
    }
    println!("  leak report {}", report_file.display());
    if failed {
        std::process::exit(1);
    }
}
