// SPDX-License-Identifier: MPL-2.0
//! vpuguarddec through real pipelines: real H.264 from x264enc, decoded by
//! avdec_h264 or by the MPP decoder double on a VPU of the test's own.

mod common;

use common::fake_mpp_dec::{FACTORY_NAME as FAKE_DEC, decoder_record};
use common::vpu::Vpu;
use gst::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

/// One `vpuguarddec-decision` message.
#[derive(Debug, Clone)]
struct Decision {
    decoder: String,
    hardware: bool,
    sessions: u32,
    reason: String,
    switches: u32,
    frames_lost: u64,
}

fn decisions(log: &common::BusLog) -> Vec<Decision> {
    log.named("vpuguarddec-decision")
        .into_iter()
        .map(|s| Decision {
            decoder: s.get("decoder").unwrap(),
            hardware: s.get("hardware").unwrap(),
            sessions: s.get("sessions").unwrap(),
            reason: s.get("reason").unwrap(),
            switches: s.get("switches").unwrap(),
            frames_lost: s.get("frames-lost").unwrap(),
        })
        .collect()
}

/// What came out of a decode to EOS.
struct Decoded {
    log: common::BusLog,
    pts: Vec<gst::ClockTime>,
    formats: Vec<String>,
    /// SEGMENT events that reached the sink.
    segments: usize,
}

/// Decodes the 300-frame GOP-30 file through `decoder` to EOS.
fn decode(decoder: &str) -> Decoded {
    decode_file(&common::h264_file(300, 30), decoder)
}

fn decode_file(file: &std::path::Path, decoder: &str) -> Decoded {
    decode_file_with(file, decoder, |_| {})
}

/// Decodes `file` to EOS after `prepare` had the pipeline, in NULL.
fn decode_file_with(
    file: &std::path::Path,
    decoder: &str,
    prepare: impl FnOnce(&gst::Pipeline),
) -> Decoded {
    let pipeline = gst::parse::launch(&common::decode_pipeline(file, decoder))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    prepare(&pipeline);
    let sink = pipeline.by_name("out").unwrap();
    let pts = common::record_pts(&sink);
    let formats = Arc::new(Mutex::new(Vec::new()));
    let segments = Arc::new(Mutex::new(0));
    let (f, s) = (formats.clone(), segments.clone());
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            match info.event().map(|e| e.view()) {
                Some(gst::EventView::Caps(caps)) => {
                    let structure = caps.caps().structure(0).unwrap();
                    f.lock()
                        .unwrap()
                        .push(structure.get::<String>("format").unwrap());
                }
                Some(gst::EventView::Segment(_)) => *s.lock().unwrap() += 1,
                _ => (),
            }
            gst::PadProbeReturn::Ok
        },
    );
    let _ = pipeline.set_state(gst::State::Playing);
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    let pts = pts.lock().unwrap().clone();
    let formats = formats.lock().unwrap().clone();
    let segments = *segments.lock().unwrap();
    Decoded {
        log,
        pts,
        formats,
        segments,
    }
}

/// Every frame of the file once, in presentation order.
fn assert_every_frame_once(decoded: &Decoded, frames: usize) {
    assert_eq!(decoded.pts.len(), frames, "frames out");
    assert!(
        decoded.pts.windows(2).all(|w| w[0] < w[1]),
        "PTS not strictly increasing: {:?}",
        decoded.pts
    );
}

fn assert_clean(decoded: &Decoded) {
    assert!(decoded.log.errors.is_empty(), "{:?}", decoded.log.errors);
    assert!(decoded.log.eos, "no EOS");
}

#[test]
fn under_budget_decodes_on_the_hardware_decoder_and_releases_its_session() {
    common::init();
    let vpu = Vpu::new("dec-under", "");
    let decoded = decode(&vpu.decoder_guard("", "name=guard"));
    assert_clean(&decoded);
    assert_every_frame_once(&decoded, 300);
    let d = decisions(&decoded.log);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].decoder.as_str(), d[0].hardware), (FAKE_DEC, true));
    assert_eq!((d[0].reason.as_str(), d[0].sessions), ("budget", 0));
    // The double opened a session while it ran; NULL closed it and the slot.
    assert_eq!(vpu.peak(), 1);
    assert_eq!(vpu.sessions(), 0);
    assert!(vpu.slot_files().is_empty());
    // MPP's output format reached downstream.
    assert_eq!(decoded.formats, vec!["NV12".to_string()]);
    vpu.remove();
}

