// SPDX-License-Identifier: MPL-2.0
//! The `edgeguard-metrics` tracer, enabled as users enable it: each scenario
//! runs in a child process started with GST_TRACERS, loading the debug cdylib
//! through GST_PLUGIN_PATH (`cargo build --lib` first; make test does). The
//! parent scrapes it, runs promtool and a real Prometheus on loopback.

mod common;

use gst::prelude::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// A bound for hangs, not a performance expectation.
const HANG: Duration = Duration::from_secs(120);
const CHILD: &str = "EDGEGUARD_METRICS_CHILD";
const RIG: &str = "videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=30/1 ! \
                   vpuguardenc name=enc ! vpuguarddec name=dec ! \
                   delaybuffer name=delay delay=200000000 ! leakcheck name=leaks ! fakesink \
                   delay.tap_0 ! fakesink";

// ---------------------------------------------------------------- helpers

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET: (head, body).
fn http_get(address: &str, path: &str, accept: Option<&str>) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(HANG))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((head.to_string(), body.to_string()))
}

fn scrape(address: &str) -> String {
    let (head, body) = http_get(address, "/metrics", None).unwrap();
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body
}

/// The elements' series lines of an exposition: comments and the HTTP
/// endpoint's own series (`edgeguard_http_*`, always there) left out.
fn series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(ENDPOINT))
        .collect()
}

/// The prefix of the endpoint's own families.
const ENDPOINT: &str = "edgeguard_http_";
/// Families the endpoint serves about itself: connections open, their cap,
/// and the ones it closed by reason.
const ENDPOINT_FAMILIES: usize = 3;

/// Families in an exposition, from its TYPE lines.
fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

