// SPDX-License-Identifier: MPL-2.0
//! The rig the project is built for, in small: 4 cameras in 2 processes,
//! per camera a recording and a preview vpuguardenc behind a live tee with
//! plain `queue`s, and per process a vpuguarddec decoding a live stream,
//! all on one budget of 8 VPU sessions, with hardware doubles that fail to
//! start past 8. The decoders take their slots first, so 6 encoders get the
//! VPU and 2 fall back to x264enc: a camera whose branches are one hardware,
//! one software is the case that stalled. x264enc with its defaults holds
//! about 48 frames before its first output, while the hardware branch's
//! sink waits in preroll and its queue fills at 1 s (30 frames): the tee
//! blocks and the pipeline never reaches EOS. Every pipeline must reach EOS
//! in every run with every frame encoded and decoded. A hang fails by the
//! child's timeout, never by a duration assertion.

mod common;

use common::fake_mpp::H264_FACTORY_NAME as FAKE_H264;
use common::vpu::Vpu;
use gst::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Set in the child processes: the shared VPU directory.
const CHILD_DIR: &str = "EDGEGUARD_LIVE_RIG_DIR";
/// Set in the child processes: which of them this is.
const CHILD_INDEX: &str = "EDGEGUARD_LIVE_RIG_PROCESS";
/// How many times the rig runs; a run that stalls is one too many.
const RUNS_VAR: &str = "EDGEGUARD_LIVE_RIG_RUNS";
const RUNS: usize = 10;

const PROCESSES: usize = 2;
const CAMERAS_PER_PROCESS: usize = 2;
/// `max-sessions`, and the doubles' `hard-limit`: one session more fails.
const BUDGET: u32 = 8;
/// Frames each camera and each decoded stream sends (3 s live).
const FRAMES: u64 = 90;
/// A pipeline of FRAMES live frames that has not reached EOS by then stalled.
const PIPELINE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a child may take past its pipelines' timeouts.
const CHILD_TIMEOUT: Duration = Duration::from_secs(90);
const CAPS: &str = "video/x-raw,format=I420,width=160,height=120,framerate=30/1";

/// The guards of the rig, all on the shared VPU.
impl Vpu {
    fn encoder(&self, name: &str) -> String {
        self.guard_on(
            FAKE_H264,
            &format!(",hard-limit={BUDGET}"),
            &format!("name={name} sw-encoder=x264enc max-sessions={BUDGET}"),
        )
    }

    fn decoder(&self, name: &str) -> String {
        self.decoder_guard(
            &format!(",hard-limit={BUDGET}"),
            &format!("name={name} max-sessions={BUDGET}"),
        )
    }
}

/// A camera: live source, tee, recording and preview encoders behind plain
/// queues.
fn camera(vpu: &Vpu, pattern: usize) -> String {
    format!(
        "videotestsrc is-live=true num-buffers={FRAMES} pattern={pattern} ! {CAPS} ! tee name=t \
         t. ! queue ! {} ! fakesink name=record-sink sync=false \
         t. ! queue ! {} ! fakesink name=preview-sink sync=true",
        vpu.encoder("record"),
        vpu.encoder("preview"),
    )
}

/// The mixer's decode of a live H.264 stream.
fn decode(vpu: &Vpu) -> String {
    format!(
        "videotestsrc is-live=true num-buffers={FRAMES} pattern=ball ! {CAPS} ! \
         x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! {} ! \
         fakesink name=decode-sink sync=true",
        vpu.decoder("decode")
    )
}

/// One pipeline of a child, playing.
struct Playing {
    name: String,
    pipeline: gst::Pipeline,
    /// Buffers each sink got, by sink name.
    counts: Vec<(String, Arc<AtomicU64>)>,
}