#[test]
fn at_budget_decodes_in_software_and_counts_encoders_and_decoders_alike() {
    common::init();
    // One encoder and one decoder of other programs fill a budget of two.
    let listing = format!(
        "{}{}",
        common::fake_mpp::record(4242, 1, 1920, 1080, 30, 4_000_000),
        decoder_record(4243, 2)
    );
    let vpu = Vpu::new("dec-at", &listing);
    let decoded = decode(&vpu.decoder_guard("", "max-sessions=2"));
    assert_clean(&decoded);
    assert_every_frame_once(&decoded, 300);
    let d = decisions(&decoded.log);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].decoder.as_str(), d[0].hardware),
        ("avdec_h264", false)
    );
    assert_eq!((d[0].reason.as_str(), d[0].sessions), ("over-budget", 2));
    assert_eq!(vpu.peak(), 0, "the hardware decoder was never started");
    vpu.remove();
}

#[test]
fn a_hardware_decoder_that_fails_to_start_falls_back_without_an_error() {
    common::init();
    // The VPU refuses a session although the budget had room.
    let vpu = Vpu::new("dec-start", "");
    let decoded = decode(&vpu.decoder_guard(",hard-limit=0", ""));
    assert_clean(&decoded);
    assert_every_frame_once(&decoded, 300);
    let reasons: Vec<_> = decisions(&decoded.log)
        .into_iter()
        .map(|d| d.reason)
        .collect();
    assert_eq!(reasons, vec!["hw-start-failed"]);
    assert!(
        decoded
            .log
            .warnings
            .iter()
            .any(|w| w.contains("failed to start")),
        "{:?}",
        decoded.log.warnings
    );
    assert!(vpu.slot_files().is_empty());
    vpu.remove();
}

#[test]
fn a_state_change_of_the_bin_while_its_chain_is_built_leaves_the_chain_to_the_guard() {
    common::init();
    // The application's thread changes the guard's state while the streaming
    // thread builds the chain (the pipeline going to PLAYING, or revisiting
    // the guard): here at once after the hardware decoder entered the bin,
    // before the guard started it. A bin's state change sets its children;
    // this child cannot start, and its failure must still be the guard's.
    let vpu = Vpu::new("dec-bin-state", "");
    let mut bin_changes = None;
    let decoded = decode_file_with(
        &common::h264_file(300, 30),
        &vpu.decoder_guard(",hard-limit=0", ""),
        |pipeline| {
            bin_changes = Some(common::set_state_when_added(
                pipeline,
                FAKE_DEC,
                gst::State::Paused,
            ))
        },
    );
    assert_clean(&decoded);
    assert_every_frame_once(&decoded, 300);
    let bin_changes = bin_changes.unwrap().lock().unwrap().clone();
    assert_eq!(bin_changes, vec![Ok(gst::StateChangeSuccess::Success)]);
    let reasons: Vec<_> = decisions(&decoded.log)
        .into_iter()
        .map(|d| d.reason)
        .collect();
    assert_eq!(reasons, vec!["hw-start-failed"]);
    assert!(vpu.slot_files().is_empty());
    vpu.remove();
}

#[test]
fn a_hardware_decoder_refusing_the_caps_falls_back_without_an_error() {
    common::init();
    // mppvideodec opens MPP when the caps arrive and, when it cannot,
    // refuses them without posting anything.
    let vpu = Vpu::new("dec-refuse", "");
    let decoded = decode(&vpu.decoder_guard(",refuse-caps=true", ""));
    assert_clean(&decoded);
    assert_every_frame_once(&decoded, 300);
    let d = decisions(&decoded.log);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].reason.as_str(), d[0].hardware),
        ("hw-start-failed", false)
    );
    assert_eq!(vpu.sessions(), 0);
    assert!(vpu.slot_files().is_empty());
    vpu.remove();
}

