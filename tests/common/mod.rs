// SPDX-License-Identifier: MPL-2.0
//! Helpers shared by the integration tests. Nothing here ships in the plugin.

#![allow(dead_code)]

pub mod counting_allocator;
pub mod fake_mpp;
pub mod fake_mpp_core;
pub mod fake_mpp_dec;
pub mod fake_nvml;
pub mod fixed_pool_src;
pub mod log_hold;
pub mod seqnums;
pub mod stream_order;
pub mod vpu;

// The examples' own measuring helpers, shared rather than copied.
#[path = "../../examples/media/mod.rs"]
pub mod media;
#[allow(unused_imports)] // not every test binary measures arrivals
pub use media::{Arrival, record_arrivals};

use gst::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// Initializes GStreamer, registers the plugin statically and the test doubles, once.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initializes");
        gstedgeguard::plugin_register_static().expect("edgeguard registers");
        fake_mpp::register();
        fake_mpp_dec::register();
        fake_nvml::register();
    });
}

/// A fresh directory under the system temp dir, unique to this test and process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeguard-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Where the debug cdylib is, for programs that load the plugin as users do
/// (through GST_PLUGIN_PATH).
pub fn plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libgstedgeguard.so").exists(),
        "{} is missing: `cargo build --lib` first (make test does)",
        dir.join("libgstedgeguard.so").display()
    );
    dir
}

/// Calls `done` every millisecond until it says yes (true) or `timeout`
/// passes (false): for state that another thread changes.
pub fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// What the bus said while a pipeline ran.
#[derive(Debug, Default)]
pub struct BusLog {
    pub element_messages: Vec<gst::Structure>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub eos: bool,
}

impl BusLog {
    pub fn named(&self, name: &str) -> Vec<&gst::Structure> {
        self.element_messages
            .iter()
            .filter(|s| s.name() == name)
            .collect()
    }
}

/// Collects bus messages until EOS, an ERROR, `until` says stop, or `timeout`.
pub fn collect_bus(
    pipeline: &gst::Pipeline,
    timeout: Duration,
    mut until: impl FnMut(&BusLog) -> bool,
) -> BusLog {
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + timeout;
    let mut log = BusLog::default();
    while Instant::now() < deadline && !until(&log) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(..) => {
                log.eos = true;
                break;
            }
            gst::MessageView::Error(e) => {
                log.errors.push(format!(
                    "{}: {} ({})",
                    msg.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default(),
                    e.error(),
                    e.debug().unwrap_or_default()
                ));
                break;
            }
            gst::MessageView::Warning(w) => log.warnings.push(format!(
                "{}: {} ({})",
                msg.src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default(),
                w.error(),
                w.debug().unwrap_or_default()
            )),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure() {
                    log.element_messages.push(s.to_owned());
                }
            }
            _ => (),
        }
    }
    log
}

