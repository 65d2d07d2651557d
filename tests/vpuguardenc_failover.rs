// SPDX-License-Identifier: MPL-2.0
//! vpuguardenc changing encoders mid-stream: a hardware encoder failing on its
//! own thread with frames in flight (failover), and the hardware encoder taken
//! back when the VPU has room again (reclaim). Real x265enc/x264enc on the
//! software side, the MPP doubles of tests/common/fake_mpp.rs on the hardware
//! side, real matroskamux files checked with ffprobe.

mod common;

use common::fake_mpp::{self, FACTORY_NAME as FAKE_H265, H264_FACTORY_NAME as FAKE_H264};
use common::vpu::Vpu;
use gst::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);
const LIVE_SOURCE: &str = "videotestsrc name=source is-live=true ! \
     video/x-raw,format=I420,width=320,height=240,framerate=30/1";

/// Guards on a VPU of the test's own.
impl Vpu {
    /// Hardware slots held by guards right now.
    fn slots(&self) -> usize {
        self.slot_files().len()
    }

    fn guard(&self, double: &str, double_props: &str, extra: &str) -> String {
        self.guard_on(double, double_props, &format!("name=guard {extra}"))
    }
}

impl Drop for Vpu {
    fn drop(&mut self) {
        self.remove();
    }
}

/// One buffer as it left the guard for the muxer.
#[derive(Debug, Clone)]
struct Out {
    /// Running times: encoders may shift timestamps and segment together.
    pts: gst::ClockTime,
    dts: Option<gst::ClockTime>,
    keyframe: bool,
    nal_types: Vec<u8>,
}

/// A recording: the bus, what left the guard, and checks made the moment a
/// decision was posted (in the posting thread, before anything else moves).
struct Recording {
    log: common::BusLog,
    out: Vec<Out>,
    /// (reason, VPU sessions listed, guard slots held) at each decision.
    at_decisions: Vec<(String, usize, usize)>,
    /// Every CAPS event that left the guard.
    caps: Vec<gst::Caps>,
    /// The type of every downstream event that left the guard.
    events: Vec<gst::EventType>,
    switches: u32,
    /// The guard's `stats` at EOS.
    stats: gst::Structure,
    file: PathBuf,
}

/// Records `frames` live frames through `guard` into a matroska file.
fn record(vpu: &Vpu, guard: &str, frames: u32, codec: &'static str) -> Recording {
    record_with(vpu, guard, frames, codec, |_| {})
}

fn record_with(
    vpu: &Vpu,
    guard: &str,
    frames: u32,
    codec: &'static str,
    prepare: impl FnOnce(&gst::Pipeline),
) -> Recording {
    common::init();
    let file = vpu.dir.join("out.mkv");
    let pipeline = gst::parse::launch(&format!(
        "{LIVE_SOURCE} ! identity name=src-tap ! {guard} ! matroskamux ! filesink location={}",
        file.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline
        .by_name("source")
        .unwrap()
        .set_property("num-buffers", frames as i32);
    let guard = pipeline
        .iterate_recurse()
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.factory().is_some_and(|f| f.name() == "vpuguardenc"))
        .unwrap();
    let out = record_output(&guard, codec);
    let caps = Arc::new(Mutex::new(Vec::new()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let (c, e) = (caps.clone(), events.clone());
    guard.static_pad("src").unwrap().add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let Some(event) = info.event() else {
                return gst::PadProbeReturn::Ok;
            };
            e.lock().unwrap().push(event.type_());
            if let gst::EventView::Caps(event) = event.view() {
                c.lock().unwrap().push(event.caps_owned());
            }
            gst::PadProbeReturn::Ok
        },
    );
    let at_decisions = check_at_decisions(&pipeline, vpu);
    prepare(&pipeline);
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    let switches = guard.property::<u32>("switches");
    let stats = guard.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    let out = out.lock().unwrap().clone();
    let at_decisions = at_decisions.lock().unwrap().clone();
    let caps = caps.lock().unwrap().clone();
    let events = events.lock().unwrap().clone();
    Recording {
        log,
        out,
        at_decisions,
        caps,
        events,
        switches,
        stats,
        file,
    }
}

fn record_output(guard: &gst::Element, codec: &'static str) -> Arc<Mutex<Vec<Out>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    guard
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let Some(buffer) = info.buffer() {
                let caps = pad.current_caps().unwrap();
                let byte_stream =
                    caps.structure(0).unwrap().get::<&str>("stream-format") == Ok("byte-stream");
                let segment = pad.sticky_event::<gst::event::Segment>(0).unwrap();
                let segment = segment.segment().downcast_ref::<gst::ClockTime>().unwrap();
                let map = buffer.map_readable().unwrap();
                o.lock().unwrap().push(Out {
                    pts: segment.to_running_time(buffer.pts().unwrap()).unwrap(),
                    dts: buffer.dts().and_then(|dts| segment.to_running_time(dts)),
                    keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                    nal_types: nal_types(&map, codec, byte_stream),
                });
            }
            gst::PadProbeReturn::Ok
        });
    out
}