impl Playing {
    fn start(name: String, description: &str) -> Self {
        let pipeline = gst::parse::launch(description)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let counts = pipeline
            .iterate_sinks()
            .into_iter()
            .map(Result::unwrap)
            .map(|sink| {
                let count = Arc::new(AtomicU64::new(0));
                let counted = count.clone();
                sink.static_pad("sink").unwrap().add_probe(
                    gst::PadProbeType::BUFFER,
                    move |_, _| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        gst::PadProbeReturn::Ok
                    },
                );
                (sink.name().to_string(), count)
            })
            .collect();
        let _ = pipeline.set_state(gst::State::Playing);
        Playing {
            name,
            pipeline,
            counts,
        }
    }

    /// Pops the bus until `done` or the end of the stream, recalculating the
    /// latency at each LATENCY message as applications do. Returns the
    /// decisions ("guard=encoder/hw|sw/reason") and how it ended.
    fn follow(&self, mut done: impl FnMut(&[String]) -> bool) -> (Vec<String>, String) {
        let bus = self.pipeline.bus().unwrap();
        let deadline = Instant::now() + PIPELINE_TIMEOUT;
        let mut decisions = Vec::new();
        while Instant::now() < deadline {
            if done(&decisions) {
                return (decisions, "running".into());
            }
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(20)) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Latency(_) => {
                    let _ = self.pipeline.recalculate_latency();
                }
                gst::MessageView::Element(e) => {
                    if let Some(s) = e.structure().filter(|s| s.name().ends_with("-decision")) {
                        decisions.push(describe_decision(&msg, s));
                    }
                }
                gst::MessageView::Eos(_) => return (decisions, "eos".into()),
                gst::MessageView::Error(e) => {
                    return (decisions, format!("error: {}", e.error()));
                }
                _ => (),
            }
        }
        (decisions, "stalled".into())
    }

    /// Follows the pipeline to its end and prints its RIG_PIPELINE line.
    fn finish(self, mut decisions: Vec<String>) {
        let (more, end) = self.follow(|_| false);
        decisions.extend(more);
        self.pipeline.set_state(gst::State::Null).unwrap();
        let counts: Vec<_> = self
            .counts
            .iter()
            .map(|(sink, n)| format!("{sink}={}", n.load(Ordering::SeqCst)))
            .collect();
        println!(
            "RIG_PIPELINE {} end={end} {} decisions={}",
            self.name,
            counts.join(" "),
            decisions.join(",")
        );
    }
}

fn describe_decision(msg: &gst::Message, s: &gst::StructureRef) -> String {
    let guard = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
    let child = s
        .get::<String>("encoder")
        .or_else(|_| s.get::<String>("decoder"))
        .unwrap_or_default();
    let kind = if s.get::<bool>("hardware").unwrap_or(false) {
        "hw"
    } else {
        "sw"
    };
    let reason = s.get::<String>("reason").unwrap_or_default();
    format!("{guard}:{child}:{kind}:{reason}")
}

/// Child side: the decode first, until it has decided (the mixer runs before
/// the cameras start), then the cameras, each followed on its own thread.
fn rig(vpu: &Vpu, process: usize) {
    let decode = Playing::start(format!("p{process}-decode"), &decode(vpu));
    let (decided, end) = decode.follow(|decisions| !decisions.is_empty());
    let cameras: Vec<_> = (0..CAMERAS_PER_PROCESS)
        .map(|c| {
            let name = format!("p{process}-cam{c}");
            let description = camera(vpu, process * CAMERAS_PER_PROCESS + c);
            std::thread::spawn(move || Playing::start(name, &description).finish(Vec::new()))
        })
        .collect();
    if end == "running" {
        decode.finish(decided);
    } else {
        println!(
            "RIG_PIPELINE {} end={end} before the cameras started",
            decode.name
        );
    }
    for camera in cameras {
        camera.join().unwrap();
    }
    std::io::stdout().flush().unwrap();
}

/// Not a test on its own: the body of the child processes (this test binary,
/// run again with CHILD_DIR set).
#[test]
fn child_process_entry() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    common::init();
    let process = std::env::var(CHILD_INDEX).unwrap().parse().unwrap();
    rig(&Vpu::at(PathBuf::from(dir)), process);
}

/// One pipeline's line: its name, how it ended, each sink's buffers, its decisions.
#[derive(Debug)]
struct Ended {
    name: String,
    end: String,
    counts: BTreeMap<String, u64>,
    decisions: Vec<String>,
}

