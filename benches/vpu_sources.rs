// SPDX-License-Identifier: MPL-2.0
//! The budget sources' cost, for docs/vpu-budget.md:
//! (a) decision latency per source: what a guard does for a decision (take
//!     the decision lock, read the slots, read the source or reuse its
//!     snapshot in the lock directory, count), 1000 decisions in a row, for
//!     `mpp`, `drm`, `v4l2`, `jetson`, `nvml` (the tests' fake libnvidia-ml)
//!     and `slots`, each under a fake root (`EDGEGUARD_ROOT`) in a child
//!     process of its own. Decisions that find the snapshot fresh are the
//!     median (target < 100 us); the few that read the source (every
//!     200 ms) show in the maximum;
//! (b) one fdinfo scan of this machine's real `/proc` (what the `drm` source
//!     does once per reading, under the decision lock): every process's fd
//!     links, and the fdinfo of those into `/dev/dri/`, 20 readings through
//!     fresh lock directories, printed.
//!
//! Run with `make bench` (or `cargo bench --bench vpu_sources`).

#[path = "common/mod.rs"]
mod bench;
#[path = "../tests/common/mod.rs"]
mod common;

use gstedgeguard::vpu::budget::{self, BudgetSettings, Held, Patience};
use gstedgeguard::vpu::budget_source::BudgetSource;
use gstedgeguard::vpu::drm::DrmSource;
use gstedgeguard::vpu::source::SessionSource;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DECISIONS: usize = 1000;
const SCANS: usize = 20;
const SOURCE_ENV: &str = "EDGEGUARD_BENCH_SOURCE";
const DIR_ENV: &str = "EDGEGUARD_BENCH_DIR";

/// Each source: its name, the hardware child's factory it decides for.
const SOURCES: [(&str, &str); 6] = [
    ("mpp", "mpph265enc"),
    ("drm", "vah265enc"),
    ("v4l2", "v4l2h264enc"),
    ("jetson", "nvv4l2h265enc"),
    ("nvml", "nvh264enc"),
    ("slots", "x265enc"),
];

fn write(root: &Path, path: &str, text: &str) {
    let file = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, text).unwrap();
}