/// Whether the listing and the ledger already let go of the hardware when a
/// decision is posted (a sync handler runs in the posting thread).
fn check_at_decisions(
    pipeline: &gst::Pipeline,
    vpu: &Vpu,
) -> Arc<Mutex<Vec<(String, usize, usize)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let session_file = vpu.session_file.clone();
    let lock_dir = vpu.lock_dir();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let Some(d) = msg
            .structure()
            .filter(|s| s.name() == "vpuguardenc-decision")
        {
            let sessions =
                fake_mpp::count_records(&std::fs::read_to_string(&session_file).unwrap());
            let slots = std::fs::read_dir(&lock_dir)
                .map(|e| {
                    e.filter_map(Result::ok)
                        .filter(|e| e.file_name().to_string_lossy().starts_with("slot"))
                        .count()
                })
                .unwrap_or(0);
            s.lock()
                .unwrap()
                .push((d.get::<String>("reason").unwrap(), sessions, slots));
        }
        gst::BusSyncReply::Pass
    });
    seen
}

/// NAL unit types in an access unit, byte-stream or length-prefixed (hev1/avc3).
fn nal_types(data: &[u8], codec: &str, byte_stream: bool) -> Vec<u8> {
    let kind = |header: u8| match codec {
        "h265" => (header >> 1) & 0x3f,
        _ => header & 0x1f,
    };
    let mut types = Vec::new();
    if byte_stream {
        let mut i = 0;
        while i + 3 < data.len() {
            if data[i..].starts_with(&[0, 0, 1]) {
                types.push(kind(data[i + 3]));
                i += 3;
            } else {
                i += 1;
            }
        }
    } else {
        let mut i = 0;
        while i + 4 < data.len() {
            let len = u32::from_be_bytes(data[i..i + 4].try_into().unwrap()) as usize;
            types.push(kind(data[i + 4]));
            i += 4 + len;
        }
    }
    types
}

/// The fields of the decision messages, in order.
fn decisions(log: &common::BusLog) -> Vec<gst::Structure> {
    log.named("vpuguardenc-decision")
        .into_iter()
        .cloned()
        .collect()
}

/// Adds the decisions posted after `log` ended until one gives `reason`
/// (a hang fails by the test's timeout).
fn wait_for_reason(pipeline: &gst::Pipeline, log: &mut common::BusLog, reason: &str) {
    let bus = pipeline.bus().unwrap();
    while !reasons(log).iter().any(|(_, r)| r == reason) {
        let message = bus
            .timed_pop_filtered(gst::ClockTime::NONE, &[gst::MessageType::Element])
            .unwrap();
        if let Some(s) = message.structure() {
            log.element_messages.push(s.to_owned());
        }
    }
}

fn reasons(log: &common::BusLog) -> Vec<(String, String)> {
    decisions(log)
        .iter()
        .map(|d| (d.get("encoder").unwrap(), d.get("reason").unwrap()))
        .collect()
}