fn promtool_check(text: &str) -> Result<(), String> {
    let mut promtool = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/promtool runs (make deps installs Debian's prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A child process of this test binary running `scenario`; killed if the
/// test fails before it exits.
struct Scenario {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    registry: PathBuf,
}

fn lines_of(reader: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Scenario {
    fn start(scenario: &str, tracers: &str, env: &[(&str, &str)]) -> Scenario {
        let registry = std::env::temp_dir().join(format!(
            "edgeguard-registry-metrics-{scenario}-{}.bin",
            std::process::id()
        ));
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env(CHILD, scenario)
            .env("GST_TRACERS", tracers)
            .env("GST_PLUGIN_PATH", common::plugin_dir())
            .env("GST_REGISTRY", &registry)
            .env("GST_DEBUG_NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stdin = child.stdin.take();
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        Scenario {
            child,
            stdin,
            stdout,
            stderr,
            registry,
        }
    }

    /// Waits for a stdout line with `word` (libtest may print before it on
    /// the same line); returns the line from `word` on.
    fn expect(&self, word: &str) -> String {
        loop {
            match self.stdout.recv_timeout(HANG) {
                Ok(line) if line.contains(word) => {
                    return line[line.find(word).unwrap()..].to_string();
                }
                Ok(_) => continue,
                Err(_) => panic!("the child never said {word}: {}", self.drain_stderr()),
            }
        }
    }

    fn drain_stderr(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// Sends `line` to the child; returns its answer, from `word` on.
    fn ask(&mut self, line: &str, word: &str) -> String {
        let stdin = self.stdin.as_mut().expect("the child is running");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        self.expect(word)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Tells the child to finish (closes its stdin) and returns its stderr.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        let mut stderr: Vec<String> = Vec::new();
        while let Ok(line) = self.stderr.recv_timeout(HANG) {
            stderr.push(line);
        }
        let stderr = stderr.join("\n");
        assert!(status.success(), "child failed: {stderr}");
        stderr
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.registry);
    }
}

fn tracers(address: Option<&str>, textfile: Option<&Path>, interval: &str) -> String {
    let mut params = vec![format!("interval={interval}")];
    if let Some(a) = address {
        params.push(format!("address={a}"));
    }
    if let Some(t) = textfile {
        params.push(format!("textfile={}", t.display()));
    }
    format!("edgeguard-metrics({})", params.join(","))
}

// ---------------------------------------------------------------- children

/// Not a test on its own: the program each scenario runs, in a child process
/// with GST_TRACERS set (see `Scenario`).
#[test]
fn child_entry() {
    let Ok(scenario) = std::env::var(CHILD) else {
        return;
    };
    gst::init().unwrap();
    match scenario.as_str() {
        "rig" => child_rig(),
        "cycles" => child_cycles(),
        "eos" => child_eos(),
        "exit" => child_exit(),
        "hold" => {
            child_hold();
            return;
        }
        other => panic!("no scenario {other}"),
    }
    // Stay until the parent is done with this process.
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

fn launch(description: &str, name: &str) -> gst::Pipeline {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_property("name", name);
    pipeline
}

/// `description` as pipeline `name`, played to EOS without an error.
fn played_to_eos(description: &str, name: &str) -> gst::Pipeline {
    let pipeline = launch(description, name);
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, HANG, |_| false);
    assert!(log.eos && log.errors.is_empty(), "{name}: {:?}", log.errors);
    pipeline
}

/// 16x16 frames through vpuguardenc, delaybuffer and leakcheck.
const SMALL: &str = "videotestsrc num-buffers=3 ! video/x-raw,width=16,height=16,framerate=30/1 ! \
                     vpuguardenc name=enc ! delaybuffer name=delay ! leakcheck name=leaks ! fakesink";

/// The rig plays until the parent closes stdin; READY once both guards decided.
fn child_rig() {
    let pipeline = launch(RIG, "rig");
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, HANG, |log| {
        !log.named("vpuguardenc-decision").is_empty()
            && !log.named("vpuguarddec-decision").is_empty()
    });
    assert!(log.errors.is_empty(), "{:?}", log.errors);
    // What an application without the tracer reads, for the parent to
    // compare with what the tracer serves.
    for name in ["enc", "dec", "leaks"] {
        let stats = pipeline
            .by_name(name)
            .unwrap()
            .property::<gst::Structure>("stats");
        println!("STATS {stats}");
    }
    println!("READY");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    pipeline.set_state(gst::State::Null).unwrap();
}

/// 200 pipelines, each with new element names, run to EOS and dropped: the
/// series of each are there while it lives and gone after.
fn child_cycles() {
    let address = std::env::var("EDGEGUARD_METRICS_ADDRESS").unwrap();
    let mut per_pipeline = None;
    for i in 0..200 {
        let pipeline = played_to_eos(
            &format!(
                "videotestsrc num-buffers=2 ! video/x-raw,width=16,height=16,framerate=30/1 ! \
                 vpuguardenc name=enc{i} ! vpuguarddec name=dec{i} ! delaybuffer name=delay{i} ! \
                 leakcheck name=leaks{i} ! fakesink"
            ),
            &format!("cycle{i}"),
        );
        let text = scrape(&address);
        let live = series(&text).len();
        assert!(
            text.contains(&format!("element=\"leaks{i}\"")),
            "cycle {i}: {text}"
        );
        assert_eq!(*per_pipeline.get_or_insert(live), live, "cycle {i}: {text}");
        pipeline.set_state(gst::State::Null).unwrap();
        drop(pipeline);
        // Elements are finalized when their last reference goes, which a
        // worker thread may hold a moment longer.
        assert!(
            common::poll_until(HANG, || series(&scrape(&address)).is_empty()),
            "cycle {i}: series left: {}",
            scrape(&address)
        );
    }
    println!("CYCLES {}", per_pipeline.unwrap());
}

/// Pipelines that `child_hold` runs while the endpoint is under abuse.
const HELD_PIPELINES: usize = 4;

/// Four live pipelines through edgeguard's elements, playing until stdin
/// ends; each line `frames` is answered with the buffers each sink has
/// had so far (`FRAMES n0 n1 n2 n3`).
fn child_hold() {
    let frames: Vec<Arc<AtomicU64>> = (0..HELD_PIPELINES)
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let pipelines: Vec<gst::Pipeline> = frames
        .iter()
        .enumerate()
        .map(|(i, count)| {
            let pipeline = launch(
                &format!(
                    "videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=30/1 ! \
                     vpuguardenc name=enc{i} ! delaybuffer name=delay{i} delay=100000000 ! \
                     leakcheck name=leaks{i} ! fakesink name=sink{i}"
                ),
                &format!("held{i}"),
            );
            let pad = pipeline
                .by_name(&format!("sink{i}"))
                .unwrap()
                .static_pad("sink");
            let count = count.clone();
            pad.unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    count.fetch_add(1, Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                });
            pipeline.set_state(gst::State::Playing).unwrap();
            pipeline
        })
        .collect();
    let counts = || {
        let n: Vec<String> = frames
            .iter()
            .map(|f| f.load(Ordering::Relaxed).to_string())
            .collect();
        n.join(" ")
    };
    assert!(common::poll_until(HANG, || frames
        .iter()
        .all(|f| f.load(Ordering::Relaxed) > 0)));
    println!("READY");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        if line == "frames" {
            println!("FRAMES {}", counts());
        }
    }
    for pipeline in pipelines {
        pipeline.set_state(gst::State::Null).unwrap();
    }
}

/// A pipeline through all three kinds of elements runs to EOS.
fn child_eos() {
    let pipeline = played_to_eos(SMALL, "eos");
    pipeline.set_state(gst::State::Null).unwrap();
    println!("EOS");
}

/// Exits with a pipeline alive at EOS, once the tracer's first textfile
/// write (of no element yet) is there: what is in the file after the exit,
/// the exit handler wrote.
fn child_exit() {
    let textfile = PathBuf::from(std::env::var("EDGEGUARD_METRICS_TEXTFILE").unwrap());
    assert!(common::poll_until(HANG, || textfile.exists()));
    let _pipeline = played_to_eos(SMALL, "exiting");
    assert!(series(&std::fs::read_to_string(&textfile).unwrap()).is_empty());
    // As many programs end: without taking the pipeline down.
    std::process::exit(0);
}

// ---------------------------------------------------------------- tests

#[test]
fn endpoint_and_textfile_pass_promtool() {
    gst::init().unwrap();
    let dir = common::temp_dir("metrics-promtool");
    let textfile = dir.join("edgeguard.prom");
    let address = format!("127.0.0.1:{}", free_port());
    let rig = Scenario::start("rig", &tracers(Some(&address), Some(&textfile), "0.2"), &[]);
    let stats: Vec<gst::Structure> = ["vpuguardenc-stats", "vpuguarddec-stats", "leakcheck-stats"]
        .iter()
        .map(|name| rig.expect(name).parse().unwrap())
        .collect();
    rig.expect("READY");
    let body = scrape(&address);
    assert_eq!(families(&body).len(), 22 + ENDPOINT_FAMILIES, "{body}");
    stats_match_the_series(&stats, &body);
    assert!(
        body.contains("edgeguard_encoder_decisions_total{pipeline=\"rig\",element=\"enc\""),
        "{body}"
    );
    promtool_check(&body).unwrap_or_else(|e| panic!("promtool on the endpoint: {e}\n{body}"));

    let (head, open) = http_get(
        &address,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    )
    .unwrap();
    // Header names are case-insensitive (hyper writes them in lower case).
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(open.ends_with("# EOF\n"), "{open}");
    let (head, _) = http_get(&address, "/", None).unwrap();
    assert!(head.contains(" 404 "), "{head}");

    // The textfile, once a write after the decisions has landed.
    let mut text = String::new();
    assert!(common::poll_until(HANG, || {
        text = std::fs::read_to_string(&textfile).unwrap_or_default();
        text.contains("element=\"dec\"")
    }));
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool on the textfile: {e}\n{text}"));
    rig.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The value of the one series of `metric` whose labels contain `labels`.
fn value(body: &str, metric: &str, labels: &str) -> f64 {
    let found: Vec<f64> = series(body)
        .into_iter()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{metric} {labels}: {body}");
    found[0]
}

fn stats_match_the_series(stats: &[gst::Structure], body: &str) {
    for (s, element, noun) in [(&stats[0], "enc", "encoder"), (&stats[1], "dec", "decoder")] {
        let at = format!("element=\"{element}\"");
        let field = |name: &str| s.get::<u64>(name).unwrap() as f64;
        assert_eq!(field("decisions"), 1.0, "{s}");
        let labels = format!(
            "{at},{noun}=\"{}\",hardware=\"{}\"",
            s.get::<&str>(noun).unwrap(),
            s.get::<bool>("hardware").unwrap()
        );
        let decisions = value(body, &format!("edgeguard_{noun}_decisions_total"), &labels);
        assert_eq!(decisions, field("decisions"));
        let sessions = value(body, "edgeguard_vpu_sessions", &at);
        assert_eq!(sessions, f64::from(s.get::<u32>("sessions").unwrap()));
        let max = value(body, "edgeguard_vpu_max_sessions", &at);
        assert_eq!(max, f64::from(s.get::<u32>("max-sessions").unwrap()));
        for (metric, name) in [("switches", "switches"), ("frames_lost", "frames-lost")] {
            let total = value(body, &format!("edgeguard_{noun}_{metric}_total"), &at);
            assert_eq!(total, field(name), "{metric}");
        }
    }
    let leaks = &stats[2];
    let findings = leaks.get::<gst::Structure>("findings").unwrap();
    assert_eq!(findings.n_fields(), 7, "{leaks}");
    for (kind, count) in findings.iter() {
        let labels = format!("element=\"leaks\",kind=\"{kind}\"");
        let served = value(body, "edgeguard_leak_findings", &labels);
        assert_eq!(served, count.get::<u64>().unwrap() as f64, "{kind}");
    }
    let cycles = value(body, "edgeguard_leak_cycles_total", "element=\"leaks\"");
    assert_eq!(cycles, leaks.get::<u64>("cycles").unwrap() as f64);
    // delaybuffer: each tap's series beside src's, at their own delays.
    for (pad, delay) in [("src", 0.2), ("tap_0", 0.0)] {
        let labels = format!("element=\"delay\",pad=\"{pad}\"");
        assert_eq!(value(body, "edgeguard_delay_seconds", &labels), delay);
        value(body, "edgeguard_delay_copied_total", &labels);
    }
}

#[test]
fn textfile_readers_never_see_a_partial_file() {
    let dir = common::temp_dir("metrics-textfile-race");
    let textfile = dir.join("edgeguard.prom");
    // A write every millisecond while the rig runs; none left half done
    // when it exits.
    let rig = Scenario::start("rig", &tracers(None, Some(&textfile), "0.001"), &[]);
    rig.expect("READY");
    // A write that sampled the rig before its decisions may land after READY.
    assert!(common::poll_until(HANG, || {
        families(&std::fs::read_to_string(&textfile).unwrap_or_default()).len() == 22
    }));
    // 10,000 reads while the file is replaced about every millisecond.
    let mut previous = String::new();
    let mut changes = 0;
    for _ in 0..10_000 {
        let text = std::fs::read_to_string(&textfile).unwrap();
        // Every read is a complete exposition of the rig: all its families,
        // the last series line whole.
        assert_eq!(families(&text).len(), 22, "partial file:\n{text}");
        assert!(text.ends_with('\n'), "partial file:\n{text}");
        if text != previous {
            changes += 1;
            previous = text;
        }
    }
    assert!(changes > 1, "the file never changed while read");
    rig.finish();
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "temporary files left: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_textfile_is_written_at_exit() {
    let dir = common::temp_dir("metrics-exit");
    let textfile = dir.join("edgeguard.prom");
    let path = textfile.display().to_string();
    // No periodic write after the first within the test's life.
    let run = Scenario::start(
        "exit",
        &tracers(None, Some(&textfile), "3600"),
        &[("EDGEGUARD_METRICS_TEXTFILE", path.as_str())],
    );
    run.finish();
    let text = std::fs::read_to_string(&textfile).unwrap();
    for element in ["enc", "delay", "leaks"] {
        let labels = format!("pipeline=\"exiting\",element=\"{element}\"");
        assert!(text.contains(&labels), "no {labels} in\n{text}");
    }
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool on the textfile: {e}\n{text}"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn series_stay_flat_over_200_pipeline_cycles() {
    let address = format!("127.0.0.1:{}", free_port());
    let cycles = Scenario::start(
        "cycles",
        &tracers(Some(&address), None, "10"),
        &[("EDGEGUARD_METRICS_ADDRESS", address.as_str())],
    );
    let line = cycles.expect("CYCLES");
    // Four elements' series per pipeline, the same in every cycle.
    let per_pipeline: usize = line["CYCLES ".len()..].parse().unwrap();
    assert!(per_pipeline >= 4 * 3, "{line}");
    cycles.finish();
}

#[test]
fn an_address_in_use_and_an_unwritable_textfile_warn_once_each() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    // Not creatable, even by root.
    let textfile = Path::new("/proc/edgeguard-metrics-test/edgeguard.prom");
    let run = Scenario::start(
        "eos",
        &tracers(Some(&address), Some(textfile), "0.05"),
        &[("GST_DEBUG", "edgeguard-metrics:5")],
    );
    run.expect("EOS");
    // Let the writer fail a few more times: still one WARNING.
    let mut failures = 0;
    let mut stderr = Vec::new();
    while failures < 5 {
        let line = run
            .stderr
            .recv_timeout(HANG)
            .expect("the textfile writer goes on");
        if line.contains("cannot write textfile") {
            failures += 1;
        }
        stderr.push(line);
    }
    stderr.push(run.finish());
    let stderr = stderr.join("\n");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("edgeguard-metrics"))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings.iter().any(|w| w.contains(&address)),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&textfile.display().to_string())),
        "{warnings:#?}"
    );
    drop(taken);
}

