// SPDX-License-Identifier: MPL-2.0
//! Runs the example programs the way a user would, and checks what they print
//! against what they did (files decoded with ffprobe).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// An example binary, built by `cargo test` next to the test binaries.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: a plain `cargo test` builds the examples (`--test examples` alone does not)",
        path.display()
    );
    path
}

fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(example(name)).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn line<'a>(output: &'a str, start: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with '{start}' in:\n{output}"))
}

fn probe(path: &Path) -> (String, u64) {
    common::probe_video(path)
}

#[test]
fn demo_rig_records_delays_and_reports() {
    let dir = common::temp_dir("rig");
    let output = run(
        "rig",
        &[
            "--seconds",
            "2",
            "--delay",
            "1",
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    // Without a VPU both guards fall back to x264enc, and say why.
    assert!(line(&output, "recording").contains("x264enc (software), reason: no-hw-encoder"));
    assert!(line(&output, "preview").contains("x264enc (software), reason: no-hw-encoder"));
    assert!(output.contains("no mpph265enc on this machine"));
    // The display branch ran 1 s behind the live one.
    assert!(
        line(&output, "display:").contains("median 1.000 s"),
        "{output}"
    );
    assert!(line(&output, "leakcheck:").contains("0 finding(s) after 1 cycle(s)"));
    // The run ends with an application EOS after 2 s: every branch got every
    // frame up to it. The display line says how many frames the delayed
    // branch rendered ("K of N frames within ..."); both files hold as many.
    let display = line(&output, "display:");
    let shown: u64 = display
        .split(" of ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no frame count in: {display}"));
    assert!(shown > 0, "{display}");
    // The files it names exist and decode as it says.
    assert_eq!(probe(&dir.join("recording.mkv")), ("h264".into(), shown));
    assert_eq!(probe(&dir.join("preview.mkv")), ("h264".into(), shown));
    assert!(line(&output, "recording").contains("x264enc"));
    assert!(output.contains(&format!(
        "{} (h264 1280x720, {shown} frames)",
        dir.join("recording.mkv").display()
    )));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("leaks.json")).unwrap()).unwrap();
    assert_eq!(report["leaks"], 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_rig_with_a_simulated_vpu_shows_the_budget() {
    let dir = common::temp_dir("rig-vpu");
    let output = run(
        "rig",
        &[
            "--seconds",
            "2",
            "--delay",
            "1",
            "--simulate-vpu",
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    let encoders: Vec<&str> = ["recording", "preview"]
        .iter()
        .map(|name| line(&output, name))
        .collect();
    // A budget of one: exactly one guard got the "hardware", the other fell back.
    let hw: Vec<_> = encoders
        .iter()
        .filter(|l| l.contains("x265enc (hardware), reason: budget"))
        .collect();
    let sw: Vec<_> = encoders
        .iter()
        .filter(|l| l.contains("x264enc (software), reason: over-budget"))
        .collect();
    assert_eq!((hw.len(), sw.len()), (1, 1), "{output}");
    let hw_file = if hw[0].contains("recording") {
        "recording.mkv"
    } else {
        "preview.mkv"
    };
    assert_eq!(probe(&dir.join(hw_file)).0, "hevc");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn replay_example_records_every_frame_late() {
    let dir = common::temp_dir("replay");
    let out = dir.join("replay.mkv");
    let output = run(
        "replay",
        &[
            "--seconds",
            "2",
            "--delay",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        line(&output, "replay: 60 frames in, 60 out, 0 dropped")
            .contains("1 s at 30 fps is 30 frames"),
        "{output}"
    );
    // It held about a second of frames at some point.
    let peak: u32 = output
        .split("at most ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!((20..=32).contains(&peak), "{output}");
    assert_eq!(probe(&out), ("h264".into(), 60));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn per_client_example_shows_wrong_and_right_teardown() {
    let output = run("per_client", &[]);
    assert!(
        line(&output, "wrong teardown:").contains("3 finding(s)"),
        "{output}"
    );
    for kind in ["removed-above-null", "still-alive", "device-handle"] {
        assert!(line(&output, kind).contains(if kind == "device-handle" {
            "/dev/zero"
        } else {
            "GstFileSrc:device"
        }));
    }
    assert!(
        line(&output, "right teardown:").contains("0 finding(s)"),
        "{output}"
    );
}

#[test]
fn four_camera_example_stays_on_budget() {
    let output = run("four_cameras", &["--max-sessions", "2"]);
    assert!(
        line(&output, "2 of 4 cameras on the VPU").contains("(budget 2)"),
        "{output}"
    );
    let hw = output
        .lines()
        .filter(|l| l.contains("x265enc (hardware)"))
        .count();
    let sw = output
        .lines()
        .filter(|l| l.contains("x264enc (software), reason over-budget"))
        .count();
    assert_eq!((hw, sw), (2, 2), "{output}");
}

#[test]
fn python_example_uses_all_three_elements() {
    let plugin_dir = example("rig")
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = common::temp_dir("python");
    let out = dir.join("all_three.mkv");
    let registry = dir.join("registry.bin");
    let result = Command::new("/usr/bin/python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/all_three.py"))
        .arg(&out)
        .env("GST_PLUGIN_PATH", &plugin_dir)
        .env("GST_REGISTRY", &registry)
        .output()
        .expect("/usr/bin/python3 runs (make deps installs python3-gi and python3-gst-1.0)");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        line(&stdout, "vpuguardenc:").contains("x264enc (hardware=False, reason=no-hw-encoder)")
    );
    assert!(line(&stdout, "delaybuffer:").contains("received=60 pushed=60 dropped=0"));
    assert!(line(&stdout, "leakcheck:").contains("0 finding(s) after 1 cycle(s)"));
    assert_eq!(probe(&out), ("h264".into(), 60));
    std::fs::remove_dir_all(&dir).unwrap();
}