/// Presentation timestamps of the decoded frames of the file's only video
/// stream, and how many streams it has.
fn decoded_frames(file: &Path) -> (usize, Vec<f64>) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error"])
            .args(args)
            .arg(file)
            .output()
            .unwrap();
        assert!(out.status.success(), "ffprobe failed on {}", file.display());
        String::from_utf8(out.stdout).unwrap()
    };
    let streams = run(&["-show_entries", "stream=index", "-of", "csv=p=0"])
        .lines()
        .count();
    let pts = run(&[
        "-select_streams",
        "v:0",
        "-show_entries",
        "frame=pts_time",
        "-of",
        "csv=p=0",
    ])
    .lines()
    .filter(|l| !l.trim().is_empty())
    .map(|l| {
        let field = l.trim().trim_end_matches(',');
        field
            .parse()
            .unwrap_or_else(|_| panic!("frame pts_time {field:?}"))
    })
    .collect();
    (streams, pts)
}

/// Parameter-set NAL types that must open a new encoder's first frame.
fn parameter_sets(codec: &str) -> &'static [u8] {
    match codec {
        "h265" => &[32, 33, 34],
        _ => &[7, 8],
    }
}

fn assert_one_stream_of_every_frame(rec: &Recording, codec: &str, frames: usize) {
    assert_eq!(
        common::probe_video(&rec.file),
        (ffprobe_codec(codec).to_string(), frames as u64)
    );
    let (streams, pts) = decoded_frames(&rec.file);
    assert_eq!(streams, 1);
    assert_eq!(pts.len(), frames);
    assert!(
        pts.windows(2).all(|w| w[0] < w[1]),
        "PTS not strictly increasing: {pts:?}"
    );
    // Into the muxer: every frame once, in order, DTS never going back.
    assert_eq!(rec.out.len(), frames);
    let out_pts: Vec<_> = rec.out.iter().map(|o| o.pts.mseconds()).collect();
    assert!(out_pts.windows(2).all(|w| w[0] < w[1]), "{out_pts:?}");
    let dts: Vec<_> = rec.out.iter().map(|o| o.dts.unwrap_or(o.pts)).collect();
    assert!(
        dts.windows(2).all(|w| w[0] <= w[1]),
        "DTS went back: {dts:?}"
    );
}

/// The buffer the new encoder started with, at the switch's `switch-running-time`:
/// a keyframe carrying its parameter sets.
/// Running time goes on across a switch: downstream sees one stream-start
/// and one segment, as from the bare encoder (a second SEGMENT makes a
/// decoder downstream start a new segment).
fn assert_switch_invisible_in_the_stream(rec: &Recording) {
    let count = |t| rec.events.iter().filter(|&&e| e == t).count();
    assert_eq!(count(gst::EventType::StreamStart), 1, "{:?}", rec.events);
    assert_eq!(count(gst::EventType::Segment), 1, "{:?}", rec.events);
}

fn assert_switch_starts_on_a_keyframe(rec: &Recording, switch: &gst::Structure, codec: &str) {
    let pts = gst::ClockTime::from_nseconds(switch.get::<u64>("switch-running-time").unwrap());
    let first = rec.out.iter().find(|o| o.pts == pts).unwrap_or_else(|| {
        panic!(
            "switch-running-time {pts} never left the guard: {:?}",
            rec.out.iter().map(|o| o.pts).collect::<Vec<_>>()
        )
    });
    assert!(first.keyframe, "{first:?}");
    for nal in parameter_sets(codec) {
        assert!(first.nal_types.contains(nal), "no NAL {nal} in {first:?}");
    }
}