#[test]
fn the_dashboard_queries_only_metrics_the_exporter_serves() {
    let address = format!("127.0.0.1:{}", free_port());
    let rig = Scenario::start("rig", &tracers(Some(&address), None, "10"), &[]);
    rig.expect("READY");
    let served = families(&scrape(&address));
    rig.finish();

    let mut exprs = Vec::new();
    collect_exprs(&dashboard(), &mut exprs);
    assert!(exprs.len() >= 6, "{exprs:?}");
    for expr in &exprs {
        let names = metric_names_in(expr);
        assert!(!names.is_empty(), "{expr} names no edgeguard metric");
        for name in names {
            assert!(
                served.contains(&name),
                "{expr}: {name} is not served ({served:?})"
            );
        }
    }
}

fn dashboard() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-edgeguard.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every panel's query and the selector of the `pipeline` variable, as
/// Grafana sends them with the variable set to `pipeline`.
fn dashboard_queries(pipeline: &str) -> Vec<String> {
    let dashboard = dashboard();
    let mut queries = Vec::new();
    collect_exprs(&dashboard, &mut queries);
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let query = variable["query"]["query"].as_str().unwrap();
        let selector = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(", pipeline)"))
            .unwrap_or_else(|| panic!("{query} is not label_values(<selector>, pipeline)"));
        queries.push(selector.to_string());
    }
    queries
        .iter()
        .map(|q| {
            q.replace("$pipeline", pipeline)
                .replace("$__rate_interval", "1m")
        })
        .collect()
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => (),
    }
}

