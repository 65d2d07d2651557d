// SPDX-License-Identifier: MPL-2.0
//! Failover and reclaim under churn: 4 processes x 4 threads, each thread
//! recording live pipelines one after another into matroska files, through
//! vpuguardenc with a budget of 4 VPU sessions, a hardware double that fails
//! mid-stream on its own thread with frames in flight, and reclaim on. The
//! budget must never be exceeded (the double refuses a fifth session, which
//! would show as a hardware start failing), no pipeline may post an ERROR or
//! hang, and every file must decode with every frame its source sent.
//! `make test` runs 8 s, `make soak` 60 s (EDGEGUARD_CHURN_SECONDS).

mod common;

use common::fake_mpp::FACTORY_NAME as FAKE_HW;
use common::vpu::Vpu;
use gst::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHURN_SECONDS: &str = "EDGEGUARD_CHURN_SECONDS";
/// Set in the child processes: the shared VPU directory.
const CHILD_DIR: &str = "EDGEGUARD_FAILOVER_CHURN_DIR";
/// Set in the child processes: which of them this is (seeds its rounds).
const CHILD_INDEX: &str = "EDGEGUARD_FAILOVER_CHURN_PROCESS";

const PROCESSES: usize = 4;
const THREADS: usize = 4;
/// `max-sessions`, and the double's `hard-limit`: one session more fails.
const BUDGET: u32 = 4;
/// A stream on software reads the listing at most every 200 ms; after a
/// hardware failure it waits 4x that (800 ms), then 8x, ...
const RECLAIM_INTERVAL_NS: u64 = 200_000_000;
/// One pipeline records at most 120 frames (4 s live): past this it hangs.
const PIPELINE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the children may run past the churn's duration (the last round,
/// process start, a loaded machine) before the parent calls it a hang.
const CHILD_GRACE: Duration = Duration::from_secs(180);

/// The guards of the processes, sharing one VPU.
impl Vpu {
    /// The guard for one round: `fail_after` 0 is a double that never fails.
    fn guard(&self, fail_after: u32) -> String {
        format!(
            "vpuguardenc name=guard hw-encoder={FAKE_HW} sw-encoder=x265enc \
             max-sessions={BUDGET} reclaim-interval={RECLAIM_INTERVAL_NS} \
             session-file={sf} lock-dir={ld} \
             hw-properties=\"props,session-file={sf},hard-limit={BUDGET},output-thread=true,\
             frames-in-flight=3,fail-after-buffers={fail_after}\"",
            sf = self.session_file.display(),
            ld = self.lock_dir().display(),
        )
    }
}

/// The parent's directory; kept when the test fails, for the files and logs.
struct OwnedVpu(Vpu);

impl Drop for OwnedVpu {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0.dir);
        }
    }
}

/// SplitMix64: the rounds vary, the same way on every run.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What one round records.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// Frames the source sends (1.5 to 4 s at 30 fps).
    frames: u32,
    /// After how many frames each hardware child fails (0 = never): between
    /// 10 and frames - 5. A stream taken back by reclaim gets a new child
    /// that fails again after as many frames.
    fail_after: u32,
}

impl Round {
    fn plan(process: usize, thread: usize, round: u64) -> Self {
        let h = mix(((process as u64) << 40) ^ ((thread as u64) << 32) ^ round);
        let frames = 45 + (h % 76) as u32;
        // One round in four never fails, so reclaim has a working VPU to
        // come back to.
        let fail_after = if (h >> 16).is_multiple_of(4) {
            0
        } else {
            10 + ((h >> 32) % u64::from(frames - 14)) as u32
        };
        Round { frames, fail_after }
    }
}