/// The hardware double fails on its own output thread after 100 frames with
/// frames queued in front of it (4 in flight: the failed one and 3 queued).
fn failover_mid_stream(double: &str, software: &str, codec: &'static str) {
    let vpu = Vpu::new(&format!("failover-{codec}"), "");
    let guard = vpu.guard(
        double,
        ",output-thread=true,frames-in-flight=3,fail-after-buffers=100",
        "",
    );
    let rec = record(&vpu, &guard, 300, codec);
    assert!(rec.log.eos, "{:#?}", rec.log);
    assert!(rec.log.errors.is_empty(), "{:#?}", rec.log.errors);
    assert_eq!(
        reasons(&rec.log),
        vec![
            (double.to_string(), "budget".to_string()),
            (software.to_string(), "hw-failed-mid-stream".to_string())
        ]
    );
    let switch = &decisions(&rec.log)[1];
    // The frame it failed on and the 3 queued behind it, at least.
    let replayed = switch.get::<u64>("frames-replayed").unwrap();
    assert!(replayed >= 4, "{switch}");
    assert_eq!(switch.get::<u64>("frames-lost").unwrap(), 0);
    assert_eq!(switch.get::<u32>("switches").unwrap(), 1);
    assert!(!switch.get::<bool>("hardware").unwrap());
    assert_eq!(rec.switches, 1);
    // The stats (and the metrics) count both decisions and the switch.
    let stats = &rec.stats;
    assert_eq!(stats.get::<u64>("decisions").unwrap(), 2, "{stats}");
    assert_eq!(stats.get::<u64>("switches").unwrap(), 1, "{stats}");
    assert_eq!(stats.get::<u64>("frames-replayed").unwrap(), replayed);
    assert_eq!(stats.get::<u64>("frames-lost").unwrap(), 0);
    assert_eq!(stats.get::<&str>("encoder").unwrap(), software);
    assert!(!stats.get::<bool>("hardware").unwrap());
    assert!(
        rec.log
            .warnings
            .iter()
            .any(|w| w.contains("failed mid-stream")),
        "{:#?}",
        rec.log.warnings
    );
    // When the switch was announced, the hardware session and slot were gone.
    assert_eq!(
        rec.at_decisions[1],
        ("hw-failed-mid-stream".to_string(), 0, 0)
    );
    assert_switch_starts_on_a_keyframe(&rec, switch, codec);
    assert_one_stream_of_every_frame(&rec, codec, 300);
    // Caps the switch left unchanged are not sent downstream again.
    assert!(!rec.caps.is_empty());
    assert!(
        rec.caps.windows(2).all(|w| w[0] != w[1]),
        "repeated caps: {:#?}",
        rec.caps
    );
    assert_switch_invisible_in_the_stream(&rec);
    // Frames before the switch came from the hardware encoder, the replayed
    // ones and the rest from software: the switch sits after frame 96.
    let switch_pts = switch.get::<u64>("switch-running-time").unwrap();
    assert!(switch_pts >= gst::ClockTime::SECOND.nseconds() * 96 / 30);
    assert_eq!(vpu.sessions(), 0);
    assert_eq!(vpu.slots(), 0);
}

#[test]
fn h265_hardware_failing_mid_stream_hands_over_to_x265enc_losing_no_frame() {
    failover_mid_stream(FAKE_H265, "x265enc", "h265");
}

#[test]
fn h264_hardware_failing_mid_stream_hands_over_to_x264enc_losing_no_frame() {
    failover_mid_stream(FAKE_H264, "x264enc", "h264");
}