#[test]
fn a_decoder_failing_while_draining_at_eos_still_delivers_every_frame() {
    common::init();
    let vpu = Vpu::new("dec-drain", "");
    // The 298th unit fails on the output thread after EOS went in, with
    // frames still queued: EOS never comes out of the hardware decoder.
    let props = ",output-thread=true,frames-in-flight=4,fail-after-buffers=298";
    let decoded = decode(&vpu.decoder_guard(props, ""));
    assert_clean(&decoded);
    assert_every_frame_once(&decoded, 300);
    let reasons: Vec<_> = decisions(&decoded.log)
        .into_iter()
        .map(|d| d.reason)
        .collect();
    assert_eq!(reasons, vec!["budget", "hw-failed-mid-stream"]);
    vpu.remove();
}

#[test]
fn a_decoder_failing_mid_stream_on_its_own_thread_loses_and_repeats_nothing() {
    common::init();
    let vpu = Vpu::new("dec-failover", "");
    // Fails on its output thread at frame 100, with 4 units queued in front
    // of it and avdec_h264's own frames in flight.
    let props = ",output-thread=true,frames-in-flight=4,fail-after-buffers=100";
    let decoded = decode(&vpu.decoder_guard(props, "name=guard"));
    assert_clean(&decoded);
    assert_every_frame_once(&decoded, 300);
    let d = decisions(&decoded.log);
    let reasons: Vec<_> = d.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons, vec!["budget", "hw-failed-mid-stream"], "{d:?}");
    assert_eq!(
        (d[1].decoder.as_str(), d[1].hardware),
        ("avdec_h264", false)
    );
    assert_eq!((d[1].switches, d[1].frames_lost), (1, 0));
    // Downstream kept the format it negotiated, and the segment: running
    // time goes on across the switch.
    assert_eq!(decoded.formats, vec!["NV12".to_string()]);
    assert_eq!(decoded.segments, 1);
    assert!(vpu.slot_files().is_empty());
    assert_eq!(vpu.sessions(), 0);
    vpu.remove();
}

#[test]
fn the_failed_decoders_session_is_gone_while_the_stream_goes_on() {
    common::init();
    let vpu = Vpu::new("dec-gone", "");
    let props = ",output-thread=true,frames-in-flight=4,fail-after-buffers=60";
    let desc = format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
         x264enc key-int-max=30 speed-preset=ultrafast tune=zerolatency ! h264parse ! \
         {} ! fakesink",
        vpu.decoder_guard(props, "name=guard")
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |log| {
        log.named("vpuguarddec-decision").len() == 2
    });
    let reasons: Vec<_> = decisions(&log).into_iter().map(|d| d.reason).collect();
    assert_eq!(reasons, vec!["budget", "hw-failed-mid-stream"]);
    // Still PLAYING, on software: no session and no slot left behind.
    assert_eq!(vpu.sessions(), 0);
    assert!(vpu.slot_files().is_empty());
    let guard = pipeline.by_name("guard").unwrap();
    assert!(!guard.property::<bool>("hardware"));
    assert_eq!(guard.property::<u32>("switches"), 1);
    assert_eq!(guard.property::<String>("active-decoder"), "avdec_h264");
    assert!(log.errors.is_empty(), "{:?}", log.errors);
    pipeline.set_state(gst::State::Null).unwrap();
    vpu.remove();
}

#[test]
fn downstream_that_cannot_take_the_hardware_output_steers_to_software() {
    common::init();
    let vpu = Vpu::new("dec-caps", "");
    // The double outputs NV12 only.
    let decoded = decode(&format!(
        "{} ! video/x-raw,format=I420",
        vpu.decoder_guard("", "")
    ));
    assert_clean(&decoded);
    let d = decisions(&decoded.log);
    assert_eq!(
        (d[0].reason.as_str(), d[0].hardware),
        ("downstream-caps", false)
    );
    vpu.remove();
}

#[test]
fn mode_forces_the_choice() {
    common::init();
    let vpu = Vpu::new("dec-mode", "");
    let decoded = decode(&vpu.decoder_guard("", "mode=software"));
    assert_clean(&decoded);
    let d = decisions(&decoded.log);
    assert_eq!((d[0].reason.as_str(), d[0].hardware), ("forced", false));
    let decoded = decode(&vpu.decoder_guard("", "mode=hardware"));
    assert_clean(&decoded);
    let d = decisions(&decoded.log);
    assert_eq!((d[0].reason.as_str(), d[0].hardware), ("forced", true));
    vpu.remove();
}