/// A pipeline from a gst-launch description (GStreamer initialized first).
pub fn launch(description: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// The pipeline's running time now (0 before it has a clock).
pub fn running_time(pipeline: &gst::Pipeline) -> gst::ClockTime {
    pipeline
        .current_running_time()
        .unwrap_or(gst::ClockTime::ZERO)
}

/// Waits until the pipeline's running time reaches `t`; panics after `timeout`.
pub fn wait_for_running_time(pipeline: &gst::Pipeline, t: gst::ClockTime, timeout: Duration) {
    assert!(
        poll_until(timeout, || running_time(pipeline) >= t),
        "running time {t} never came"
    );
}

/// Runs a gst-launch description to EOS (or error), then back to NULL.
pub fn run_to_eos(description: &str, timeout: Duration) -> BusLog {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    run_pipeline_to_eos(&pipeline, timeout)
}

/// What each state change made by `set_state_when_added` returned.
pub type BinStateChanges = Arc<Mutex<Vec<Result<gst::StateChangeSuccess, gst::StateChangeError>>>>;

/// Sets the bin that an element of `factory` enters to `state`, in the
/// thread adding it, at once: an application's state change racing a chain
/// that a streaming thread is building in that bin, at its worst moment.
pub fn set_state_when_added(
    pipeline: &gst::Pipeline,
    factory: &'static str,
    state: gst::State,
) -> BinStateChanges {
    let changes = BinStateChanges::default();
    let record = changes.clone();
    pipeline.connect_deep_element_added(move |_, bin, element| {
        if element.factory().is_some_and(|f| f.name() == factory) {
            record.lock().unwrap().push(bin.set_state(state));
        }
    });
    changes
}

/// Plays a pipeline in NULL to EOS or error, then sets it to NULL.
pub fn run_pipeline_to_eos(pipeline: &gst::Pipeline, timeout: Duration) -> BusLog {
    // A failed state change shows up as an ERROR message on the bus.
    let _ = pipeline.set_state(gst::State::Playing);
    let log = collect_bus(pipeline, timeout, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    log
}

/// The codec and decoded frame count of a file's first video stream, by ffprobe.
pub fn probe_video(path: &Path) -> (String, u64) {
    let stream = media::probe_video(path).expect("ffprobe runs (make deps installs ffmpeg)");
    (stream.codec, stream.frames)
}

/// A fakesink, synchronised to the clock or not; `prerolls` false
/// (async=false) for a branch that joins a playing pipeline or may never
/// get a buffer, so the pipeline's state change does not wait for it.
pub fn fakesink(sync: bool, prerolls: bool) -> gst::Element {
    gst::ElementFactory::make("fakesink")
        .property("sync", sync)
        .property("async", prerolls)
        .build()
        .unwrap()
}

/// Records the pts of every buffer reaching `sink`, prerolled ones included
/// (`record_arrivals` needs the clock, which a non-live pipeline gives only
/// in PLAYING).
pub fn record_pts(sink: &gst::Element) -> Arc<Mutex<Vec<gst::ClockTime>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                s.lock().unwrap().push(pts);
            }
            gst::PadProbeReturn::Ok
        });
    seen
}

/// Sets `caps` on the capsfilter `filter` when the buffer with offset `at`
/// reaches it: a resolution change mid-stream, from the streaming thread.
pub fn change_caps_at(filter: &gst::Element, at: u64, caps: gst::Caps) {
    filter
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if info.buffer().map(|b| b.offset()) == Some(at) {
                pad.parent_element().unwrap().set_property("caps", &caps);
            }
            gst::PadProbeReturn::Ok
        });
}

/// The widths of the CAPS events leaving `pad`, repeats removed by the caller.
pub fn caps_widths(pad: &gst::Pad) -> Arc<Mutex<Vec<i32>>> {
    let widths = Arc::new(Mutex::new(Vec::new()));
    let w = widths.clone();
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::EventView::Caps(caps)) = info.event().map(|e| e.view()) {
            let s = caps.caps().structure(0).unwrap();
            w.lock().unwrap().push(s.get::<i32>("width").unwrap());
        }
        gst::PadProbeReturn::Ok
    });
    widths
}

/// Raw I420 caps of the given size at 30 fps.
pub fn i420(width: i32, height: i32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", width)
        .field("height", height)
        .field("framerate", gst::Fraction::new(30, 1))
        .build()
}

/// An H.264 file (Matroska) of `frames` 320x240 frames at 30 fps with a
/// keyframe every `gop` frames, made once per process.
pub fn h264_file(frames: u32, gop: u32) -> PathBuf {
    static MADE: Mutex<Vec<(u32, u32, PathBuf)>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap();
    if let Some((_, _, path)) = made.iter().find(|(f, g, _)| (*f, *g) == (frames, gop)) {
        return path.clone();
    }
    init();
    let path = temp_dir(&format!("h264-{frames}-{gop}")).join("stream.mkv");
    let log = run_to_eos(
        &format!(
            "videotestsrc num-buffers={frames} pattern=ball ! \
             video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
             x264enc key-int-max={gop} bframes=0 speed-preset=ultrafast ! h264parse ! \
             matroskamux ! filesink location={}",
            path.display()
        ),
        Duration::from_secs(60),
    );
    assert!(log.eos && log.errors.is_empty(), "{:?}", log.errors);
    made.push((frames, gop, path.clone()));
    path
}

/// Decodes `file` (from `h264_file`) through `decoder` (a launch fragment)
/// into a fakesink named `out`.
pub fn decode_pipeline(file: &Path, decoder: &str) -> String {
    format!(
        "filesrc location={} ! matroskademux ! h264parse ! {decoder} ! fakesink name=out",
        file.display()
    )
}

/// This test binary run again as a child process, running only its test
/// `child_process_entry` (which does nothing unless the caller's environment
/// variables say what the child is for).
pub fn child_process() -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}