#[test]
fn failover_properties_reach_the_failover_encoder_and_bad_ones_are_named() {
    common::init();
    let vpu = Vpu::new("failover-props", "");
    let guard = vpu.guard(
        FAKE_H265,
        ",output-thread=true,fail-after-buffers=10",
        "failover-properties=\"props,key-int-max=7\"",
    );
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=40 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
         {guard} ! fakesink"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let guard = pipeline.by_name("guard").unwrap();
    let key_int = Arc::new(Mutex::new(None));
    let k = key_int.clone();
    guard
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .connect_deep_element_added(move |_, _, element| {
            if element.factory().is_some_and(|f| f.name() == "x265enc") {
                *k.lock().unwrap() = Some(element.property::<i32>("key-int-max"));
            }
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    assert_eq!(*key_int.lock().unwrap(), Some(7));

    // A failover encoder of another codec, or one that is not installed, is
    // an error naming the property when the guard starts.
    for (value, expected) in [
        (
            "x264enc",
            "failover-encoder: 'x264enc' outputs video/x-h264",
        ),
        (
            "nosuchenc",
            "failover-encoder: no element 'nosuchenc' is installed",
        ),
    ] {
        let log = common::run_to_eos(
            &format!(
                "videotestsrc num-buffers=1 ! {} ! fakesink",
                vpu.guard(FAKE_H265, "", &format!("failover-encoder={value}"))
            ),
            TIMEOUT,
        );
        assert!(
            log.errors.iter().any(|e| e.contains(expected)),
            "{value}: {:#?}",
            log.errors
        );
    }
}

/// Two sessions of other processes fill a budget of 2: the stream starts on
/// x265enc (same codec as the double).
fn full_listing() -> String {
    [
        fake_mpp::record(4001, 1, 1920, 1080, 30, 0),
        fake_mpp::record(4002, 2, 1920, 1080, 30, 0),
    ]
    .concat()
}

const RECLAIM_INTERVAL_NS: u64 = 500_000_000;

fn reclaiming_guard(vpu: &Vpu) -> String {
    vpu.guard(
        FAKE_H265,
        "",
        &format!("sw-encoder=x265enc max-sessions=2 reclaim-interval={RECLAIM_INTERVAL_NS}"),
    )
}

#[test]
fn a_session_freed_mid_stream_is_reclaimed_within_two_intervals() {
    let vpu = Vpu::new("reclaim", &full_listing());
    let guard = reclaiming_guard(&vpu);
    let freed_at = Arc::new(Mutex::new(None));
    let f = freed_at.clone();
    let session_file = vpu.session_file.clone();
    // Another process closes its session when frame 60 (2 s) enters the guard.
    let rec = record_with(&vpu, &guard, 240, "h265", move |pipeline| {
        let tap = pipeline.by_name("src-tap").unwrap();
        tap.static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let pts = info.buffer().and_then(|b| b.pts()).unwrap();
                if pts >= gst::ClockTime::from_seconds(2) && f.lock().unwrap().is_none() {
                    std::fs::write(&session_file, fake_mpp::record(4001, 1, 1920, 1080, 30, 0))
                        .unwrap();
                    *f.lock().unwrap() = Some(pts);
                }
                gst::PadProbeReturn::Ok
            });
    });
    assert!(rec.log.eos && rec.log.errors.is_empty(), "{:#?}", rec.log);
    assert_eq!(
        reasons(&rec.log),
        vec![
            ("x265enc".to_string(), "over-budget".to_string()),
            (FAKE_H265.to_string(), "reclaimed".to_string())
        ]
    );
    let switch = &decisions(&rec.log)[1];
    assert!(switch.get::<bool>("hardware").unwrap());
    assert_eq!(rec.switches, 1);
    // In stream time: the switch came within two intervals of the freeing.
    let freed = freed_at.lock().unwrap().unwrap().nseconds();
    let switched = switch.get::<u64>("switch-running-time").unwrap();
    assert!(
        switched >= freed && switched - freed <= 2 * RECLAIM_INTERVAL_NS,
        "freed at {freed}, switched at {switched}"
    );
    assert_switch_starts_on_a_keyframe(&rec, switch, "h265");
    assert_switch_invisible_in_the_stream(&rec);
    assert_one_stream_of_every_frame(&rec, "h265", 240);
    assert_eq!(vpu.slots(), 0);
}

/// Records 90 frames through `guard` (named `name`), counting the reclaim
/// checks it logs.
fn count_reclaim_checks(
    vpu: &Vpu,
    guard: &str,
    name: &str,
    codec: &'static str,
) -> (Recording, usize) {
    let checks = Arc::new(Mutex::new(Vec::new()));
    let c = checks.clone();
    common::init();
    // Only this function sees the debug lines: nothing is printed.
    gst::log::remove_default_log_function();
    gst::log::set_threshold_for_name("vpuguardenc", gst::DebugLevel::Debug);
    let ours = name.to_string();
    let log_fn = gst::log::add_log_function(move |_, _, _, _, _, object, message| {
        let ours = object.is_some_and(|o| o.to_string().contains(&ours));
        if ours
            && message
                .get()
                .is_some_and(|m| m.starts_with("reclaim check"))
        {
            c.lock().unwrap().push(());
        }
    });
    let guard = guard.replace("name=guard", &format!("name={name}"));
    let rec = record(vpu, &guard, 90, codec);
    gst::log::remove_log_function(log_fn);
    gst::log::set_threshold_for_name("vpuguardenc", gst::DebugLevel::None);
    let checks = checks.lock().unwrap().len();
    (rec, checks)
}