/// The `edgeguard_*` identifiers of a PromQL expression.
fn metric_names_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("edgeguard_"))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------- Prometheus

/// Debian's Prometheus on loopback, in a private directory; killed on drop.
struct Prometheus {
    child: Child,
    address: String,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let binary = Path::new("/usr/bin/prometheus");
        assert!(
            binary.exists(),
            "/usr/bin/prometheus is missing: make deps installs Debian's prometheus"
        );
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: edgeguard\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus { child, address }
    }

    /// The instant vector `query` answers now, or None while Prometheus is
    /// not up yet.
    fn query(&self, query: &str) -> Option<Vec<serde_json::Value>> {
        let (head, body) = http_get(
            &self.address,
            &format!("/api/v1/query?query={}", url_encoded(query)),
            None,
        )
        .ok()?;
        if !head.contains(" 200 ") {
            return None;
        }
        let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
        answer["data"]["result"].as_array().cloned()
    }

    /// Asks `query` until a series of its answer has labels that `wanted`
    /// accepts (bounded by HANG); the last answer when none came.
    fn answer_until(
        &self,
        query: &str,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<(), Vec<serde_json::Value>> {
        let mut answer = Vec::new();
        let found = common::poll_until(HANG, || {
            answer = self.query(query).unwrap_or_default();
            let there = answer.iter().any(|series| wanted(&series["metric"]));
            if !there {
                // Prometheus scrapes once a second: no need to ask more often.
                std::thread::sleep(Duration::from_millis(200));
            }
            there
        });
        if found { Ok(()) } else { Err(answer) }
    }
}