#[test]
fn a_missing_hardware_decoder_is_software_in_auto_and_an_error_naming_it_in_hardware_mode() {
    common::init();
    let decoded = decode("vpuguarddec hw-decoder=nosuchdec");
    assert_clean(&decoded);
    assert_eq!(decisions(&decoded.log)[0].reason, "no-hw-decoder");
    let decoded = decode("vpuguarddec hw-decoder=nosuchdec mode=hardware");
    let errors = decoded.log.errors.join("\n");
    assert!(
        errors.contains("hw-decoder") && errors.contains("nosuchdec"),
        "{errors}"
    );
}

#[test]
fn bad_settings_are_errors_naming_the_property_and_value() {
    common::init();
    for (props, named) in [
        ("sw-decoder=nosuchdec", "sw-decoder: no element 'nosuchdec'"),
        (
            "sw-decoder=x264enc",
            "sw-decoder: 'x264enc' is not a decoder",
        ),
        ("lock-dir=relative/locks", "lock-dir: 'relative/locks'"),
        ("sw-properties=\"props,no-such-prop=1\"", "sw-properties"),
    ] {
        let decoded = decode(&format!("vpuguarddec mode=software {props}"));
        let errors = decoded.log.errors.join("\n");
        assert!(errors.contains(named), "{props}: {errors}");
    }
}

#[test]
fn reclaims_the_hardware_decoder_once_the_budget_has_room() {
    common::init();
    // Full at the start: two sessions of another program, budget two.
    let listing = format!("{}{}", decoder_record(4242, 1), decoder_record(4243, 2));
    let vpu = Vpu::new("dec-reclaim", &listing);
    let file = common::h264_file(90, 30);
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! matroskademux ! h264parse ! identity sync=true ! {} ! fakesink name=out",
        file.display(),
        vpu.decoder_guard("", "name=guard max-sessions=2 reclaim-interval=100000000")
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let pts = common::record_pts(&pipeline.by_name("out").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |log| {
        !log.named("vpuguarddec-decision").is_empty()
    });
    assert_eq!(decisions(&log)[0].reason, "over-budget");
    // The other program closes one session.
    std::fs::write(&vpu.session_file, decoder_record(4242, 1)).unwrap();
    let rest = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(rest.eos && rest.errors.is_empty(), "{:?}", rest.errors);
    let d = decisions(&rest);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].reason.as_str(), d[0].hardware), ("reclaimed", true));
    let decoded = Decoded {
        log: rest,
        pts: pts.lock().unwrap().clone(),
        formats: Vec::new(),
        segments: 0,
    };
    assert_every_frame_once(&decoded, 90);
    vpu.remove();
}

#[test]
fn before_the_decision_caps_queries_offer_the_hardware_decoders_caps_first() {
    common::init();
    let vpu = Vpu::new("dec-query", "");
    let bin = gst::parse::bin_from_description(&vpu.decoder_guard("", ""), false).unwrap();
    let guard = bin.iterate_elements().into_iter().flatten().next().unwrap();
    let first = |pad: &str| {
        let caps = guard.static_pad(pad).unwrap().query_caps(None);
        caps.structure(0).unwrap().to_string()
    };
    // The double takes byte-stream H.264 and outputs NV12.
    assert!(first("sink").contains("byte-stream"), "{}", first("sink"));
    assert!(first("src").contains("NV12"), "{}", first("src"));
    // In software mode the hardware decoder is not offered.
    guard.set_property_from_str("mode", "software");
    assert!(!first("src").contains("NV12"), "{}", first("src"));
    vpu.remove();
}

