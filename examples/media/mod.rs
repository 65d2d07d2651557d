// SPDX-License-Identifier: MPL-2.0
//! Measuring what a pipeline delivered, for the examples and the tests alike:
//! when each frame reached a sink, and what a written file holds. Copy it
//! with the example that uses it.

// Each user takes what it needs: the rig reads no `due`.
#![allow(dead_code)]

use gst::prelude::*;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What a sync sink saw of one frame: its pts, the running time it is due at
/// (from the segment, so upstream pad offsets count) and the clock's running
/// time when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub pts: gst::ClockTime,
    pub due: gst::ClockTime,
    pub arrived: gst::ClockTime,
}

/// Records an `Arrival` for every buffer reaching `sink`.
pub fn record_arrivals(sink: &gst::Element) -> Arc<Mutex<Vec<Arrival>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(buffer) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let segment = pad.sticky_event::<gst::event::Segment>(0).unwrap();
            let segment = segment.segment().downcast_ref::<gst::ClockTime>().unwrap();
            let pts = buffer.pts().unwrap();
            // The element from the pad, not captured: a probe holding its own
            // element is a reference cycle that keeps the pipeline alive.
            let element = pad.parent_element().unwrap();
            let arrived = element.clock().unwrap().time() - element.base_time().unwrap();
            s.lock().unwrap().push(Arrival {
                pts,
                due: segment.to_running_time(pts).unwrap(),
                arrived,
            });
            gst::PadProbeReturn::Ok
        });
    seen
}

/// A file's first video stream as ffprobe decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoStream {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
}

/// Decodes the file's first video stream with ffprobe (frames counted).
pub fn probe_video(path: &Path) -> Result<VideoStream, String> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .map_err(|e| format!("ffprobe: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ffprobe failed on {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.trim().split(',').collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
    Ok(VideoStream {
        codec: fields.first().unwrap_or(&"").to_string(),
        width: number(1) as u32,
        height: number(2) as u32,
        frames: number(3),
    })
}