/// One series of a range query: its labels and its raw samples
/// (timestamp in UNIX seconds, value), oldest first.
struct Samples {
    metric: serde_json::Value,
    points: Vec<(f64, f64)>,
}

impl Prometheus {
    /// The raw samples of `selector` whose timestamps fall in `window`
    /// (UNIX seconds, both ends included), one entry per series.
    fn samples(&self, selector: &str, window: (f64, f64)) -> Vec<Samples> {
        let (from, to) = window;
        let span = (to - from).ceil() as u64 + 1;
        let query = format!("{selector}[{span}s]");
        let (head, body) = http_get(
            &self.address,
            &format!("/api/v1/query?query={}&time={to:.3}", url_encoded(&query)),
            None,
        )
        .unwrap();
        assert!(head.contains(" 200 "), "{query}: {head}\n{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        let result = answer["data"]["result"].as_array().cloned();
        let result = result.unwrap_or_else(|| panic!("{query}: {body}"));
        result
            .into_iter()
            .map(|series| {
                let points = series["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p[0].as_f64().unwrap(),
                            p[1].as_str().unwrap().parse().unwrap(),
                        )
                    })
                    .filter(|(t, _)| (from..=to).contains(t))
                    .collect();
                Samples {
                    metric: series["metric"].clone(),
                    points,
                }
            })
            .collect()
    }

    /// Waits until Prometheus has stored a scrape of the target that began
    /// after `time` (UNIX seconds): what came before is all in.
    fn scraped_after(&self, time: f64) -> bool {
        common::poll_until(HANG, || {
            let after = self
                .query("timestamp(up{job=\"edgeguard\"})")
                .unwrap_or_default()
                .iter()
                .any(|s| s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()) > Some(time));
            if !after {
                std::thread::sleep(Duration::from_millis(200));
            }
            after
        })
    }

    /// Connections Prometheus's scraper has opened to the target so far,
    /// from Prometheus's own metrics.
    fn dials(&self) -> u64 {
        let (_, body) = http_get(&self.address, "/metrics", None).unwrap();
        endpoint_value(
            &body,
            "net_conntrack_dialer_conn_established_total{dialer_name=\"edgeguard\"}",
        )
    }
}

