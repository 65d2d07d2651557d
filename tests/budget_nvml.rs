// SPDX-License-Identifier: MPL-2.0
//! The `nvml` budget source through real GStreamer: guards in child
//! processes of this test binary load a fake libnvidia-ml
//! (tests/data/fake_nvml.c) through `EDGEGUARD_NVML_LIBRARY`, and encode
//! with an NVENC double (`fakenvh264enc`) that opens its sessions in the
//! fake's state file and fails past a machine-wide cap, as GeForce drivers do.

mod common;

use common::fake_nvml;
use gst::prelude::*;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CHILD_LAUNCH: &str = "EDGEGUARD_NVML_LAUNCH";
/// Set: the child prerolls, says so, and holds its sessions until its
/// stdin closes; unset: it runs to EOS.
const CHILD_HOLD: &str = "EDGEGUARD_NVML_HOLD";
const TIMEOUT: Duration = Duration::from_secs(60);

/// The entry point of the child processes: prints each guard's decision
/// (`DECISION`), every ERROR (`ERROR`), and in hold mode `PREROLLED` once
/// every guard has decided and started its child.
#[test]
fn child_process_entry() {
    let Ok(launch) = std::env::var(CHILD_LAUNCH) else {
        return;
    };
    common::init();
    let messages = match std::env::var_os(CHILD_HOLD) {
        None => {
            let log = common::run_to_eos(&launch, TIMEOUT);
            for error in &log.errors {
                println!("ERROR {error}");
            }
            for warning in &log.warnings {
                println!("WARNING {}", warning.replace('\n', " "));
            }
            log.element_messages
        }
        Some(_) => preroll_and_hold(&launch),
    };
    for decision in messages.iter().filter(|s| s.name().ends_with("-decision")) {
        println!("DECISION {decision}");
    }
    println!("DONE");
}

/// Prerolls `launch`, prints its messages, then holds it in PAUSED until
/// stdin closes (at most `TIMEOUT`).
fn preroll_and_hold(launch: &str) -> Vec<gst::Structure> {
    let pipeline = gst::parse::launch(launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let _ = pipeline.set_state(gst::State::Paused);
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(60));
    let mut messages = Vec::new();
    for msg in pipeline.bus().unwrap().iter() {
        match msg.view() {
            gst::MessageView::Error(e) => println!("ERROR {}", e.error()),
            gst::MessageView::Element(e) => messages.extend(e.structure().map(|s| s.to_owned())),
            _ => (),
        }
    }
    for decision in messages.iter().filter(|s| s.name().ends_with("-decision")) {
        println!("DECISION {decision}");
    }
    messages.clear();
    println!("PREROLLED {result:?}");
    let (closed, stdin_closed) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = closed.send(());
    });
    let _ = stdin_closed.recv_timeout(TIMEOUT);
    pipeline.set_state(gst::State::Null).unwrap();
    messages
}

/// A fake machine: a root with no `/proc` entries, the fake NVML's state
/// file and a lock directory.
struct FakeGpu {
    dir: PathBuf,
}

impl FakeGpu {
    fn new(name: &str, state: &str) -> Self {
        let gpu = FakeGpu {
            dir: common::temp_dir(name),
        };
        std::fs::create_dir_all(gpu.dir.join("root")).unwrap();
        std::fs::write(gpu.state(), state).unwrap();
        gpu
    }

    fn state(&self) -> PathBuf {
        self.dir.join("nvml-state")
    }

    fn sessions(&self) -> usize {
        fake_nvml::count_sessions(&std::fs::read_to_string(self.state()).unwrap())
    }

    /// A guard on the NVENC double, with a machine-wide cap of 8.
    fn guard(&self, extra: &str) -> String {
        format!(
            "vpuguardenc hw-encoder={enc} budget-source=nvml max-sessions=8 lock-dir={ld} \
             hw-properties=\"props,state-file={sf},hard-limit=8\" {extra}",
            enc = fake_nvml::FACTORY_NAME,
            ld = self.dir.join("lock").display(),
            sf = self.state().display(),
        )
    }