#[test]
fn a_listing_that_stays_full_never_causes_a_switch_nor_a_tight_read_loop() {
    let vpu = Vpu::new("reclaim-full", &full_listing());
    let guard = reclaiming_guard(&vpu);
    let (rec, checks) = count_reclaim_checks(&vpu, &guard, "reclaim-full-guard", "h265");
    assert!(rec.log.eos && rec.log.errors.is_empty(), "{:#?}", rec.log);
    assert_eq!(
        reasons(&rec.log),
        vec![("x265enc".to_string(), "over-budget".to_string())]
    );
    assert_eq!(rec.switches, 0);
    assert_one_stream_of_every_frame(&rec, "h265", 90);
    // 90 frames of a live 30 fps stream with a 0.5 s interval: about 6
    // checks. Reading on every frame (a tight loop) would be 90; the bound
    // leaves room for a machine that runs the stream three times late.
    assert!((2..=18).contains(&checks), "{checks} checks");
}

/// A software encoder of another codec than the hardware one can never be
/// reclaimed (downstream would see the codec change): the schedule is marked
/// checked when it is due, before that test, so the guard looks once per
/// interval, not on every frame from the first interval on.
#[test]
fn a_software_encoder_that_cannot_be_reclaimed_is_looked_at_once_per_interval() {
    let vpu = Vpu::new("reclaim-other-codec", &full_listing());
    let guard = vpu.guard(
        FAKE_H265,
        "",
        &format!("sw-encoder=x264enc max-sessions=2 reclaim-interval={RECLAIM_INTERVAL_NS}"),
    );
    let (rec, checks) = count_reclaim_checks(&vpu, &guard, "reclaim-other-codec-guard", "h264");
    assert!(rec.log.eos && rec.log.errors.is_empty(), "{:#?}", rec.log);
    assert_eq!(
        reasons(&rec.log),
        vec![("x264enc".to_string(), "over-budget".to_string())]
    );
    assert_eq!(rec.switches, 0);
    // As above: about 6 looks in 3 s of stream, 75 or more if every frame
    // after the first interval looked.
    assert!((2..=18).contains(&checks), "{checks} checks");
}

/// ffprobe's name for a codec.
fn ffprobe_codec(codec: &str) -> &str {
    match codec {
        "h265" => "hevc",
        other => other,
    }
}

/// The double holds 3 frames until EOS drains them and fails on the first
/// of those: the failure comes after EOS went in, and the failed chain then
/// pushes an EOS of its own (queue does after a flow error once it had EOS).
/// That EOS must not end the stream: the failover encoder gets the 3 frames,
/// then EOS.
#[test]
fn a_hardware_failure_while_draining_at_eos_still_delivers_every_frame() {
    common::init();
    let vpu = Vpu::new("fail-at-eos", "");
    let guard = vpu.guard(
        FAKE_H265,
        ",output-thread=true,frames-in-flight=3,fail-after-buffers=18",
        "",
    );
    let source =
        "videotestsrc num-buffers=20 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1";
    let file = vpu.dir.join("out.mkv");
    let log = common::run_to_eos(
        &format!(
            "{source} ! {guard} ! matroskamux ! filesink location={}",
            file.display()
        ),
        TIMEOUT,
    );
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let switches = decisions(&log);
    assert_eq!(
        reasons(&log),
        vec![
            (FAKE_H265.to_string(), "budget".to_string()),
            ("x265enc".to_string(), "hw-failed-mid-stream".to_string())
        ]
    );
    assert_eq!(switches[1].get::<u64>("frames-replayed").unwrap(), 3);
    assert_eq!(common::probe_video(&file), ("hevc".to_string(), 20));
}