#[test]
fn a_failover_past_a_full_window_counts_what_it_could_not_recover() {
    common::init();
    // One keyframe in 700 frames: at the failure the window (600 units) has
    // let the keyframe go, so the software decoder waits for one that never
    // comes; every frame is either out once or counted lost.
    let dir = common::temp_dir("long-gop-file");
    let file = dir.join("long-gop.mkv");
    let log = common::run_to_eos(
        &format!(
            "videotestsrc num-buffers=700 pattern=ball ! \
             video/x-raw,format=I420,width=160,height=120,framerate=30/1 ! \
             x264enc key-int-max=1000 bframes=0 speed-preset=ultrafast option-string=scenecut=0 ! \
             h264parse ! matroskamux ! filesink location={}",
            file.display()
        ),
        TIMEOUT,
    );
    assert!(log.eos, "{:?}", log.errors);
    let vpu = Vpu::new("dec-long-gop", "");
    let props = ",output-thread=true,frames-in-flight=4,fail-after-buffers=650";
    let pipeline = gst::parse::launch(&common::decode_pipeline(
        &file,
        &vpu.decoder_guard(props, "name=guard"),
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let pts = common::record_pts(&pipeline.by_name("out").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    let guard = pipeline.by_name("guard").unwrap();
    let lost = guard.property::<u64>("frames-lost");
    let stats = guard.property::<gst::Structure>("stats");
    drop(guard);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{:?}", log.errors);
    let pts = pts.lock().unwrap().clone();
    assert!(pts.windows(2).all(|w| w[0] < w[1]), "PTS not increasing");
    assert!(lost > 0, "nothing counted lost");
    assert_eq!(
        pts.len() as u64 + lost,
        700,
        "{} out, {lost} lost",
        pts.len()
    );
    let d = decisions(&log);
    assert_eq!(d[1].reason, "hw-failed-mid-stream");
    assert!(d[1].frames_lost > 0 && d[1].frames_lost <= lost, "{d:?}");
    // The stats (and the metrics) count the switch and what it lost.
    assert_eq!(stats.get::<u64>("decisions").unwrap(), 2, "{stats}");
    assert_eq!(stats.get::<u64>("switches").unwrap(), 1, "{stats}");
    assert_eq!(stats.get::<u64>("frames-lost").unwrap(), d[1].frames_lost);
    vpu.remove();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A flushing seek to [0.5 s, 2 s) from the streaming thread, as a sync
/// handler would do it: when `seek_on` says so of a bus message, or, with no
/// `seek_on`, at the 30th buffer through the `pace` identity. Returns the bus
/// and the PTS reaching the sink since the last flush.
fn seeked(
    description: &str,
    seek_on: Option<&'static str>,
) -> (common::BusLog, Vec<gst::ClockTime>) {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let pts = Arc::new(Mutex::new(Vec::new()));
    let p = pts.clone();
    pipeline
        .by_name("out")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_FLUSH,
            move |_, info| {
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => p.lock().unwrap().push(b.pts().unwrap()),
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::FlushStop => {
                        p.lock().unwrap().clear()
                    }
                    _ => (),
                }
                gst::PadProbeReturn::Ok
            },
        );
    let seek = |pipeline: &gst::Pipeline| {
        pipeline
            .seek(
                1.0,
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::SeekType::Set,
                gst::ClockTime::SECOND / 2,
                gst::SeekType::Set,
                2 * gst::ClockTime::SECOND,
            )
            .unwrap();
    };
    let weak = pipeline.downgrade();
    match seek_on {
        Some(reason) => pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
            let now = msg.structure().is_some_and(|s| {
                s.name() == "vpuguarddec-decision"
                    && s.get::<String>("reason").as_deref() == Ok(reason)
            });
            if let Some(pipeline) = weak.upgrade().filter(|_| now) {
                seek(&pipeline);
            }
            gst::BusSyncReply::Pass
        }),
        None => {
            let seen = std::sync::atomic::AtomicU32::new(0);
            pipeline
                .by_name("pace")
                .unwrap()
                .static_pad("src")
                .unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    match weak.upgrade().filter(|_| n == 30) {
                        Some(pipeline) => {
                            seek(&pipeline);
                            // The buffer in hand is the flushed segment's.
                            gst::PadProbeReturn::Drop
                        }
                        None => gst::PadProbeReturn::Ok,
                    }
                });
        }
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    let pts = pts.lock().unwrap().clone();
    (log, pts)
}