    /// A child process of this test running `launch` against this fake,
    /// loading `library`.
    fn child(&self, launch: &str, library: &Path) -> std::process::Command {
        common::init();
        let mut command = common::child_process();
        command
            .env(CHILD_LAUNCH, launch)
            .env("EDGEGUARD_ROOT", self.dir.join("root"))
            .env("EDGEGUARD_NVML_LIBRARY", library)
            .env(fake_nvml::STATE_ENV, self.state());
        command
    }

    /// Runs `launch` to EOS in a child; its decisions and warnings.
    fn run(&self, launch: &str, library: &Path) -> (Vec<gst::Structure>, Vec<String>) {
        let output = self.child(launch, library).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<String> = stdout.lines().map(String::from).collect();
        assert!(tagged(&lines, "ERROR ").is_empty(), "{stdout}");
        let warnings = tagged(&lines, "WARNING ").into_iter().map(String::from);
        (decisions(&lines), warnings.collect())
    }
}

impl Drop for FakeGpu {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The rest of each line carrying `tag` (the harness may print the test's
/// name before it on the same line).
fn tagged<'a>(lines: &'a [String], tag: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| Some(&l[l.find(tag)? + tag.len()..]))
        .collect()
}

fn decisions(lines: &[String]) -> Vec<gst::Structure> {
    tagged(lines, "DECISION ")
        .into_iter()
        .map(|s| s.parse().unwrap())
        .collect()
}

fn field(decision: &gst::Structure, name: &str) -> String {
    let value = decision.value(name).unwrap();
    value
        .get::<String>()
        .or_else(|_| value.serialize().map(|s| s.to_string()))
        .unwrap()
}

fn branch(guard: &str) -> String {
    format!(
        "videotestsrc num-buffers=5 ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
         ! {guard} ! fakesink"
    )
}

/// Two GPUs, whose NVENC sessions one GeForce cap covers together, with
/// `per_gpu` sessions of processes that are no guards on each.
fn two_gpus(per_gpu: usize, encoder_percent: u32) -> String {
    let foreign = |first: usize| -> String {
        (0..per_gpu)
            .map(|i| format!("session pid={} id={}\n", 4000 + first + i, first + i))
            .collect()
    };
    format!(
        "gpu encoder={encoder_percent} decoder=0\n{}gpu encoder={encoder_percent} decoder=0\n{}",
        foreign(0),
        foreign(per_gpu)
    )
}

