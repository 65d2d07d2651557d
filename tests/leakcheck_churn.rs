// SPDX-License-Identifier: MPL-2.0
//! leakcheck under the churn real applications create: pipelines dropped
//! while a judgement is pending, many threads cycling their own pipelines,
//! an RTSP server building a pipeline per client, and the documentation's
//! gst-launch lines run as written. A hang fails by a timeout.

mod common;

use gst::prelude::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const HANG: Duration = Duration::from_secs(180);

/// The tests of this file count the process's threads and fds: they run one
/// at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn cycles() -> usize {
    std::env::var("EDGEGUARD_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Runs `f` on its own thread; a hang fails the test after `HANG`.
fn without_hanging<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(HANG) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: hung (no result after {HANG:?})"),
    }
}

/// One cycle of `leakcheck name=lc ... tee ...` to EOS and back to NULL; the
/// pipeline is dropped by the caller.
fn run_once(grace_ns: u64, report_file: &Path) -> gst::Pipeline {
    let p = gst::parse::launch(&format!(
        "leakcheck name=lc grace={grace_ns} report-file={} \
         videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! tee name=t \
         t. ! queue ! fakesink t. ! queue ! identity ! fakesink",
        report_file.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&p, Duration::from_secs(30), |_| false);
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    p.set_state(gst::State::Null).unwrap();
    p
}

fn report_json(file: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// The deadlock users hit: the application reads `leaks` and drops its last
/// pipeline reference while the worker's judgement (1 ms grace) is pending
/// or running. Every report that reaches the file is a judged one.
#[test]
fn dropping_the_pipeline_while_a_judgement_is_pending_never_hangs() {
    let _serial = one_at_a_time();
    common::init();
    let dir = common::temp_dir("leakcheck-drop-race");
    let cycles = cycles();
    without_hanging("drop during judgement", move || {
        for cycle in 0..cycles {
            let file = dir.join(format!("cycle{cycle}.json"));
            let p = run_once(1_000_000, &file);
            let check = p.by_name("lc").unwrap();
            assert_eq!(check.property::<u32>("leaks"), 0);
            drop(check);
            // Spread the drop over the grace, so that some land while the
            // worker is judging and holds the last references but one.
            std::thread::sleep(Duration::from_micros(50 * (cycle % 40) as u64));
            drop(p);
            // Judged by the worker or, at the latest, when the pipeline was
            // disposed (in the worker's thread if it held the last reference).
            assert!(
                common::poll_until(Duration::from_secs(30), || file.exists()),
                "cycle {cycle}: no report written"
            );
            let json = report_json(&file);
            assert_eq!(json["cycles"], 1, "cycle {cycle}: {json}");
            assert_eq!(json["leaks"], 0, "cycle {cycle}: {json}");
            let elements = json["elements"].as_array().unwrap();
            assert_eq!(elements.len(), 9, "cycle {cycle}: {json}");
            assert!(elements.iter().all(|e| e["state"] == "null"), "{json}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// Four threads, each cycling pipelines of its own (a new one each cycle, so
/// addresses of dead pipelines are reused): no hang, no finding, and threads
/// and fds flat after a warm-up.
#[test]
fn four_threads_cycling_their_own_pipelines_stay_flat_and_clean() {
    let _serial = one_at_a_time();
    common::init();
    let dir = common::temp_dir("leakcheck-four-threads");
    // Warm-up: the worker thread, GStreamer's task pool and its idle threads.
    four_threads_cycling(&dir, 10);
    let (threads_before, fds_before) = (threads(), fds());
    four_threads_cycling(&dir, cycles());
    // Streaming threads go back to GLib's pool and leave it on their own
    // time; a leak would keep them (or fds) above the warm-up level for good.
    let settled = common::poll_until(Duration::from_secs(60), || {
        threads() <= threads_before && fds() <= fds_before
    });
    assert!(
        settled,
        "threads {threads_before} -> {}, fds {fds_before} -> {}",
        threads(),
        fds()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn four_threads_cycling(dir: &Path, cycles: usize) {
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let file = dir.join(format!("worker{worker}.json"));
            std::thread::spawn(move || {
                for cycle in 0..cycles {
                    let p = run_once(0, &file);
                    let check = p.by_name("lc").unwrap();
                    let report = check.emit_by_name::<gst::Structure>("get-report", &[]);
                    let context = format!("worker {worker} cycle {cycle}: {report}");
                    assert_eq!(report.get::<u32>("cycles").unwrap(), 1, "{context}");
                    assert_eq!(report.get::<u32>("leaks").unwrap(), 0, "{context}");
                }
            })
        })
        .collect();
    without_hanging("four threads", move || {
        for w in workers {
            w.join().unwrap();
        }
    });
}

fn plugin_env(cmd: &mut Command, name: &str) -> PathBuf {
    let registry = std::env::temp_dir().join(format!(
        "edgeguard-registry-{name}-{}.bin",
        std::process::id()
    ));
    cmd.env("GST_PLUGIN_PATH", common::plugin_dir())
        .env("GST_REGISTRY", &registry)
        .env_remove("GST_TRACERS");
    registry
}

/// The gst-launch lines of README.md and docs/leakcheck.md that use the
/// element, exactly as written there.
fn documented_launch_lines() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ["README.md", "docs/leakcheck.md"]
        .iter()
        .flat_map(|doc| {
            std::fs::read_to_string(root.join(doc))
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("gst-launch-1.0") && l.contains("leakcheck"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn documented_gst_launch_lines_write_a_judged_report() {
    let _serial = one_at_a_time();
    let lines = documented_launch_lines();
    assert!(lines.len() >= 3, "{lines:?}");
    for line in lines {
        let file = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("report-file="))
            .unwrap_or_else(|| panic!("no report-file in {line}"));
        let _ = std::fs::remove_file(file);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &line]);
        let registry = plugin_env(&mut cmd, "launch");
        let out = cmd.output().unwrap();
        let _ = std::fs::remove_file(registry);
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json = report_json(Path::new(file));
        assert_eq!(json["cycles"], 1, "{line}: {json}");
        assert_eq!(json["leaks"], 0, "{line}: {json}");
        let elements = json["elements"].as_array().unwrap();
        let names: Vec<&str> = elements
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        for expected in ["videotestsrc0", "fakesink0", "leakcheck0"] {
            assert!(names.contains(&expected), "{line}: {names:?}");
        }
        assert!(
            elements.iter().all(|e| e["state"] == "null"),
            "{line}: {json}"
        );
        assert!(
            elements
                .iter()
                .all(|e| !e["transitions"].as_array().unwrap().is_empty()),
            "{line}: {json}"
        );
    }
}

/// A real gst-rtsp-server with a non-shared media factory whose launch line
/// holds a leakcheck, and 20 rtspsrc clients connecting and disconnecting.
#[test]
fn rtsp_server_media_are_judged_per_client() {
    let _serial = one_at_a_time();
    common::init();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rtsp_leakcheck_server.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let registry = plugin_env(&mut cmd, "rtsp");
    let mut server = cmd.spawn().unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = server.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the server said nothing while waiting for {what}"))
    };
    let port: u16 = next("its port")
        .strip_prefix("PORT ")
        .unwrap()
        .parse()
        .unwrap();

    let mut fds_seen = Vec::new();
    for client in 0..20 {
        play_client(port, "clean");
        let report = next("the clean media's report");
        assert!(
            report.starts_with("REPORT /clean leaks=0 cycles=1 "),
            "client {client}: {report}"
        );
        fds_seen.push(field(&report, "fds"));
    }
    // Tearing media down properly leaves no fd behind: one leaked per client
    // would add 10 over the last 10 clients. A client's socket may still be
    // closing when a report is printed, so the counts move by one or two.
    let warm = fds_seen[..10].iter().min().unwrap();
    let later = fds_seen[10..].iter().min().unwrap();
    assert!(later <= &(warm + 2), "server fds per client: {fds_seen:?}");

    play_client(port, "leaky");
    let report = next("the leaky media's report");
    assert!(
        report.starts_with("REPORT /leaky leaks=2 cycles=1 "),
        "{report}"
    );
    // Removed while PLAYING, and the server script still holds it.
    assert!(
        report.ends_with("findings=removed-above-null:victim,still-alive:victim"),
        "{report}"
    );

    drop(server.stdin.take());
    assert!(server.wait().unwrap().success());
    let _ = std::fs::remove_file(registry);
}

fn field(report: &str, name: &str) -> u32 {
    report
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

/// Connects, receives a few packets, disconnects (TEARDOWN).
fn play_client(port: u16, mount: &str) {
    let p = gst::parse::launch(&format!(
        "rtspsrc location=rtsp://127.0.0.1:{port}/{mount} protocols=tcp latency=0 ! fakesink name=sink"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let packets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = packets.clone();
    p.by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            gst::PadProbeReturn::Ok
        });
    p.set_state(gst::State::Playing).unwrap();
    let received = common::poll_until(Duration::from_secs(30), || {
        packets.load(std::sync::atomic::Ordering::SeqCst) >= 5
    });
    p.set_state(gst::State::Null).unwrap();
    assert!(received, "client of /{mount} received nothing");
}