#[test]
fn a_flushing_seek_on_the_failover_decision_delivers_the_seeked_segment() {
    common::init();
    let file = common::h264_file(90, 30);
    // Paced in real time, so that the failure at unit 30 is met mid-stream.
    let launch = |decoder: &str| {
        format!(
            "filesrc location={} ! matroskademux ! h264parse ! identity name=pace sync=true ! \
             {decoder} ! fakesink name=out sync=false",
            file.display()
        )
    };
    // What the same seek gives through a bare software decoder.
    let (log, expected) = seeked(&launch("avdec_h264"), None);
    assert!(log.eos && !expected.is_empty());
    for run in 0..3 {
        let vpu = Vpu::new(&format!("dec-seek-{run}"), "");
        let guard = vpu.decoder_guard(
            ",output-thread=true,frames-in-flight=3,fail-after-buffers=30",
            "",
        );
        let (log, pts) = seeked(&launch(&guard), Some("hw-failed-mid-stream"));
        assert!(
            log.eos && log.errors.is_empty(),
            "run {run}: {:?}",
            log.errors
        );
        let reasons: Vec<_> = decisions(&log).into_iter().map(|d| d.reason).collect();
        assert_eq!(reasons, ["budget", "hw-failed-mid-stream"], "run {run}");
        assert_eq!(pts, expected, "run {run}");
        vpu.remove();
    }
}

/// A flushing seek made inside a switch, after the old chain's units were
/// taken for the replay (here from the bin's `element-removed`, in the
/// streaming thread, as the retired software decoder leaves): those units are
/// the old segment's, and none of them may be decoded after the flush. Tells
/// apart a switch that samples the flush count before it replaces the chain
/// (it sees this flush) from one that samples it after (it replays them).
#[test]
fn a_flushing_seek_while_the_old_chain_is_retired_replays_nothing_of_the_old_segment() {
    common::init();
    let listing = format!("{}{}", decoder_record(4242, 1), decoder_record(4243, 2));
    let vpu = Vpu::new("dec-seek-in-switch", &listing);
    let file = common::h264_file(90, 30);
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! matroskademux ! h264parse ! identity sync=true ! {} ! \
         fakesink name=out",
        file.display(),
        vpu.decoder_guard("", "name=guard max-sessions=2 reclaim-interval=100000000")
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let pts = Arc::new(Mutex::new(Vec::new()));
    let p = pts.clone();
    let sink = pipeline.by_name("out").unwrap().static_pad("sink").unwrap();
    sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        p.lock()
            .unwrap()
            .push(info.buffer().unwrap().pts().unwrap());
        gst::PadProbeReturn::Ok
    });
    let seqnums = common::seqnums::watch(&sink);
    // The other program closes a session as soon as the guard chose software.
    let session_file = vpu.session_file.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if msg
            .structure()
            .is_some_and(|s| s.name() == "vpuguarddec-decision")
        {
            std::fs::write(&session_file, decoder_record(4242, 1)).unwrap();
        }
        gst::BusSyncReply::Pass
    });
    let seeked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = seeked.clone();
    let weak = pipeline.downgrade();
    let sq = seqnums.clone();
    pipeline
        .by_name("guard")
        .unwrap()
        .downcast::<gst::Bin>()
        .unwrap()
        .connect_element_removed(move |_, element| {
            let software = element.factory().is_some_and(|f| f.name() == "avdec_h264");
            if let Some(pipeline) = weak.upgrade().filter(|_| software)
                && !s.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                let seek = gst::event::Seek::new(
                    1.0,
                    gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                    gst::SeekType::Set,
                    2 * gst::ClockTime::SECOND,
                    gst::SeekType::None,
                    gst::ClockTime::NONE,
                );
                assert!(common::seqnums::send_seek(pipeline.upcast_ref(), &sq, seek));
            }
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.eos && log.errors.is_empty(), "{:?}", log.errors);
    assert!(seeked.load(std::sync::atomic::Ordering::SeqCst), "no seek");
    seqnums
        .lock()
        .unwrap()
        .assert_the_seeks_flush_and_eos("decoder");
    let reasons: Vec<_> = decisions(&log).into_iter().map(|d| d.reason).collect();
    assert_eq!(reasons, ["over-budget", "reclaimed"]);
    let pts = pts.lock().unwrap().clone();
    // What came before the seek, then frames 60..90 once: nothing again.
    assert!(
        pts.windows(2).all(|w| w[0] < w[1]),
        "PTS not strictly increasing: {pts:?}"
    );
    let after: Vec<_> = pts
        .iter()
        .filter(|t| **t >= 2 * gst::ClockTime::SECOND)
        .collect();
    assert_eq!(after.len(), 30, "{pts:?}");
    vpu.remove();
}