/// A child holding its pipeline prerolled, and the lines it printed.
struct Holder {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Holder {
    fn start(gpu: &FakeGpu, launch: &str) -> Holder {
        let mut child = gpu
            .child(launch, &fake_nvml::library())
            .env(CHILD_HOLD, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Holder { child, lines }
    }

    /// The lines up to `PREROLLED`.
    fn prerolled(&self) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(TIMEOUT)
                .unwrap_or_else(|e| panic!("no PREROLLED ({e}): {seen:?}"));
            let done = line.contains("PREROLLED");
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    /// Lets the child go and waits for it to succeed.
    fn finish(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
    }
}

#[test]
fn with_six_foreign_sessions_of_eight_four_guards_in_two_processes_get_two_nvenc_sessions() {
    let gpu = FakeGpu::new("nvml-cap", &two_gpus(3, 10));
    let pipeline = format!(
        "{} {}",
        branch(&gpu.guard("name=a")),
        branch(&gpu.guard("name=b"))
    );
    // Both processes at once: the decision lock orders them.
    let holders = [
        Holder::start(&gpu, &pipeline),
        Holder::start(&gpu, &pipeline),
    ];
    let lines: Vec<String> = holders.iter().flat_map(|h| h.prerolled()).collect();
    // Every guard has decided and its child has started.
    assert!(tagged(&lines, "ERROR ").is_empty(), "{lines:?}");
    assert_eq!(gpu.sessions(), 8, "{lines:?}");
    let decided = decisions(&lines);
    assert_eq!(decided.len(), 4, "{lines:?}");
    let chosen = |hardware: &str| {
        decided
            .iter()
            .filter(|d| field(d, "hardware") == hardware)
            .collect::<Vec<_>>()
    };
    assert_eq!(chosen("true").len(), 2, "{decided:?}");
    assert_eq!(chosen("false").len(), 2, "{decided:?}");
    for d in chosen("false") {
        assert_eq!(field(d, "reason"), "over-budget", "{d}");
        assert_eq!(field(d, "sessions"), "8", "{d}");
    }
    for d in &decided {
        assert_eq!(field(d, "budget-source"), "nvml", "{d}");
        assert_eq!(field(d, "load"), "10", "{d}");
        assert_ne!(field(d, "reason"), "hw-start-failed", "{d}");
    }
    for holder in holders {
        holder.finish();
    }
    assert_eq!(gpu.sessions(), 6, "the double's sessions were not closed");
}

#[test]
fn past_the_cap_the_nvenc_double_fails_to_start_as_the_driver_does() {
    // The double itself, without a guard: the real error text.
    let gpu = FakeGpu::new("nvml-double", &two_gpus(4, 0));
    let launch = branch(&format!(
        "{} state-file={} hard-limit=8",
        fake_nvml::FACTORY_NAME,
        gpu.state().display()
    ));
    let output = gpu.child(&launch, &fake_nvml::library()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(fake_nvml::OPEN_SESSION_ERROR),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn an_nvenc_busy_past_max_load_is_over_load() {
    let gpu = FakeGpu::new("nvml-busy", &two_gpus(1, 90));
    let (decided, _) = gpu.run(&branch(&gpu.guard("max-load=80")), &fake_nvml::library());
    assert_eq!(decided.len(), 1);
    assert_eq!(field(&decided[0], "reason"), "over-load", "{decided:?}");
    assert_eq!(field(&decided[0], "load"), "90");
    assert_eq!(field(&decided[0], "sessions"), "2");
}

#[test]
fn without_an_nvml_library_the_guard_decides_from_slots_and_says_so() {
    // Room on the GPU: slots alone let the guard take the hardware.
    let gpu = FakeGpu::new("nvml-none", &two_gpus(2, 0));
    let missing = gpu.dir.join("no-libnvidia-ml.so.1");
    let (decided, warnings) = gpu.run(&branch(&gpu.guard("")), &missing);
    assert_eq!(decided.len(), 1);
    let said = format!(
        "budget-source=nvml: NVML cannot be read: the NVIDIA library '{}'",
        missing.display()
    );
    assert!(warnings.iter().any(|w| w.contains(&said)), "{warnings:?}");
    let d = &decided[0];
    assert_eq!(field(d, "budget-source"), "nvml");
    assert_eq!(field(d, "reason"), "session-file-unreadable", "{d}");
    assert_eq!(field(d, "session-file"), "", "{d}");
    assert_eq!(field(d, "hardware"), "true", "{d}");
    assert_eq!(field(d, "load"), "-1", "{d}");
}

/// An NVML that fails to initialise is unreadable: slots alone count, and
/// with room among them the guard takes the hardware, as without a library.
/// One whose initialisation hangs never blocks the decision (it is started
/// outside the decision lock and not waited for under it); with no reading
/// yet nothing is known of the GPU's sessions, so the guard takes software:
/// never the unsafe side.
#[test]
fn an_nvml_that_fails_to_initialise_or_hangs_is_said_not_waited_for() {
    for (name, init, said, hardware) in [
        (
            "nvml-init-fail",
            "init=fail",
            "driver is not loaded",
            "true",
        ),
        ("nvml-hang", "init=hang", "no answer within", "false"),
    ] {
        let gpu = FakeGpu::new(name, &format!("{init}\n{}", two_gpus(2, 0)));
        let (decided, warnings) = gpu.run(&branch(&gpu.guard("")), &fake_nvml::library());
        assert_eq!(decided.len(), 1, "{init}");
        assert!(warnings.iter().any(|w| w.contains(said)), "{warnings:?}");
        let d = &decided[0];
        assert_eq!(
            field(d, "reason"),
            "session-file-unreadable",
            "{init}: {decided:?}"
        );
        assert_eq!(field(d, "budget-source"), "nvml", "{d}");
        assert_eq!(field(d, "hardware"), hardware, "{init}: {d}");
    }
}