/// Now, in UNIX seconds, as Prometheus stamps its samples.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_rig() {
    let dir = common::temp_dir("metrics-prometheus");
    let address = format!("127.0.0.1:{}", free_port());
    let rig = Scenario::start("rig", &tracers(Some(&address), None, "10"), &[]);
    rig.expect("READY");
    let prometheus = Prometheus::start(&dir, &address);
    for (query, element) in [
        ("edgeguard_encoder_decisions_total", "enc"),
        ("edgeguard_delay_level_seconds", "delay"),
        ("edgeguard_leak_findings", "leaks"),
    ] {
        let answer = prometheus.answer_until(query, |metric| {
            metric["pipeline"] == "rig" && metric["element"] == element
        });
        answer
            .unwrap_or_else(|last| panic!("Prometheus has no {query} for rig/{element}: {last:?}"));
    }
    // Every panel of the dashboard, and its pipeline variable, shows the rig
    // (a panel summed over every label shows it without a pipeline label).
    for query in dashboard_queries("rig") {
        let answer = prometheus.answer_until(&query, |metric| {
            metric["pipeline"].is_null() || metric["pipeline"] == "rig"
        });
        answer.unwrap_or_else(|last| {
            panic!("the dashboard's {query} shows nothing of the rig: {last:?}")
        });
    }
    drop(prometheus);
    rig.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- abuse

/// Connections opened against the endpoint while pipelines run.
const FLOOD: usize = 1_000;
/// The endpoint's `max-connections` in these tests.
const CAP: usize = 64;
/// Frames each held pipeline plays while the connections are held: 20 s at
/// 30 frames/s. Counted, not timed: the hold lasts until they are there.
const HOLD_FRAMES: u64 = 600;
/// The endpoint's threads (`edgeguard-metrics-http`), whatever the load.
const SERVER_THREADS: usize = 1;
/// Threads the rest of the process may start during the hold (GStreamer's
/// own come and go): the bound the issue sets beside the pool's size.
const SPARE_THREADS: usize = 20;

/// Resident memory the flood may leave once its connections are closed:
/// half of what 8 KiB kept for each of them would.
const LEFT_AFTER_KIB: u64 = 4 * 1024;

/// The threads of process `pid`, and how many are the endpoint's.
fn threads_of(pid: u32) -> (usize, usize) {
    let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| std::fs::read_to_string(t.path().join("comm")).unwrap_or_default())
        .collect();
    // comm keeps 15 bytes of a thread's name.
    let server = tasks
        .iter()
        .filter(|c| c.starts_with("edgeguard-metri"))
        .count();
    (tasks.len(), server)
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn frames_of(hold: &mut Scenario) -> Vec<u64> {
    let line = hold.ask("frames", "FRAMES");
    line.split(' ')
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect()
}

/// Enough file descriptors for the flood, in this process.
fn allow_open_files(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= wanted,
        "{} open files allowed",
        limit.rlim_cur
    );
}

/// Whether the endpoint still holds `stream` open (a read would block),
/// rather than having closed it.
fn held_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8];
    let held = match stream.peek(&mut byte) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
        Ok(0) => false,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
        other => panic!("the endpoint sent something unasked: {other:?}"),
    };
    stream.set_nonblocking(false).unwrap();
    held
}

/// The value of the unlabelled (or `reason`-labelled) endpoint series `name`.
fn endpoint_value(body: &str, name: &str) -> u64 {
    let line = body
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{body}"));
    line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64
}

fn shed(body: &str) -> u64 {
    ["refused", "evicted"]
        .iter()
        .map(|reason| {
            endpoint_value(
                body,
                &format!("edgeguard_http_connections_closed_total{{reason=\"{reason}\"}}"),
            )
        })
        .sum()
}