/// A stream that failed over, took the hardware back, and whose reclaimed
/// hardware encoder then fails before its own first output: downstream has
/// H.265 already, so the failover encoder takes over again (never sw-encoder,
/// H.264 here, which matroskamux would refuse mid-stream).
#[test]
fn a_reclaimed_encoder_failing_before_its_first_output_is_replaced_by_the_failover_encoder() {
    let vpu = Vpu::new("reclaim-then-fail", "");
    let guard = vpu.guard(
        FAKE_H265,
        ",output-thread=true,fail-after-buffers=20",
        "reclaim-interval=100000000",
    );
    let failing = format!(
        "props,session-file={},fail-on-first-buffer=true",
        vpu.session_file.display()
    );
    let rec = record_with(&vpu, &guard, 120, "h265", move |pipeline| {
        let guard = pipeline.by_name("guard").unwrap().downgrade();
        // From frame 25 on (after the first failover at frame 20, before the
        // first reclaim, 4 intervals later), every hardware encoder fails on
        // its first frame.
        let tap = pipeline.by_name("src-tap").unwrap();
        tap.static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let pts = info.buffer().and_then(|b| b.pts()).unwrap();
                let frame = pts.nseconds() * 30 / gst::ClockTime::SECOND.nseconds();
                if let (25, Some(guard)) = (frame, guard.upgrade()) {
                    guard.set_property("hw-properties", &failing);
                }
                gst::PadProbeReturn::Ok
            });
    });
    assert!(rec.log.eos && rec.log.errors.is_empty(), "{:#?}", rec.log);
    let reasons = reasons(&rec.log);
    assert!(reasons.iter().any(|(_, r)| r == "reclaimed"), "{reasons:?}");
    assert!(
        reasons
            .iter()
            .all(|(e, _)| e == FAKE_H265 || e == "x265enc"),
        "{reasons:?}"
    );
    assert_one_stream_of_every_frame(&rec, "h265", 120);
}

/// One run: the double fails at frame 30 of a 90-frame stream paced in real
/// time (so that the failure is met mid-stream, not while draining at EOS); a
/// sync handler answers the `hw-failed-mid-stream` decision with a flushing
/// seek to [0.5 s, 2 s), as an application reacting to it would, from the
/// streaming thread. Returns the bus, the stream times reaching the sink
/// since the last flush, and the seqnums seen there.
fn seek_on_failover(
    vpu: &Vpu,
) -> (
    common::BusLog,
    Vec<gst::ClockTime>,
    common::seqnums::Seqnums,
) {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=90 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
         identity sync=true ! {} ! fakesink name=out sync=false",
        vpu.guard(FAKE_H265, ",output-thread=true,frames-in-flight=3,fail-after-buffers=30", "")
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let pts = Arc::new(Mutex::new(Vec::new()));
    let p = pts.clone();
    let sink = pipeline.by_name("out").unwrap().static_pad("sink").unwrap();
    let seqnums = common::seqnums::watch(&sink);
    sink.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_FLUSH,
        move |pad, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => {
                    let segment = pad.sticky_event::<gst::event::Segment>(0).unwrap();
                    let segment = segment.segment().downcast_ref::<gst::ClockTime>().unwrap();
                    p.lock()
                        .unwrap()
                        .push(segment.to_stream_time(b.pts().unwrap()).unwrap());
                }
                Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::FlushStop => {
                    p.lock().unwrap().clear()
                }
                _ => (),
            }
            gst::PadProbeReturn::Ok
        },
    );
    let weak = pipeline.downgrade();
    let s2 = seqnums.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        let failover = msg.structure().is_some_and(|s| {
            s.name() == "vpuguardenc-decision"
                && s.get::<String>("reason").as_deref() == Ok("hw-failed-mid-stream")
        });
        if let Some(pipeline) = weak.upgrade().filter(|_| failover) {
            let seek = gst::event::Seek::new(
                1.0,
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::SeekType::Set,
                gst::ClockTime::SECOND / 2,
                gst::SeekType::Set,
                2 * gst::ClockTime::SECOND,
            );
            assert!(common::seqnums::send_seek(pipeline.upcast_ref(), &s2, seek));
        }
        gst::BusSyncReply::Pass
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    let pts = pts.lock().unwrap().clone();
    let seqnums = seqnums.lock().unwrap().clone();
    (log, pts, seqnums)
}