/// Process `pid` of the fake root holds `target` on fd `fd`.
fn hold(root: &Path, pid: u32, fd: u32, target: &str) {
    let dir = root.join(format!("proc/{pid}/fd"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(target, dir.join(fd.to_string())).unwrap();
}

/// A fake machine with something for every source to read: 4 MPP sessions
/// and core loads, 4 i915 clients, 4 holders of a V4L2 codec and of the
/// Jetson encoder, 2 GPUs with 4 NVENC sessions (the fake NVML's state).
fn fake_machine(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    let sample = include_str!("../tests/data/sessions-summary.sample");
    write(&root, "/proc/mpp_service/sessions-summary", sample);
    write(
        &root,
        "/proc/mpp_service/load",
        "fdbd0000.rkvenc-core      load:  45.00% utilization:  40.00%\n\
         fdbe0000.rkvenc-core      load:  12.00% utilization:  10.00%\n",
    );
    write(&root, "/sys/class/video4linux/video10/name", "hantro-vpu\n");
    write(&root, "/dev/v4l2-nvenc", "");
    write(&root, "/dev/v4l2-nvdec", "");
    for i in 0..4 {
        let pid = 7000 + i;
        hold(&root, pid, 5, "/dev/dri/renderD128");
        write(
            &root,
            &format!("/proc/{pid}/fdinfo/5"),
            &format!(
                "drm-driver:\ti915\ndrm-client-id:\t{pid}\ndrm-pdev:\t0000:00:02.0\n\
                 drm-engine-video:\t{} ns\n",
                1_000_000 * (u64::from(i) + 1)
            ),
        );
        hold(&root, 8000 + i, 3, "/dev/video10");
        hold(&root, 9000 + i, 3, "/dev/v4l2-nvenc");
    }
    let state = dir.join("nvml-state");
    std::fs::write(
        &state,
        "gpu encoder=20 decoder=0\nsession pid=4000 id=1\nsession pid=4001 id=2\n\
         gpu encoder=30 decoder=0\nsession pid=4002 id=3\nsession pid=4003 id=4\n",
    )
    .unwrap();
    root
}

/// In a child: DECISIONS decisions of `source` for `factory`, in us.
fn decide_in_child(source: &str, factory: &str, dir: &Path) -> Vec<f64> {
    // Sources look the hardware child's factory up to find its device.
    gst::init().unwrap();
    let budget_source = match source {
        "mpp" => BudgetSource::Mpp,
        "drm" => BudgetSource::Drm,
        "v4l2" => BudgetSource::V4l2,
        "jetson" => BudgetSource::Jetson,
        "nvml" => BudgetSource::Nvml,
        _ => BudgetSource::Slots,
    };
    let settings = BudgetSettings {
        lock_dir: dir.join(format!("lock-{source}")).display().to_string(),
        source: budget_source,
        max_sessions: 64,
        ..Default::default()
    };
    let mut latencies = Vec::with_capacity(DECISIONS);
    for _ in 0..DECISIONS {
        let start = Instant::now();
        let count = budget::count(&settings, factory, Patience::LockTimeout, || false).unwrap();
        assert!(count.warning.is_none(), "{source}: {:?}", count.warning);
        std::hint::black_box(&count.view);
        drop(count);
        latencies.push(start.elapsed().as_secs_f64() * 1e6);
    }
    latencies
}

/// (a) for one source, in a child process under the fake root.
fn decision_latency(source: &str, dir: &Path, root: &Path) -> Vec<f64> {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(SOURCE_ENV, source)
        .env(DIR_ENV, dir)
        .env("EDGEGUARD_ROOT", root)
        .env("EDGEGUARD_NVML_LIBRARY", common::fake_nvml::library())
        .env(common::fake_nvml::STATE_ENV, dir.join("nvml-state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{source}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut values: Vec<f64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("{source} printed no RESULT line"))
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values
}

/// (b) SCANS scans of the machine's real /proc, each through a fresh lock
/// directory (no snapshot): a reading is one scan.
fn real_proc_scans(dir: &Path) -> Vec<Duration> {
    let source = DrmSource::new(PathBuf::from("/"));
    let mut scans = Vec::with_capacity(SCANS);
    for i in 0..SCANS {
        let held = Held::lock(&dir.join(format!("scan-lock-{i}"))).unwrap();
        let start = Instant::now();
        // A machine with no readable DRM client still scans every process.
        let _ = std::hint::black_box(source.read(&held));
        scans.push(start.elapsed());
    }
    scans.sort();
    scans
}

fn main() {
    if let (Ok(source), Ok(dir)) = (std::env::var(SOURCE_ENV), std::env::var(DIR_ENV)) {
        let factory = SOURCES.iter().find(|(s, _)| *s == source).unwrap().1;
        bench::report(&decide_in_child(&source, factory, Path::new(&dir)));
        return;
    }
    let dir = std::env::temp_dir().join(format!("edgeguard-bench-sources-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = fake_machine(&dir);
    println!("vpu sources (a) decision latency per source, {DECISIONS} decisions (us):");
    let mut medians = Vec::new();
    for (source, factory) in SOURCES {
        let l = decision_latency(source, &dir, &root);
        let p = |q: f64| l[((l.len() - 1) as f64 * q) as usize];
        println!(
            "  {source:<7} ({factory:<13}) median {:7.1}  p99 {:9.1}  max {:9.1}   (target median < 100)",
            p(0.5),
            p(0.99),
            p(1.0)
        );
        medians.push((source, p(0.5)));
    }
    let scans = real_proc_scans(&dir);
    let processes = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "vpu sources (b) one fdinfo scan of this machine's /proc ({processes} processes), {SCANS} scans: \
         median {:.2} ms  max {:.2} ms",
        ms(scans[scans.len() / 2]),
        ms(scans[scans.len() - 1])
    );
    for (source, median) in medians {
        println!("RATIO|vpu-sources|decision latency median, {source} (us)|{median:.1}|< 100");
    }
    println!(
        "RATIO|vpu-sources|one fdinfo scan of /proc, {processes} processes (ms)|{:.2}|ms, printed",
        ms(scans[scans.len() / 2])
    );
    let _ = std::fs::remove_dir_all(&dir);
}