/// What a child counts over all its rounds.
#[derive(Debug, Default)]
struct Counts(BTreeMap<&'static str, u64>);

impl Counts {
    fn add(&mut self, key: &'static str, n: u64) {
        *self.0.entry(key).or_default() += n;
    }

    fn line(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

const KEYS: [&str; 11] = [
    "pipelines",
    "hw",
    "sw",
    "failovers",
    "reclaims",
    "replayed",
    "lost",
    "hw_start_failed",
    "reclaim_refused",
    "errors",
    "other_warnings",
];

/// Runs one round to EOS and back to NULL; prints a CHURN_PROBLEM line for
/// anything wrong.
fn run_round(vpu: &Vpu, round: Round, file: &Path, counts: &mut Counts) {
    let description = format!(
        "videotestsrc is-live=true num-buffers={} ! \
         video/x-raw,format=I420,width=160,height=120,framerate=30/1 ! {} ! \
         matroskamux ! filesink location={}",
        round.frames,
        vpu.guard(round.fail_after),
        file.display()
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    // A failed state change shows up as an ERROR message on the bus.
    let _ = pipeline.set_state(gst::State::Playing);
    let log = common::collect_bus(&pipeline, PIPELINE_TIMEOUT, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();

    let problem = |what: String| {
        println!(
            "CHURN_PROBLEM {} ({round:?}): {}",
            file.display(),
            what.replace('\n', " ")
        );
    };
    counts.add("pipelines", 1);
    let decisions = log.named("vpuguardenc-decision");
    match decisions.first() {
        Some(first) if first.get::<bool>("hardware").unwrap() => counts.add("hw", 1),
        Some(_) => counts.add("sw", 1),
        None => problem("no decision".to_string()),
    }
    for d in &decisions {
        match d.get::<String>("reason").unwrap().as_str() {
            "hw-failed-mid-stream" => counts.add("failovers", 1),
            "reclaimed" => counts.add("reclaims", 1),
            "hw-start-failed" => {
                counts.add("hw_start_failed", 1);
                problem(format!("hardware start failed: {d}"));
            }
            _ => (),
        }
        counts.add("replayed", d.get::<u64>("frames-replayed").unwrap());
        let lost = d.get::<u64>("frames-lost").unwrap();
        if lost > 0 {
            counts.add("lost", lost);
            problem(format!("frames lost: {d}"));
        }
    }
    if !log.eos || !log.errors.is_empty() {
        counts.add("errors", 1);
        let why = if log.errors.is_empty() {
            format!("no EOS within {PIPELINE_TIMEOUT:?}")
        } else {
            format!("{:?}", log.errors)
        };
        problem(format!("{why}; decisions {decisions:?}"));
    }
    for warning in &log.warnings {
        if warning.contains("could not be taken back") {
            counts.add("reclaim_refused", 1);
            problem(format!("reclaim refused: {warning}"));
        } else if !warning.contains("failed mid-stream") {
            counts.add("other_warnings", 1);
            println!(
                "CHURN_WARNING {}: {}",
                file.display(),
                warning.replace('\n', " ")
            );
        }
    }
}

/// Child side: THREADS threads record round after round until `seconds`
/// have passed, then print a CHURN_FILE line per file and the counts.
fn churn(vpu: &Vpu, process: usize, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let vpu = Vpu::at(vpu.dir.clone());
            std::thread::spawn(move || {
                let mut counts = Counts::default();
                let mut files = Vec::new();
                let mut round = 0u64;
                while Instant::now() < deadline {
                    let plan = Round::plan(process, thread, round);
                    let file = vpu.dir.join(format!("p{process}-t{thread}-r{round}.mkv"));
                    run_round(&vpu, plan, &file, &mut counts);
                    files.push((file, plan.frames));
                    round += 1;
                }
                (counts, files)
            })
        })
        .collect();
    let mut counts = Counts::default();
    for key in KEYS {
        counts.add(key, 0);
    }
    for t in threads {
        let (c, files) = t.join().unwrap();
        for (k, v) in c.0 {
            counts.add(k, v);
        }
        for (file, frames) in files {
            println!("CHURN_FILE {frames} {}", file.display());
        }
    }
    println!("CHURN_SUMMARY {}", counts.line());
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
    let seconds = std::env::var(CHURN_SECONDS).unwrap().parse().unwrap();
    churn(&Vpu::at(PathBuf::from(dir)), process, seconds);
}

/// What one child printed.
struct ChildReport {
    counts: BTreeMap<String, u64>,
    files: Vec<(PathBuf, u64)>,
    problems: Vec<String>,
}

fn parse_child(text: &str) -> ChildReport {
    let mut report = ChildReport {
        counts: BTreeMap::new(),
        files: Vec::new(),
        problems: Vec::new(),
    };
    let mut summary = false;
    for line in text.lines() {
        // The test harness prints its own text on the first line first.
        if let Some((_, rest)) = line.split_once("CHURN_SUMMARY ") {
            summary = true;
            for kv in rest.split_whitespace() {
                let (k, v) = kv.split_once('=').unwrap();
                report.counts.insert(k.to_string(), v.parse().unwrap());
            }
        } else if let Some((_, rest)) = line.split_once("CHURN_FILE ") {
            let (frames, path) = rest.split_once(' ').unwrap();
            report
                .files
                .push((PathBuf::from(path), frames.parse().unwrap()));
        } else if let Some((_, rest)) = line.split_once("CHURN_PROBLEM ") {
            report.problems.push(rest.to_string());
        } else if line.contains("CHURN_WARNING ") {
            println!("{line}");
        }
    }
    assert!(summary, "no CHURN_SUMMARY line: {text}");
    report
}

/// Waits for every child, killing them all past `deadline` (a hang).
fn wait_all(children: &mut [std::process::Child], deadline: Instant) {
    loop {
        let running = children
            .iter_mut()
            .map(|c| c.try_wait().unwrap().is_none())
            .filter(|running| *running)
            .count();
        if running == 0 {
            return;
        }
        if Instant::now() >= deadline {
            for child in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            panic!("{running} child processes still running past the deadline: a hang");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The files that do not decode as one H.265 stream of their frame count,
/// probed a few at a time.
fn check_files(files: &[(PathBuf, u64)]) -> Vec<String> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let chunk = files.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let checks: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|(file, frames)| {
                            let probed = common::probe_video(file);
                            (probed != ("hevc".to_string(), *frames)).then(|| {
                                format!("{}: {probed:?}, expected {frames} frames", file.display())
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        checks.into_iter().flat_map(|c| c.join().unwrap()).collect()
    })
}

#[test]
fn failover_and_reclaim_churn_in_four_processes_keeps_the_budget_and_every_frame() {
    common::init();
    let seconds: u64 = std::env::var(CHURN_SECONDS)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let vpu = OwnedVpu(Vpu::new("failover-churn", ""));
    let vpu = &vpu.0;
    let started = Instant::now();
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            let out = std::fs::File::create(vpu.dir.join(format!("child-{i}.out"))).unwrap();
            let cwd = vpu.dir.join(format!("child-{i}"));
            std::fs::create_dir_all(&cwd).unwrap();
            let mut command = Command::new(std::env::current_exe().unwrap());
            allow_core_dump(&mut command);
            command
                .current_dir(&cwd)
                .args([
                    "--exact",
                    "child_process_entry",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR, &vpu.dir)
                .env(CHILD_INDEX, i.to_string())
                .env(CHURN_SECONDS, seconds.to_string())
                .stdout(Stdio::from(out))
                .spawn()
                .unwrap()
        })
        .collect();
    wait_all(
        &mut children,
        Instant::now() + Duration::from_secs(seconds) + CHILD_GRACE,
    );
    let churned = started.elapsed();

    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for (i, child) in children.iter_mut().enumerate() {
        let status = child.wait().unwrap();
        let text = std::fs::read_to_string(vpu.dir.join(format!("child-{i}.out"))).unwrap();
        if !status.success() {
            let backtrace = core_backtrace(&vpu.dir.join(format!("child-{i}")));
            panic!("child {i} failed ({status}): {text}\n{backtrace}");
        }
        let report = parse_child(&text);
        for (k, v) in report.counts {
            *totals.entry(k).or_default() += v;
        }
        files.extend(report.files);
        problems.extend(report.problems);
    }

    // Every file, after the churn: one H.265 stream of every frame.
    let wrong_files = check_files(&files);
    let total = |k: &str| totals.get(k).copied().unwrap_or(0);
    println!(
        "failover churn: {seconds} s ({:.1} s wall with the checks, {:.1} s churning), \
         {PROCESSES}x{THREADS} pipelines at a time: {} pipelines ({} started on hardware, \
         {} on software), {} failovers, {} reclaims, {} frames replayed, {} lost, \
         {} hw-start-failed, {} reclaims refused, {} errors, {} other warnings; \
         {} of {} files decode with every frame; peak {} sessions of {BUDGET}",
        started.elapsed().as_secs_f64(),
        churned.as_secs_f64(),
        total("pipelines"),
        total("hw"),
        total("sw"),
        total("failovers"),
        total("reclaims"),
        total("replayed"),
        total("lost"),
        total("hw_start_failed"),
        total("reclaim_refused"),
        total("errors"),
        total("other_warnings"),
        files.len() - wrong_files.len(),
        files.len(),
        vpu.peak(),
    );
    assert!(
        problems.is_empty(),
        "{} problems, the first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(20)]
    );
    assert!(
        wrong_files.is_empty(),
        "{} files without every frame, the first: {:#?}",
        wrong_files.len(),
        &wrong_files[..wrong_files.len().min(20)]
    );
    assert_eq!(files.len() as u64, total("pipelines"));
    assert_eq!(total("errors"), 0);
    assert_eq!(total("lost"), 0);
    // The double refuses a session past the budget: the guard would then
    // report the hardware start as failed, or the reclaim as refused.
    assert_eq!(total("hw_start_failed"), 0, "the budget was exceeded");
    assert_eq!(total("reclaim_refused"), 0, "the budget was exceeded");
    let peak = vpu.peak();
    assert!((1..=BUDGET as usize).contains(&peak), "peak {peak}");
    // What the churn is for: hardware failing mid-stream and taken back.
    assert!(total("failovers") >= 1, "{totals:?}");
    assert!(total("reclaims") >= 1, "{totals:?}");
    // Everything let go at the end.
    assert_eq!(vpu.sessions(), 0);
    assert_eq!(vpu.slot_files(), Vec::<String>::new());
}

/// A crashed child leaves a core dump in its own directory (where the kernel's
/// core_pattern is a plain file name), for `core_backtrace`.
fn allow_core_dump(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs before exec.
    unsafe {
        command.pre_exec(|| {
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &unlimited);
            Ok(())
        });
    }
}

/// Every thread's backtrace from a core dump in `dir`, by gdb when installed:
/// a crash in a child is rare, and this is all CI keeps of it.
fn core_backtrace(dir: &Path) -> String {
    let core = std::fs::read_dir(dir).ok().and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("core"))
        })
    });
    let Some(core) = core else {
        return format!(
            "no core dump in {} (core_pattern may point elsewhere)",
            dir.display()
        );
    };
    match Command::new("gdb")
        .args(["-batch", "-ex", "thread apply all bt 25"])
        .arg(std::env::current_exe().unwrap())
        .arg(&core)
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => format!("core dump {} kept; gdb: {e}", core.display()),
    }
}
