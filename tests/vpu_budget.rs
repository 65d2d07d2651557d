// SPDX-License-Identifier: MPL-2.0
//! The VPU budget that encoders and decoders share, across real processes:
//! the rig it is built for, and the rule that all guards of a machine read
//! the kernel listing at most five times a second.

mod common;

use common::fake_mpp::{self, FACTORY_NAME as FAKE_ENC};
use common::vpu::Vpu;
use gst::prelude::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD_ROLE: &str = "EDGEGUARD_BUDGET_CHILD";
const VPU_DIR: &str = "EDGEGUARD_BUDGET_VPU";
const TIMEOUT: Duration = Duration::from_secs(120);
const FRAMES: u32 = 300;

/// The two tests below load the machine with several processes each; the
/// rate test times opens, so they take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The entry point of the child processes (this test binary, run again with
/// CHILD_ROLE set): they print what they decided, wait for the parent's word
/// on stdin, then go on.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    common::init();
    let vpu = Vpu::at(PathBuf::from(std::env::var(VPU_DIR).unwrap()));
    match role.as_str() {
        "rig" => rig_child(&vpu),
        "reclaim" => reclaim_child(&vpu),
        other => panic!("unknown role {other}"),
    }
}

/// Sends the launch line through PAUSED, so that its guards decide and hold
/// what they chose; a sink named `out` counts what reaches it from the start.
fn preroll(description: &str) -> (gst::Pipeline, Option<Arc<Mutex<Vec<gst::ClockTime>>>>) {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let decoded = pipeline
        .by_name("out")
        .map(|sink| common::record_pts(&sink));
    pipeline.set_state(gst::State::Paused).unwrap();
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(60));
    result.unwrap();
    (pipeline, decoded)
}

fn hardware_guards(pipeline: &gst::Pipeline) -> (usize, usize) {
    let guards: Vec<_> = pipeline
        .iterate_elements()
        .into_iter()
        .flatten()
        .filter(|e| {
            e.factory()
                .is_some_and(|f| f.name().starts_with("vpuguard"))
        })
        .collect();
    let hw = guards
        .iter()
        .filter(|g| g.property::<bool>("hardware"))
        .count();
    (hw, guards.len() - hw)
}

fn wait_for_parent() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// Two cameras, each a recording and a preview encoder behind a tee, and a
/// mixer decode of an H.264 file: six guards.
fn rig_child(vpu: &Vpu) {
    let file = common::h264_file(FRAMES, 30);
    let encoder = |name: &str| {
        vpu.guard_on(
            FAKE_ENC,
            "",
            &format!(
                "name={name} max-sessions=8 sw-properties=\"props,speed-preset=ultrafast,tune=zerolatency\""
            ),
        )
    };
    let mut pipelines = Vec::new();
    for camera in 0..2 {
        // Cameras start further apart than the listing snapshot lives: the
        // guards see the sessions of each other's children in the listing,
        // and must count each once, through its slot.
        vpu.expire_snapshot();
        pipelines.push(preroll(&format!(
            "videotestsrc num-buffers={FRAMES} ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
             tee name=t t. ! queue ! {} ! fakesink t. ! queue ! {} ! fakesink",
            encoder(&format!("record{camera}")),
            encoder(&format!("preview{camera}"))
        )));
        vpu.expire_snapshot();
        pipelines.push(preroll(&common::decode_pipeline(
            &file,
            &vpu.decoder_guard("", &format!("name=mix{camera} max-sessions=8")),
        )));
    }
    let (pipelines, decoded): (Vec<_>, Vec<_>) = pipelines.into_iter().unzip();
    let decoded: Vec<_> = decoded.into_iter().flatten().collect();
    let (hw, sw) = pipelines
        .iter()
        .map(hardware_guards)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    println!("RESULT hw={hw} sw={sw}");
    std::io::stdout().flush().unwrap();
    wait_for_parent();
    for pipeline in &pipelines {
        pipeline.set_state(gst::State::Playing).unwrap();
    }
    let mut eos = 0;
    for pipeline in &pipelines {
        let log = common::collect_bus(pipeline, TIMEOUT, |_| false);
        assert!(log.errors.is_empty(), "{:?}", log.errors);
        eos += usize::from(log.eos);
        pipeline.set_state(gst::State::Null).unwrap();
    }
    let frames: Vec<String> = decoded
        .iter()
        .map(|pts| pts.lock().unwrap().len().to_string())
        .collect();
    println!("DONE eos={eos} frames={}", frames.join(","));
}

/// Two live encoders and two live decoders on software, reclaiming every
/// 100 ms against a full listing.
fn reclaim_child(vpu: &Vpu) {
    let reclaim = "max-sessions=8 reclaim-interval=100000000";
    let live =
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=64,height=48,framerate=30/1";
    let mut pipelines = Vec::new();
    for _ in 0..2 {
        pipelines.push(preroll(&format!(
            "{live} ! {} ! fakesink",
            vpu.guard_on(
                FAKE_ENC,
                "",
                &format!(
                    "{reclaim} sw-properties=\"props,speed-preset=ultrafast,tune=zerolatency\""
                )
            )
        )));
        pipelines.push(preroll(&format!(
            "{live} ! x264enc speed-preset=ultrafast tune=zerolatency key-int-max=30 ! h264parse ! {} ! fakesink",
            vpu.decoder_guard("", reclaim)
        )));
    }
    let pipelines: Vec<_> = pipelines.into_iter().map(|(p, _)| p).collect();
    for pipeline in &pipelines {
        pipeline.set_state(gst::State::Playing).unwrap();
    }
    let (hw, sw) = pipelines
        .iter()
        .map(hardware_guards)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    println!("RESULT hw={hw} sw={sw}");
    std::io::stdout().flush().unwrap();
    wait_for_parent();
    for pipeline in &pipelines {
        pipeline.set_state(gst::State::Null).unwrap();
    }
    println!("DONE eos=0 frames=");
}