#[test]
fn a_thousand_idle_connections_cost_no_threads_and_prometheus_keeps_scraping() {
    allow_open_files(FLOOD as u64 + 256);
    let address = format!("127.0.0.1:{}", free_port());
    // An idle timeout longer than any hold: the connections end only by
    // being shed or closed by this test.
    let tracer =
        format!("edgeguard-metrics(address={address},max-connections={CAP},idle-timeout=3600)");
    let mut hold = Scenario::start("hold", &tracer, &[]);
    hold.expect("READY");
    let pid = hold.pid();
    // A real Prometheus scrapes the endpoint every second from before the
    // flood until after it ends, over the connection it keeps.
    let dir = common::temp_dir("metrics-hold-prometheus");
    let watch_began = unix_now();
    let prometheus = Prometheus::start(&dir, &address);
    prometheus
        .answer_until("up == 1", |metric| metric["job"] == "edgeguard")
        .unwrap_or_else(|last| panic!("Prometheus never scraped the endpoint: {last:?}"));
    let (threads_before, _) = threads_of(pid);
    let rss_before = rss_kib(pid);

    let mut flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    // The kernel hands connections over in order: this scrape comes after
    // the flood, so it sees every one of them accepted, and takes the place
    // of one more idle connection.
    let body = scrape(&address);
    // Each connection Prometheus opened may have taken the place of one
    // more (and been shed itself when it sat idle older than newcomers).
    let dials = prometheus.dials();
    let excess = (FLOOD + 1 - CAP) as u64;
    let shed_first = shed(&body);
    assert!(
        (excess..=excess + dials).contains(&shed_first),
        "{shed_first} shed, {dials} connections from Prometheus: {body}"
    );
    assert_eq!(
        endpoint_value(&body, "edgeguard_http_connections_open"),
        CAP as u64
    );
    assert_eq!(
        endpoint_value(&body, "edgeguard_http_connections_max"),
        CAP as u64
    );
    assert!(
        !series(&body).is_empty(),
        "a scrape in the flood has the pipelines"
    );

    // Hold them while the pipelines play HOLD_FRAMES more frames each,
    // scraping and counting threads all along.
    let hold_began = unix_now();
    let start = frames_of(&mut hold);
    let mut most_threads = 0;
    let mut scrapes = 0;
    loop {
        let (threads, server) = threads_of(pid);
        assert_eq!(server, SERVER_THREADS, "the endpoint's threads");
        most_threads = most_threads.max(threads);
        // A scraper gets its answer however long the flood lasts: the
        // connection idle longest makes room for it.
        let body = scrape(&address);
        assert!(!series(&body).is_empty(), "{body}");
        scrapes += 1;
        let now = frames_of(&mut hold);
        if now.iter().zip(&start).all(|(n, s)| n - s >= HOLD_FRAMES) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        most_threads <= threads_before + SERVER_THREADS + SPARE_THREADS,
        "{most_threads} threads during the flood, {threads_before} before"
    );
    let rss_held = rss_kib(pid);

    // The excess was closed at once, and only the excess: the first scrape
    // took one more place, each connection of Prometheus's at most one
    // (the later scrapes of this test found one free). Read in this order,
    // a connection Prometheus opens meanwhile is among the `dials`.
    let body = scrape(&address);
    let shed_held = shed(&body);
    let held = flood.iter().filter(|s| held_open(s)).count() as u64;
    let dials = prometheus.dials();
    let flood_shed = FLOOD as u64 - held;
    assert!(
        (excess..=excess + dials).contains(&flood_shed),
        "{held} held after {scrapes} scrapes, {dials} connections from Prometheus"
    );
    // Each was counted, and whatever else the endpoint shed was
    // Prometheus's, never this test's scrapes (each was answered above).
    assert!(
        (excess..=flood_shed + dials).contains(&shed_held),
        "{shed_held} shed, {flood_shed} of the flood, {dials} connections from Prometheus: {body}"
    );
    let hold_ended = unix_now();

    // Closed by their clients, they are gone.
    flood.clear();
    let connections_held = prometheus_kept_scraping(
        &prometheus,
        (watch_began, unix_now()),
        (hold_began, hold_ended),
    );
    drop(prometheus);
    std::fs::remove_dir_all(&dir).unwrap();
    // Prometheus's connection goes with it: once only the scrape's own is
    // open, the threads and the memory the flood cost are back too.
    assert!(common::poll_until(HANG, || {
        endpoint_value(&scrape(&address), "edgeguard_http_connections_open") == 1
    }));
    assert!(common::poll_until(HANG, || threads_of(pid).0 <= threads_before));
    let rss_after = rss_kib(pid);
    eprintln!(
        "threads: {threads_before} before, at most {most_threads} held; \
         RSS: {rss_before} KiB before, {rss_held} KiB held, {rss_after} KiB after; \
         {held} of the flood held, {shed_held} shed, {dials} connections from Prometheus, \
         which saw {connections_held:?} connections open at its scrapes"
    );
    // The flood's buffers are a few KiB per connection kept: a thread per
    // connection would cost far more than this bound.
    assert!(
        rss_held < rss_before + 16 * 1024,
        "RSS {rss_before} KiB before, {rss_held} KiB held"
    );
    // Once they are closed, nothing of the 1,000 connections stays: what
    // each one read into (hyper's 8 KiB buffer), left behind by every one
    // of them, would pass this bound.
    assert!(
        rss_after < rss_before + LEFT_AFTER_KIB,
        "RSS {rss_before} KiB before, {rss_held} KiB held, {rss_after} KiB after"
    );
    assert!(
        rss_after <= rss_held + LEFT_AFTER_KIB / 4,
        "RSS {rss_held} KiB held, {rss_after} KiB after they closed"
    );
    hold.finish();
}

