// SPDX-License-Identifier: MPL-2.0
//! Helpers shared by the integration tests. Nothing here ships in the plugin.

#![allow(dead_code)]

pub mod counting_allocator;
pub mod fake_mpp;

use gst::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Initializes GStreamer, registers the plugin statically and the test doubles, once.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initializes");
        gstedgeguard::plugin_register_static().expect("edgeguard registers");
        fake_mpp::register();
    });
}

/// A fresh directory under the system temp dir, unique to this test and process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeguard-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

/// Runs a gst-launch description to EOS (or error), then back to NULL.
pub fn run_to_eos(description: &str, timeout: Duration) -> BusLog {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    // A failed state change shows up as an ERROR message on the bus.
    let _ = pipeline.set_state(gst::State::Playing);
    let log = collect_bus(&pipeline, timeout, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    log
}

/// The codec and decoded frame count of a file's first video stream, by ffprobe.
pub fn probe_video(path: &Path) -> (String, u64) {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs (make deps installs ffmpeg)");
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut fields = text.trim().split(',');
    let codec = fields.next().unwrap_or_default().to_string();
    let frames = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    (codec, frames)
}