struct Child {
    process: std::process::Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Child {
    fn spawn(role: &str, vpu: &Vpu) -> Self {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ROLE, role)
            .env(VPU_DIR, &vpu.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(process.stdout.take().unwrap());
        Child { process, stdout }
    }

    /// The numbers of the child's next `prefix` line, as `key=value` pairs.
    fn line(&mut self, prefix: &str) -> Vec<(String, String)> {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "child exited before its {prefix} line"
            );
            // The test harness prints its own text on the same line first.
            if let Some((_, rest)) = line.trim().split_once(&format!("{prefix} ")) {
                return rest
                    .split(' ')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
            }
        }
    }

    /// (hardware, software) guards.
    fn result(&mut self) -> (usize, usize) {
        let fields = self.line("RESULT");
        (fields[0].1.parse().unwrap(), fields[1].1.parse().unwrap())
    }

    fn go(&mut self) {
        writeln!(self.process.stdin.as_mut().unwrap()).unwrap();
    }

    /// Pipelines at EOS and frames decoded per decoder.
    fn done(mut self) -> (usize, Vec<usize>) {
        let fields = self.line("DONE");
        drop(self.process.stdin.take());
        assert!(self.process.wait().unwrap().success());
        let frames = fields[1]
            .1
            .split(',')
            .filter(|f| !f.is_empty())
            .map(|f| f.parse().unwrap())
            .collect();
        (fields[0].1.parse().unwrap(), frames)
    }
}

#[test]
fn two_processes_of_the_rig_share_eight_sessions_between_encoders_and_decoders() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    common::init();
    let vpu = Vpu::new("rig", "");
    // Made before the children race to make it.
    common::h264_file(FRAMES, 30);
    let mut children: Vec<Child> = (0..2).map(|_| Child::spawn("rig", &vpu)).collect();
    let results: Vec<_> = children.iter_mut().map(Child::result).collect();
    let hw: usize = results.iter().map(|r| r.0).sum();
    let all: usize = results.iter().map(|r| r.0 + r.1).sum();
    assert_eq!(all, 12, "{results:?}");
    assert_eq!(hw, 8, "{results:?}");
    assert_eq!(vpu.sessions(), 8);
    for child in &mut children {
        child.go();
    }
    for child in children {
        let (eos, frames) = child.done();
        assert_eq!(eos, 4, "every pipeline reaches EOS");
        assert_eq!(frames, vec![FRAMES as usize; 2], "every frame decoded");
    }
    assert!(vpu.peak() <= 8, "the listing held {} sessions", vpu.peak());
    assert_eq!(vpu.sessions(), 0);
    vpu.remove();
}

/// Timestamps of every open of `path`, watched with inotify from a thread of
/// its own until `stop` is set.
fn watch_opens(
    path: &Path,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Instant>> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: plain syscalls on an fd this function owns.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    assert!(fd >= 0);
    let wd = unsafe { libc::inotify_add_watch(fd, c_path.as_ptr(), libc::IN_OPEN) };
    assert!(wd >= 0);
    std::thread::spawn(move || {
        let mut opens = Vec::new();
        let mut buf = [0u8; 4096];
        let event_size = std::mem::size_of::<libc::inotify_event>();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: pfd is valid for the call.
            if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
                continue;
            }
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            let now = Instant::now();
            let mut offset = 0;
            while n > 0 && offset + event_size <= n as usize {
                // SAFETY: the kernel wrote whole events into buf.
                let event: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf.as_ptr().add(offset).cast()) };
                if event.mask & libc::IN_OPEN != 0 {
                    opens.push(now);
                }
                offset += event_size + event.len as usize;
            }
        }
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        opens
    })
}

#[test]
fn sixteen_guards_in_four_processes_read_the_kernel_listing_at_most_five_times_a_second() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    common::init();
    // Eight sessions of other programs: every guard stays on software and
    // checks again every 100 ms.
    let listing: String = (0..8)
        .map(|i| fake_mpp::record(9000 + i, u64::from(i) + 1, 1920, 1080, 30, 4_000_000))
        .collect();
    let vpu = Vpu::new("listing-rate", &listing);
    let mut children: Vec<Child> = (0..4).map(|_| Child::spawn("reclaim", &vpu)).collect();
    let results: Vec<_> = children.iter_mut().map(Child::result).collect();
    assert_eq!(results, vec![(0, 4); 4]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_opens(&vpu.session_file, stop.clone());
    // Long enough for 16 guards x 10 checks a second to show.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let opens = watcher.join().unwrap();
    for child in &mut children {
        child.go();
    }
    for child in children {
        child.done();
    }
    // The guards did check (a snapshot expires every 200 ms)...
    assert!(opens.len() >= 5, "only {} opens in 3 s", opens.len());
    // ...but no second saw more than five opens.
    for (i, start) in opens.iter().enumerate() {
        let in_second = opens[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(
            in_second <= 5,
            "{in_second} opens within a second ({} in all)",
            opens.len()
        );
    }
    vpu.remove();
}