/// Prometheus's scrape interval (`Prometheus::start`), in seconds.
const SCRAPE_INTERVAL: f64 = 1.0;
/// Scrapes of the hold that Prometheus may not have begun in it: one for
/// the window's two ends, two more for a late tick on a busy machine.
const SCRAPES_MISSED: usize = 3;

/// From Prometheus's own records: every scrape it began while `watched`
/// (UNIX seconds: from before the flood until after it closed) succeeded
/// and carried the four pipelines' series, and during the `hold` there was
/// one about every interval, each answered with the flood's connections
/// held. Returns the open connections each scrape of the hold saw.
fn prometheus_kept_scraping(
    prometheus: &Prometheus,
    watched: (f64, f64),
    hold: (f64, f64),
) -> Vec<u64> {
    assert!(
        prometheus.scraped_after(watched.1),
        "Prometheus stopped scraping"
    );
    let up = prometheus.samples("up{job=\"edgeguard\"}", watched);
    assert_eq!(up.len(), 1, "one target");
    let scrapes: Vec<f64> = up[0].points.iter().map(|(t, _)| *t).collect();
    let failed: Vec<&(f64, f64)> = up[0].points.iter().filter(|(_, v)| *v != 1.0).collect();
    assert!(
        failed.is_empty(),
        "scrapes failed (hold from {} to {}): {failed:?}",
        hold.0,
        hold.1
    );
    // Each of them had every held pipeline's series.
    let levels = prometheus.samples("edgeguard_delay_level_seconds{pad=\"src\"}", watched);
    for pipeline in (0..HELD_PIPELINES).map(|i| format!("held{i}")) {
        let of_pipeline = levels.iter().find(|s| s.metric["pipeline"] == *pipeline);
        let at: Vec<f64> =
            of_pipeline.map_or(Vec::new(), |s| s.points.iter().map(|p| p.0).collect());
        assert_eq!(at, scrapes, "the scrapes that had {pipeline}");
    }
    // Counted, not timed: as many scrapes in the hold as it lasted intervals.
    let in_hold = scrapes
        .iter()
        .filter(|t| (hold.0..=hold.1).contains(*t))
        .count();
    let intervals = ((hold.1 - hold.0) / SCRAPE_INTERVAL) as usize;
    assert!(
        in_hold + SCRAPES_MISSED >= intervals,
        "{in_hold} scrapes in a hold of {intervals} intervals: {scrapes:?}"
    );
    // Each was answered while the flood's connections were held: at least
    // half the cap open, never more than the cap.
    let open = prometheus.samples("edgeguard_http_connections_open", hold);
    assert_eq!(open.len(), 1, "one endpoint");
    let open: Vec<u64> = open[0].points.iter().map(|(_, v)| *v as u64).collect();
    assert_eq!(open.len(), in_hold);
    assert!(
        open.iter()
            .all(|n| (CAP as u64 / 2..=CAP as u64).contains(n)),
        "connections open at Prometheus's scrapes: {open:?}"
    );
    open
}

#[test]
fn port_zero_logs_the_port_the_kernel_gave() {
    let run = Scenario::start(
        "hold",
        "edgeguard-metrics(address=127.0.0.1:0)",
        &[("GST_DEBUG", "edgeguard-metrics:4")],
    );
    run.expect("READY");
    let line = loop {
        let line = run
            .stderr
            .recv_timeout(HANG)
            .expect("the child logs where it serves");
        if line.contains("serving metrics on http://") {
            break line;
        }
    };
    let url = &line[line.find("http://").unwrap() + "http://".len()..];
    let bound = url.split('/').next().unwrap();
    let port: u16 = bound.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "{line}");
    let body = scrape(bound);
    assert!(body.contains("pipeline=\"held0\""), "{body}");
    run.finish();
}
