// SPDX-License-Identifier: MPL-2.0
//! `edgeguard-vpu` against a fake root (`--root`) holding an MPP listing and
//! DRM clients, and a fake NVML library: a guard of this process holds a hardware encoder (its slot in
//! a real lock directory, its session in the listing), and another process,
//! no guard's, holds an MPP session and a video-engine client. The command
//! must tell them apart: the guard's session matched to its element, the
//! other process's not guarded.

mod common;

use common::fake_mpp::FACTORY_NAME as FAKE_ENC;
use gst::prelude::*;
use gstedgeguard::vpu::nvml;
use std::path::Path;
use std::process::{Child, Command};

const COMMAND: &str = env!("CARGO_BIN_EXE_edgeguard-vpu");
const LISTING: &str = "proc/mpp_service/sessions-summary";

/// Copies what the kernel says of process `pid` (its name, and each
/// thread's Tgid) into the fake root's proc, as the real one would show it.
fn mirror_process(root: &Path, pid: u32) {
    let dir = root.join(format!("proc/{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap();
    std::fs::write(dir.join("comm"), comm).unwrap();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid = task.unwrap().file_name();
        let status = format!("Name:\tx\nTgid:\t{pid}\nPid:\t{}\n", tid.to_string_lossy());
        let tid_dir = root.join("proc").join(&tid);
        std::fs::create_dir_all(&tid_dir).unwrap();
        std::fs::write(tid_dir.join("status"), status).unwrap();
    }
}

/// A process that is no guard's: it holds one MPP encoder session, one
/// i915 video-engine client on the first render device, two xe clients on
/// the second, and the second of two V4L2 codec nodes, in the fake root.
fn unguarded_program(root: &Path) -> Child {
    let child = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = child.id();
    mirror_process(root, pid);
    let listing = root.join(LISTING);
    let record = common::fake_mpp::record(pid, 90, 1920, 1080, 30, 4_000_000);
    std::fs::write(&listing, record).unwrap();
    let fd = root.join(format!("proc/{pid}/fd"));
    let fdinfo = root.join(format!("proc/{pid}/fdinfo"));
    std::fs::create_dir_all(&fd).unwrap();
    std::fs::create_dir_all(&fdinfo).unwrap();
    std::os::unix::fs::symlink("/dev/dri/renderD128", fd.join("7")).unwrap();
    std::fs::write(
        fdinfo.join("7"),
        "drm-driver:\ti915\ndrm-pdev:\t0000:00:02.0\ndrm-client-id:\t41\n\
         drm-engine-video:\t5000000 ns\ndrm-engine-capacity-video:\t1\n",
    )
    .unwrap();
    for (n, id) in [(8, 42), (9, 43)] {
        std::os::unix::fs::symlink("/dev/dri/renderD129", fd.join(n.to_string())).unwrap();
        std::fs::write(
            fdinfo.join(n.to_string()),
            format!(
                "drm-driver:\txe\ndrm-pdev:\t0000:03:00.0\ndrm-client-id:\t{id}\n\
                 drm-cycles-vcs:\t500\ndrm-total-cycles-vcs:\t1000\n"
            ),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("/dev/video11", fd.join("10")).unwrap();
    child
}

/// Two render devices (an iGPU and an xe card) and two V4L2 codec nodes,
/// as /dev and sysfs show them.
fn devices(root: &Path) {
    for (n, pdev) in [(128, "0000:00:02.0"), (129, "0000:03:00.0")] {
        std::fs::write(root.join(format!("dev/dri/renderD{n}")), "").unwrap();
        let class = root.join(format!("sys/class/drm/renderD{n}"));
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(format!("../../../{pdev}"), class.join("device")).unwrap();
    }
    for n in [10, 11] {
        let class = root.join(format!("sys/class/video4linux/video{n}"));
        std::fs::create_dir_all(&class).unwrap();
        std::fs::write(class.join("name"), "hantro-vpu-enc\n").unwrap();
    }
}

/// The fake NVML's state: one GPU whose NVENC carries the unguarded
/// program's session.
fn nvml_state(dir: &Path, other: u32) -> std::path::PathBuf {
    let state = dir.join("nvml-state");
    std::fs::write(
        &state,
        format!("init=ok\ngpu encoder=35 decoder=10\nsession pid={other} id=1\n"),
    )
    .unwrap();
    state
}

/// What the command prints with `extra` arguments, against the fake root.
fn run_command(root: &Path, lock_dir: &Path, extra: &[&str]) -> String {
    let output = Command::new(COMMAND)
        .env(nvml::LIBRARY_ENV, common::fake_nvml::library())
        .env(
            common::fake_nvml::STATE_ENV,
            lock_dir.parent().unwrap().join("nvml-state"),
        )
        .args(extra)
        .arg("--root")
        .arg(root)
        .arg("--lock-dir")
        .arg(lock_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn survey(root: &Path, lock_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&run_command(root, lock_dir, &["--json"])).unwrap()
}

/// The table a person reads: one line per holder, under its source's line,
/// naming the guard or saying it is not guarded.
fn assert_table_shows(table: &str, guard: &str, guard_pid: u32, other: u32) {
    let line_of = |pid: u32| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
            .unwrap_or_else(|| panic!("no line for {pid} in\n{table}"))
    };
    assert!(table.lines().any(|l| l.starts_with("mpp ")), "{table}");
    assert!(line_of(guard_pid).ends_with(guard), "{table}");
    assert!(line_of(other).contains("sleep"), "{table}");
    assert!(line_of(other).ends_with("not guarded"), "{table}");
}

/// Surveys again until `done` says the survey shows what the test waits
/// for; a survey that never does fails by the deadline.
fn survey_until(
    root: &Path,
    lock_dir: &Path,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        // Threads started since (the one opening the session among them).
        mirror_process(root, std::process::id());
        let survey = survey(root, lock_dir);
        if done(&survey) {
            return survey;
        }
        assert!(std::time::Instant::now() < deadline, "never seen: {survey}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn source<'a>(survey: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    survey["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == name)
        .unwrap_or_else(|| panic!("no {name} source in {survey}"))
}

/// Each entry of source `name`, in the command's order.
fn entries<'a>(survey: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    survey["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source"] == name)
        .collect()
}

#[test]
fn the_command_tells_a_guards_sessions_from_an_unguarded_programs() {
    let dir = std::env::temp_dir().join(format!("edgeguard-vpu-cmd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("root");
    let lock_dir = dir.join("lock");
    std::fs::create_dir_all(root.join("proc/mpp_service")).unwrap();
    std::fs::create_dir_all(root.join("dev/dri")).unwrap();
    std::fs::create_dir_all(&lock_dir).unwrap();
    devices(&root);
    let mut other = unguarded_program(&root);
    nvml_state(&dir, other.id());
    // A viewer creates no lock directory: without one, the sources are read
    // directly and no slot is shown.
    let missing = dir.join("no-lock-dir");
    let before = survey(&root, &missing);
    assert!(!missing.exists(), "the command created the lock directory");
    let mpp = source(&before, "mpp");
    assert_eq!(mpp["sessions"], 1, "{before}");
    assert_eq!(mpp["holders"][0]["pid"], other.id());
    // The guard reads the default listing under the same root as the
    // command, so that both name the same budget. Set before any thread.
    // SAFETY: the only test of this binary, before GStreamer starts threads.
    unsafe { std::env::set_var("EDGEGUARD_ROOT", &root) };
    common::init();
    let listing = root.join(LISTING);
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         vpuguardenc name=cam0 hw-encoder={FAKE_ENC} budget-source=mpp lock-dir={} \
         hw-properties=\"props,session-file={}\" ! fakesink",
        lock_dir.display(),
        listing.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, state, _) = pipeline.state(gst::ClockTime::from_seconds(30));
    assert_eq!(state, gst::State::Playing);
    let cam0 = pipeline.by_name("cam0").unwrap();
    assert!(cam0.property::<bool>("hardware"));

    // The hardware opens its session late (on its first frames), and the
    // listing is read through a snapshot a few hundred ms old at most.
    let survey = survey_until(&root, &lock_dir, |survey| {
        let mpp = source(survey, "mpp");
        mpp["holders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["pid"] == std::process::id() && h["listed"] == true)
    });
    let table = run_command(&root, &lock_dir, &[]);
    pipeline.set_state(gst::State::Null).unwrap();
    let _ = other.kill();
    let _ = other.wait();

    let mpp = source(&survey, "mpp");
    assert_eq!(mpp["sessions"], 2, "{survey}");
    let holders = mpp["holders"].as_array().unwrap();
    let by_pid = |pid: u32| {
        holders
            .iter()
            .find(|h| h["pid"] == pid)
            .unwrap_or_else(|| panic!("{pid} not in {survey}"))
    };
    let guard = by_pid(std::process::id());
    assert_eq!(guard["guarded"], true, "{survey}");
    assert_eq!(guard["element"], cam0.path_string().as_str());
    assert_eq!(guard["kind"], "encoder");
    let unguarded = by_pid(other.id());
    assert_eq!(unguarded["guarded"], false, "{survey}");
    assert_eq!(unguarded["process"], "sleep");
    assert_eq!(unguarded["element"], serde_json::Value::Null);
    assert_table_shows(&table, &cam0.path_string(), std::process::id(), other.id());

    // One entry per render device, each with its own clients and budget.
    let drm = entries(&survey, "drm");
    let devices: Vec<_> = drm
        .iter()
        .map(|d| (&d["device"], &d["budget"], &d["sessions"]))
        .collect();
    assert_eq!(
        devices,
        [
            (
                &"/dev/dri/renderD128".into(),
                &"drm:0000:00:02.0".into(),
                &1.into()
            ),
            (
                &"/dev/dri/renderD129".into(),
                &"drm:0000:03:00.0".into(),
                &2.into()
            ),
        ],
        "{survey}"
    );
    for device in drm {
        assert_eq!(device["holders"][0]["pid"], other.id());
        assert_eq!(device["holders"][0]["guarded"], false);
        // Its engine time never grew: 0 when measured against an earlier
        // reading of 50 ms to 2 s before (the previous survey's), -1 when
        // there was none (a reading never waits for a second sample under
        // the lock).
        assert!(device["load"] == 0 || device["load"] == -1, "{survey}");
    }
    // One entry per codec node: the program holds the second only.
    let v4l2 = entries(&survey, "v4l2");
    let nodes: Vec<_> = v4l2
        .iter()
        .map(|d| (&d["device"], &d["budget"], &d["sessions"]))
        .collect();
    assert_eq!(
        nodes,
        [
            (
                &"/dev/video10".into(),
                &"v4l2:/dev/video10".into(),
                &0.into()
            ),
            (
                &"/dev/video11".into(),
                &"v4l2:/dev/video11".into(),
                &1.into()
            ),
        ],
        "{survey}"
    );

    let nvml: Vec<_> = survey["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source"] == "nvml")
        .collect();
    assert_eq!(nvml.len(), 2, "{survey}");
    let (nvenc, nvdec) = (nvml[0], nvml[1]);
    assert_eq!(
        (&nvenc["device"], &nvenc["load"]),
        (&"nvenc".into(), &35.into())
    );
    assert_eq!(nvenc["sessions"], 1, "{survey}");
    assert_eq!(nvenc["holders"][0]["pid"], other.id());
    assert_eq!(nvenc["holders"][0]["guarded"], false);
    // NVDEC has no session cap: only its load is counted.
    assert_eq!(
        (&nvdec["device"], &nvdec["load"]),
        (&"nvdec".into(), &10.into())
    );
    assert_eq!(nvdec["sessions"], 0, "{survey}");
    std::fs::remove_dir_all(&dir).unwrap();
}