fn parse_line(line: &str) -> Option<Ended> {
    let (_, rest) = line.split_once("RIG_PIPELINE ")?;
    let mut words = rest.split_whitespace();
    let name = words.next()?.to_string();
    let mut ended = Ended {
        name,
        end: String::new(),
        counts: BTreeMap::new(),
        decisions: Vec::new(),
    };
    for word in words {
        match word.split_once('=') {
            Some(("end", end)) => ended.end = end.to_string(),
            Some(("decisions", d)) => {
                ended.decisions = d
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            Some((sink, n)) => {
                ended.counts.insert(sink.to_string(), n.parse().ok()?);
            }
            None => ended.end.push_str(&format!(" {word}")),
        }
    }
    Some(ended)
}

/// Runs the rig once: both processes at once, on a fresh VPU. Returns every
/// pipeline's line, or why a child failed.
fn run_rig(run: usize) -> Result<Vec<Ended>, String> {
    let vpu = Vpu::new(&format!("live-rig-{run}"), "");
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            common::child_process()
                .env(CHILD_DIR, &vpu.dir)
                .env(CHILD_INDEX, i.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let finished = common::poll_until(CHILD_TIMEOUT, || {
        children.iter_mut().all(|c| c.try_wait().unwrap().is_some())
    });
    let mut ended = Vec::new();
    let mut failures = Vec::new();
    for (i, mut child) in children.into_iter().enumerate() {
        if !finished {
            let _ = child.kill();
        }
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let hung = if finished {
                ""
            } else {
                ", killed past its timeout"
            };
            failures.push(format!("child {i}: {}{hung}: {text}", output.status));
        }
        ended.extend(text.lines().filter_map(parse_line));
    }
    let peak = vpu.peak();
    vpu.remove();
    if !failures.is_empty() {
        return Err(failures.join("\n"));
    }
    assert!(
        peak <= BUDGET as usize,
        "run {run}: {peak} sessions at once"
    );
    Ok(ended)
}

/// What is wrong with a run: a pipeline that did not reach EOS, a sink that
/// did not get every frame, a hardware child that failed to start.
fn problems(ended: &[Ended]) -> Vec<String> {
    let expected = PROCESSES * (CAMERAS_PER_PROCESS + 1);
    let mut problems = Vec::new();
    if ended.len() != expected {
        problems.push(format!(
            "{} pipelines reported, {expected} expected",
            ended.len()
        ));
    }
    for e in ended {
        if e.end != "eos" {
            problems.push(format!("{} ended {}: {e:?}", e.name, e.end));
        }
        for (sink, n) in &e.counts {
            if *n != FRAMES {
                problems.push(format!("{}: {sink} got {n} of {FRAMES} frames", e.name));
            }
        }
        if e.decisions.iter().any(|d| d.ends_with("hw-start-failed")) {
            problems.push(format!(
                "{}: a hardware child failed: the budget was exceeded",
                e.name
            ));
        }
    }
    problems
}

#[test]
fn four_cameras_in_two_processes_on_a_budget_of_eight_reach_eos_with_every_frame() {
    common::init();
    let runs = std::env::var(RUNS_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS);
    let mut failed_runs = Vec::new();
    let mut mixed_cameras = 0;
    for run in 0..runs {
        let ended = match run_rig(run) {
            Ok(ended) => ended,
            Err(why) => {
                failed_runs.push(format!("run {run}: {why}"));
                continue;
            }
        };
        let decisions: Vec<_> = ended.iter().flat_map(|e| e.decisions.clone()).collect();
        let hardware = decisions.iter().filter(|d| d.contains(":hw:")).count();
        let mixed: Vec<_> = ended
            .iter()
            .filter(|e| {
                let kinds: Vec<_> = e
                    .decisions
                    .iter()
                    .filter(|d| !d.starts_with("decode"))
                    .collect();
                kinds.iter().any(|d| d.contains(":hw:")) && kinds.iter().any(|d| d.contains(":sw:"))
            })
            .map(|e| e.name.as_str())
            .collect();
        mixed_cameras += mixed.len();
        let mut problems = problems(&ended);
        if hardware != BUDGET as usize {
            problems.push(format!("{hardware} guards on hardware, {BUDGET} expected"));
        }
        println!(
            "run {run}: {hardware} of {} guards on hardware, cameras with one hardware and one \
             software branch: {mixed:?}, {} problems",
            decisions.len(),
            problems.len()
        );
        if !problems.is_empty() {
            failed_runs.push(format!("run {run}: {problems:#?}"));
        }
    }
    assert!(
        failed_runs.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failed_runs.len(),
        failed_runs.join("\n")
    );
    // Which guards fall back is a race: about half the runs have a camera
    // with one branch of each kind, the case that stalled.
    assert!(
        mixed_cameras > 0,
        "no camera had one hardware and one software branch in {runs} runs"
    );
}