#[test]
fn a_flushing_seek_during_a_failover_delivers_the_seeked_segment_with_the_seeks_seqnums() {
    common::init();
    for run in 0..3 {
        let vpu = Vpu::new(&format!("seek-failover-{run}"), "");
        let (log, pts, seqnums) = seek_on_failover(&vpu);
        assert!(log.errors.is_empty(), "run {run}: {:#?}", log.errors);
        assert!(log.eos, "run {run}: no EOS");
        seqnums.assert_the_seeks_flush_and_eos(&format!("run {run}"));
        let reasons: Vec<_> = reasons(&log).into_iter().map(|(_, r)| r).collect();
        assert_eq!(reasons, ["budget", "hw-failed-mid-stream"], "run {run}");
        // Every frame of [0.5 s, 2 s), once, in order.
        let expected: Vec<_> = (15..60u64)
            .map(|n| gst::ClockTime::from_nseconds(n * gst::ClockTime::SECOND.nseconds() / 30))
            .collect();
        assert_eq!(pts.len(), expected.len(), "run {run}: {pts:?}");
        assert_eq!(pts, expected, "run {run}");
    }
}

#[test]
fn a_failover_while_encoding_a_file_keeps_the_files_one_segment() {
    common::init();
    let vpu = Vpu::new("failover-file", "");
    let guard = vpu.guard(
        FAKE_H265,
        ",output-thread=true,frames-in-flight=3,fail-after-buffers=100",
        "",
    );
    // An MP4 file's segment has a stop, which each encoder moves with its start.
    let file = vpu.dir.join("in.mp4");
    let make = gst::parse::launch(&format!(
        "videotestsrc num-buffers=300 ! video/x-raw,format=I420,width=160,height=120,\
         framerate=30/1 ! x264enc key-int-max=30 ! h264parse ! mp4mux ! filesink location={}",
        file.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    make.set_state(gst::State::Playing).unwrap();
    assert!(common::collect_bus(&make, TIMEOUT, |_| false).eos);
    make.set_state(gst::State::Null).unwrap();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! {guard} ! fakesink name=out",
        file.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let segments = Arc::new(Mutex::new(Vec::new()));
    let frames = Arc::new(Mutex::new(Vec::new()));
    let (s, f) = (segments.clone(), frames.clone());
    pipeline
        .by_name("out")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(
            gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::BUFFER,
            move |pad, info| {
                match &info.data {
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Segment => {
                        s.lock().unwrap().push(e.clone())
                    }
                    Some(gst::PadProbeData::Buffer(b)) => {
                        let segment = pad.sticky_event::<gst::event::Segment>(0).unwrap();
                        let segment = segment.segment().downcast_ref::<gst::ClockTime>().unwrap();
                        f.lock()
                            .unwrap()
                            .push(segment.to_running_time(b.pts()).unwrap());
                    }
                    _ => (),
                }
                gst::PadProbeReturn::Ok
            },
        );
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    assert!(log.eos && log.errors.is_empty(), "{:#?}", log);
    // A failure as the input ends is replaced from a pool thread, which
    // announces the switch once it let go of the stream: its decision may
    // reach the bus after the EOS.
    wait_for_reason(&pipeline, &mut log, "hw-failed-mid-stream");
    pipeline.set_state(gst::State::Null).unwrap();
    let segments = segments.lock().unwrap();
    assert_eq!(segments.len(), 1, "{segments:?}");
    // Every frame once, in running time as the file has it.
    let frames = frames.lock().unwrap();
    assert_eq!(frames.len(), 300);
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "{frames:?}");
}
