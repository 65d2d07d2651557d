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
    // The files it names exist and decode as it says.
    assert_eq!(probe(&dir.join("recording.mkv")), ("h264".into(), 60));
    assert_eq!(probe(&dir.join("preview.mkv")), ("h264".into(), 60));
    assert!(line(&output, "recording").contains("x264enc"));
    assert!(output.contains(&format!(
        "{} (h264 1280x720, 60 frames)",
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
