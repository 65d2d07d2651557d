// SPDX-License-Identifier: MPL-2.0
//! vpuguardenc through real pipelines, with x264enc, and a test double of
//! mpph265enc (tests/common/fake_mpp.rs) standing in for the VPU.

mod common;

use common::fake_mpp::{self, FACTORY_NAME as FAKE_HW};
use common::vpu::Vpu;
use gst::prelude::*;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const SAMPLE: &str = include_str!("data/sessions-summary.sample");
const TIMEOUT: Duration = Duration::from_secs(60);
const SOURCE: &str =
    "videotestsrc num-buffers=30 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1";

/// The guard pipelines of these tests, on a VPU of their own.
impl Vpu {
    /// The guard's properties that point it at this VPU and the double.
    fn guard(&self, extra: &str) -> String {
        self.guard_with_double("", extra)
    }

    /// Runs 30 frames through `guard` into `out.mkv` in this VPU's directory,
    /// to EOS or error.
    fn record(&self, guard: &str) -> (common::BusLog, PathBuf) {
        self.record_with(guard, |_| {})
    }

    /// Like `record`, after `prepare` had the pipeline, in NULL.
    fn record_with(
        &self,
        guard: &str,
        prepare: impl FnOnce(&gst::Pipeline),
    ) -> (common::BusLog, PathBuf) {
        let out = self.dir.join("out.mkv");
        let pipeline = gst::parse::launch(&format!(
            "{SOURCE} ! {guard} ! matroskamux ! filesink location={}",
            out.display()
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        prepare(&pipeline);
        (common::run_pipeline_to_eos(&pipeline, TIMEOUT), out)
    }

    /// Like `guard`, with more properties for the double (",fail-on-first-buffer=true").
    fn guard_with_double(&self, double_props: &str, extra: &str) -> String {
        self.guard_on(FAKE_HW, double_props, extra)
    }
}

impl Drop for Vpu {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The fields of one `vpuguardenc-decision` message.
#[derive(Debug, PartialEq)]
struct Decision {
    encoder: String,
    hardware: bool,
    sessions: u32,
    max_sessions: u32,
    reason: String,
}

impl Decision {
    fn from_structure(s: &gst::Structure) -> Self {
        Decision {
            encoder: s.get("encoder").unwrap(),
            hardware: s.get("hardware").unwrap(),
            sessions: s.get("sessions").unwrap(),
            max_sessions: s.get("max-sessions").unwrap(),
            reason: s.get("reason").unwrap(),
        }
    }
}

fn decisions(log: &common::BusLog) -> Vec<Decision> {
    log.named("vpuguardenc-decision")
        .into_iter()
        .map(Decision::from_structure)
        .collect()
}

fn decision(log: &common::BusLog) -> Decision {
    let mut all = decisions(log);
    assert_eq!(all.len(), 1, "one decision expected: {log:#?}");
    all.remove(0)
}

#[test]
fn under_budget_picks_hardware_and_output_is_h265() {
    common::init();
    let vpu = Vpu::new("under-budget", SAMPLE);
    let (log, out) = vpu.record(&vpu.guard("max-sessions=6"));
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    assert_eq!(
        decision(&log),
        Decision {
            encoder: FAKE_HW.into(),
            hardware: true,
            sessions: 3,
            max_sessions: 6,
            reason: "budget".into()
        }
    );
    // The double's session was listed while it ran, and is gone after NULL.
    assert_eq!(vpu.peak(), 4);
    assert_eq!(vpu.sessions(), 3);
    assert_eq!(common::probe_video(&out), ("hevc".to_string(), 30));
}

/// The resolution changes mid-stream: the guard keeps its decision (no second
/// session is opened), the hardware encoder follows the new size and no frame
/// is lost. (The software path is covered in tests/faults.rs.)
#[test]
fn caps_renegotiated_mid_stream_keep_the_hardware_encoder() {
    common::init();
    let vpu = Vpu::new("renegotiation", SAMPLE);
    // An elementary stream: Matroska refuses caps changes.
    let out = vpu.dir.join("out.h265");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=60 ! capsfilter name=size \
           caps=video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
         {} name=guard ! video/x-h265,stream-format=byte-stream ! filesink location={}",
        vpu.guard("max-sessions=6"),
        out.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    common::change_caps_at(
        &pipeline.by_name("size").unwrap(),
        29,
        common::i420(640, 480),
    );
    let widths = common::caps_widths(
        &pipeline
            .by_name("guard")
            .unwrap()
            .static_pad("src")
            .unwrap(),
    );
    let guard = pipeline.by_name("guard").unwrap();
    let hardware_now = || {
        let stats = guard.property::<gst::Structure>("stats");
        stats.get::<bool>("hardware").unwrap()
    };
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    // The hardware chain is working until the stream stops, not after.
    assert!(hardware_now());
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(!hardware_now());
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    assert_eq!(decision(&log).encoder, FAKE_HW);
    // One session for the whole stream, closed at NULL.
    assert_eq!((vpu.peak(), vpu.sessions()), (4, 3));
    let mut widths = widths.lock().unwrap().clone();
    widths.dedup();
    assert_eq!(widths, [320, 640]);
    assert_eq!(common::probe_video(&out), ("hevc".to_string(), 60));
}

#[test]
fn at_budget_picks_software_and_output_is_h264() {
    common::init();
    // Six sessions already open on a board whose budget is six.
    let vpu = Vpu::new("at-budget", &SAMPLE.repeat(2));
    let (log, out) = vpu.record(&vpu.guard("max-sessions=6"));
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    assert_eq!(
        decision(&log),
        Decision {
            encoder: "x264enc".into(),
            hardware: false,
            sessions: 6,
            max_sessions: 6,
            reason: "over-budget".into()
        }
    );
    // The VPU was never touched.
    assert_eq!(vpu.peak(), 0);
    assert_eq!(common::probe_video(&out), ("h264".to_string(), 30));
}

#[test]
fn non_live_tee_with_a_second_branch_does_not_deadlock() {
    common::init();
    // Building the chain must not make the source renegotiate: its new
    // ALLOCATION query would wait behind the other branch's prerolled sink.
    let log = common::run_to_eos(
        &format!(
            "{SOURCE} ! tee name=t t. ! queue ! vpuguardenc mode=software ! fakesink \
             t. ! queue ! fakesink"
        ),
        Duration::from_secs(20),
    );
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
}

#[test]
fn flvmux_downstream_steers_to_software() {
    common::init();
    let vpu = Vpu::new("flvmux", "");
    let out = vpu.dir.join("out.flv");
    let log = common::run_to_eos(
        &format!(
            "{SOURCE} ! {} ! flvmux ! filesink location={}",
            vpu.guard(""),
            out.display()
        ),
        TIMEOUT,
    );
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let d = decision(&log);
    assert_eq!((d.encoder.as_str(), d.hardware), ("x264enc", false));
    assert_eq!(d.reason, "downstream-caps");
    assert_eq!(vpu.peak(), 0);
    // h264parse inside the bin turned byte-stream into the avc flvmux needs.
    assert_eq!(common::probe_video(&out), ("h264".to_string(), 30));
}

#[test]
fn downstream_taking_neither_codec_is_an_error_saying_what_it_wants() {
    common::init();
    let pipeline = gst::parse::launch(&format!(
        "{SOURCE} ! vpuguardenc name=guard mode=software  capsfilter name=vp8 caps=video/x-vp8 ! fakesink"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    // gst-launch would refuse this link up front; an application linking
    // without checks only finds out at negotiation.
    let guard_src = pipeline
        .by_name("guard")
        .unwrap()
        .static_pad("src")
        .unwrap();
    let vp8_sink = pipeline.by_name("vp8").unwrap().static_pad("sink").unwrap();
    guard_src
        .link_full(&vp8_sink, gst::PadLinkCheck::empty())
        .unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let log = common::collect_bus(&pipeline, TIMEOUT, |_| false);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(!log.eos);
    assert_eq!(log.errors.len(), 1, "{log:#?}");
    let error = &log.errors[0];
    assert!(error.contains("accepts neither H.265 nor H.264"), "{error}");
    assert!(error.contains("video/x-vp8"), "{error}");
}

#[test]
fn unreadable_session_file_falls_back_to_the_ledger() {
    common::init();
    let vpu = Vpu::new("ledger", "");
    let missing = vpu.dir.join("no-such-listing");
    // Two guards share a budget of one: the first holds the only slot.
    let guard = |name: &str| {
        format!(
            "vpuguardenc name={name} hw-encoder={FAKE_HW} session-file={} lock-dir={} max-sessions=1",
            missing.display(),
            vpu.lock_dir().display()
        )
    };
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! {} ! fakesink \
         videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! {} ! fakesink",
        guard("a"),
        guard("b")
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |log| {
        log.named("vpuguardenc-decision").len() == 2
    });
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(log.errors.is_empty(), "{log:#?}");
    let mut reasons: Vec<(bool, String, u32)> = decisions(&log)
        .into_iter()
        .map(|d| (d.hardware, d.reason, d.sessions))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            (false, "over-budget".to_string(), 1),
            (true, "session-file-unreadable".to_string(), 0)
        ]
    );
    // Each guard says once that it could not read the listing.
    let unreadable: Vec<_> = log
        .warnings
        .iter()
        .filter(|w| w.contains("budget-source=mpp: No MPP session listing is readable"))
        .collect();
    assert_eq!(unreadable.len(), 2, "{log:#?}");
    for name in ["GstVpuGuardEnc:a:", "GstVpuGuardEnc:b:"] {
        assert_eq!(
            unreadable.iter().filter(|w| w.contains(name)).count(),
            1,
            "{log:#?}"
        );
    }
    assert!(unreadable.iter().all(|w| w.contains("no-such-listing")));
}

/// Starts a pipeline and runs it until its guard's decision, without errors.
fn play_until_decision(description: &str) -> (gst::Pipeline, Decision) {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&pipeline, TIMEOUT, |log| {
        !log.named("vpuguardenc-decision").is_empty()
    });
    assert!(log.errors.is_empty(), "{log:#?}");
    (pipeline, decision(&log))
}

/// Builds a pipeline with a guard named `guard`, runs it until the decision and
/// returns the chosen child with the pipeline (PLAYING).
fn decided(description: &str) -> (gst::Pipeline, gst::Element) {
    let (pipeline, _) = play_until_decision(description);
    let guard = pipeline
        .by_name("guard")
        .unwrap()
        .downcast::<gst::Bin>()
        .unwrap();
    let active: String = guard.property("active-encoder");
    let child = guard
        .iterate_elements()
        .into_iter()
        .map(Result::unwrap)
        .find(|e| e.factory().unwrap().name() == active)
        .unwrap_or_else(|| panic!("no {active} child"));
    (pipeline, child)
}

#[test]
fn bitrate_and_gop_reach_each_encoder_in_its_own_unit() {
    common::init();
    let vpu = Vpu::new("mapping", "");
    let live =
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1";

    let (pipeline, hw) = decided(&format!(
        "{live} ! {} ! fakesink",
        vpu.guard("name=guard bitrate=2500 gop=15")
    ));
    assert_eq!(hw.factory().unwrap().name(), FAKE_HW);
    assert_eq!(hw.property::<u32>("bps"), 2_500_000);
    assert_eq!(hw.property::<i32>("gop"), 15);
    let guard = pipeline.by_name("guard").unwrap();
    assert!(guard.property::<bool>("hardware"));
    assert_eq!(guard.property::<String>("active-encoder"), FAKE_HW);
    pipeline.set_state(gst::State::Null).unwrap();
    // Back in NULL the guard holds nothing.
    assert_eq!(guard.property::<String>("active-encoder"), "");

    let (pipeline, sw) = decided(&format!(
        "{live} ! vpuguardenc name=guard mode=software bitrate=2500 gop=15 \
         sw-properties=\"props,speed-preset=superfast,tune=zerolatency\" ! fakesink"
    ));
    assert_eq!(sw.factory().unwrap().name(), "x264enc");
    assert_eq!(sw.property::<u32>("bitrate"), 2500);
    assert_eq!(sw.property::<u32>("key-int-max"), 15);
    let preset = sw.property_value("speed-preset");
    assert_eq!(
        glib::EnumValue::from_value(&preset).unwrap().1.nick(),
        "superfast"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn bad_child_properties_are_errors_naming_them() {
    common::init();
    let cases = [
        (
            "props,no-such-prop=1",
            vec!["sw-properties", "no-such-prop", "x264enc"],
        ),
        (
            "props,speed-preset=warp",
            vec!["sw-properties", "warp", "speed-preset"],
        ),
        ("props,bitrate=-5", vec!["sw-properties", "bitrate"]),
    ];
    for (props, words) in cases {
        let log = common::run_to_eos(
            &format!("{SOURCE} ! vpuguardenc mode=software sw-properties=\"{props}\" ! fakesink"),
            TIMEOUT,
        );
        assert!(!log.eos, "{props}: {log:#?}");
        assert_eq!(log.errors.len(), 1, "{props}: {log:#?}");
        for word in words {
            assert!(
                log.errors[0].contains(word),
                "{props}: '{word}' not in {}",
                log.errors[0]
            );
        }
    }
    // A string that is no structure at all fails at start, naming the property.
    let log = common::run_to_eos(
        &format!("{SOURCE} ! vpuguardenc hw-properties=\"props,=,,\" ! fakesink"),
        TIMEOUT,
    );
    assert_eq!(log.errors.len(), 1, "{log:#?}");
    assert!(log.errors[0].contains("hw-properties"), "{}", log.errors[0]);
}

#[test]
fn missing_software_encoder_is_an_error_naming_it() {
    common::init();
    let log = common::run_to_eos(
        &format!("{SOURCE} ! vpuguardenc sw-encoder=nosuchenc ! fakesink"),
        TIMEOUT,
    );
    assert_eq!(log.errors.len(), 1, "{log:#?}");
    assert!(log.errors[0].contains("sw-encoder") && log.errors[0].contains("nosuchenc"));
}

#[test]
fn missing_hardware_encoder_is_software_in_auto_mode() {
    common::init();
    let vpu = Vpu::new("no-hw", "");
    let log = common::run_to_eos(
        &format!(
            "{SOURCE} ! vpuguardenc hw-encoder=nosuchmpp lock-dir={} ! fakesink",
            vpu.lock_dir().display()
        ),
        TIMEOUT,
    );
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let d = decision(&log);
    assert_eq!(
        (d.encoder.as_str(), d.reason.as_str()),
        ("x264enc", "no-hw-encoder")
    );
}

#[test]
fn hardware_mode_fails_clearly_when_the_budget_is_spent() {
    common::init();
    let vpu = Vpu::new("hw-mode", &SAMPLE.repeat(2));
    let log = common::run_to_eos(
        &format!(
            "{SOURCE} ! {} ! fakesink",
            vpu.guard("mode=hardware max-sessions=6")
        ),
        TIMEOUT,
    );
    assert_eq!(log.errors.len(), 1, "{log:#?}");
    assert!(
        log.errors[0].contains("no VPU slot is free: 6 of max-sessions=6"),
        "{}",
        log.errors[0]
    );
    assert_eq!(vpu.peak(), 0);
}

#[test]
fn hardware_start_failure_falls_back_without_an_error() {
    common::init();
    // The listing is empty but the "VPU" refuses any session, as a wedged one does.
    let vpu = Vpu::new("start-fail", "");
    let (log, out) = vpu.record(&vpu.guard_with_double(",hard-limit=0", ""));
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let d = decision(&log);
    assert_eq!((d.encoder.as_str(), d.hardware), ("x264enc", false));
    assert_eq!(d.reason, "hw-start-failed");
    assert!(
        log.warnings.iter().any(|w| w.contains("failed to start")),
        "{log:#?}"
    );
    assert_eq!(vpu.sessions(), 0);
    assert_eq!(common::probe_video(&out), ("h264".to_string(), 30));
}

#[test]
fn a_state_change_of_the_bin_while_its_chain_is_built_leaves_the_chain_to_the_guard() {
    common::init();
    // The application's thread sets the guard's state at once after the
    // hardware encoder entered the bin, before the guard started it (as the
    // pipeline going to PLAYING does while the streaming thread decides). The
    // encoder cannot start; its failure must still be the guard's.
    let vpu = Vpu::new("bin-state", "");
    let mut bin_changes = None;
    let (log, out) = vpu.record_with(&vpu.guard_with_double(",hard-limit=0", ""), |pipeline| {
        bin_changes = Some(common::set_state_when_added(
            pipeline,
            FAKE_HW,
            gst::State::Paused,
        ))
    });
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let bin_changes = bin_changes.unwrap().lock().unwrap().clone();
    assert_eq!(bin_changes, vec![Ok(gst::StateChangeSuccess::Success)]);
    assert_eq!(decision(&log).reason, "hw-start-failed");
    assert_eq!(vpu.sessions(), 0);
    assert_eq!(common::probe_video(&out), ("h264".to_string(), 30));
}

#[test]
fn hardware_failing_on_its_first_frame_falls_back_losing_nothing() {
    common::init();
    let vpu = Vpu::new("first-frame-fail", "");
    let (log, out) = vpu.record(&vpu.guard_with_double(",fail-on-first-buffer=true", ""));
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let all = decisions(&log);
    let reasons: Vec<_> = all
        .iter()
        .map(|d| (d.encoder.as_str(), d.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![(FAKE_HW, "budget"), ("x264enc", "hw-start-failed")]
    );
    // The session the failed encoder held is closed.
    assert_eq!(vpu.sessions(), 0);
    // Every frame made it, the one the hardware choked on included.
    assert_eq!(common::probe_video(&out), ("h264".to_string(), 30));
}

#[test]
fn a_child_error_the_guard_does_not_handle_reaches_the_application_unchanged() {
    common::init();
    let vpu = Vpu::new("mid-stream-fail", "");
    // The double encodes on its own thread and fails there after output has
    // flowed, with frames still queued: the asynchronous field failure.
    let log = common::run_to_eos(
        &format!(
            "{SOURCE} ! {} ! fakesink",
            vpu.guard_with_double(
                ",output-thread=true,fail-after-buffers=10",
                "name=cam0 failover-encoder=none"
            )
        ),
        TIMEOUT,
    );
    // After output has flowed, no silent fallback: the application is told.
    assert_eq!(decisions(&log).len(), 1, "{log:#?}");
    assert_eq!(log.errors.len(), 1, "{log:#?}");
    let error = &log.errors[0];
    // The source is the element that failed, inside the guard's child, and
    // its message and debug are its own.
    let (source, text) = error.split_once(": ").unwrap();
    assert!(
        source.starts_with("/GstPipeline:pipeline")
            && source.contains("/GstVpuGuardEnc:cam0/EdgeguardTestFakeMppH265Enc:")
            && source.ends_with("/GstIdentity:mpp-encode"),
        "{error}"
    );
    assert!(
        text.starts_with("Failed after iterations as requested."),
        "{error}"
    );
    assert!(text.contains("gstidentity.c"), "{error}");
    // Its session and slot are released once the pipeline stops.
    assert_eq!(vpu.sessions(), 0);
}

#[test]
fn a_failure_on_the_output_thread_before_any_output_falls_back_losing_nothing() {
    common::init();
    let vpu = Vpu::new("async-first-frame-fail", "");
    // The first frame fails on the encoder's own thread while the streaming
    // thread has already handed it more frames.
    let (log, out) =
        vpu.record(&vpu.guard_with_double(",output-thread=true,fail-after-buffers=1", ""));
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let reasons: Vec<_> = decisions(&log)
        .into_iter()
        .map(|d| (d.encoder, d.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (FAKE_HW.to_string(), "budget".to_string()),
            ("x264enc".to_string(), "hw-start-failed".to_string())
        ]
    );
    assert_eq!(vpu.sessions(), 0);
    // The frames in flight went to the software encoder too.
    assert_eq!(common::probe_video(&out), ("h264".to_string(), 30));
}

/// The only frame fails on the encoder's own thread, and EOS follows at
/// once: no later frame would see the failure, so EOS itself must hand the
/// stream to software, or it ends in a dead child and the application gets
/// neither EOS nor an error.
#[test]
fn eos_right_after_a_failure_on_the_output_thread_still_falls_back() {
    common::init();
    let vpu = Vpu::new("async-fail-then-eos", "");
    let out = vpu.dir.join("out.mkv");
    let log = common::run_to_eos(
        &format!(
            "videotestsrc num-buffers=1 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
             {} ! matroskamux ! filesink location={}",
            vpu.guard_with_double(",output-thread=true,fail-after-buffers=1", ""),
            out.display()
        ),
        TIMEOUT,
    );
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let reasons: Vec<_> = decisions(&log).into_iter().map(|d| d.reason).collect();
    assert_eq!(reasons, vec!["budget", "hw-start-failed"]);
    assert_eq!(common::probe_video(&out), ("h264".to_string(), 1));
}

#[test]
fn session_file_vanishing_or_changing_between_decisions() {
    common::init();
    let vpu = Vpu::new("vanishing", "");
    let live =
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1";
    let desc = format!(
        "{live} ! {} ! fakesink",
        vpu.guard("name=guard max-sessions=2")
    );
    // First guard: the listing is there and empty.
    let (a, _) = decided(&desc);
    assert!(a.by_name("guard").unwrap().property::<bool>("hardware"));
    // The listing vanishes (driver reloaded, debugfs unmounted): the next
    // guard still counts the first one through its slot.
    std::fs::remove_file(&vpu.session_file).unwrap();
    vpu.expire_snapshot();
    let (p, d) = play_until_decision(&desc);
    assert_eq!(
        (d.hardware, d.sessions, d.reason.as_str()),
        (true, 1, "session-file-unreadable"),
        "{d:?}"
    );
    p.set_state(gst::State::Null).unwrap();
    // It comes back listing three sessions of other processes, and not the
    // first guard's (a listing that lags): that one counts through its slot.
    std::fs::write(&vpu.session_file, SAMPLE).unwrap();
    let (b, _) = decided(&desc);
    let guard = b.by_name("guard").unwrap();
    assert!(!guard.property::<bool>("hardware"));
    assert_eq!(guard.property::<u32>("sessions"), 4);
    b.set_state(gst::State::Null).unwrap();
    a.set_state(gst::State::Null).unwrap();
}

#[test]
fn cycling_through_null_releases_and_retakes_the_slot() {
    common::init();
    let vpu = Vpu::new("cycle", "");
    let live =
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1";
    let desc = format!(
        "{live} ! {} ! fakesink",
        vpu.guard("name=guard max-sessions=1")
    );
    let (a, _) = decided(&desc);
    assert!(a.by_name("guard").unwrap().property::<bool>("hardware"));
    assert_eq!(vpu.sessions(), 1);

    let (b, _) = decided(&desc);
    assert!(!b.by_name("guard").unwrap().property::<bool>("hardware"));

    a.set_state(gst::State::Null).unwrap();
    assert_eq!(vpu.sessions(), 0);
    b.set_state(gst::State::Null).unwrap();

    // A new stream decides anew: the slot is free again.
    b.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&b, TIMEOUT, |log| {
        !log.named("vpuguardenc-decision").is_empty()
    });
    assert!(decision(&log).hardware, "{log:#?}");
    assert_eq!(vpu.sessions(), 1);
    b.set_state(gst::State::Null).unwrap();
    assert_eq!(vpu.sessions(), 0);
    assert_eq!(vpu.peak(), 1);
}

// ---- several processes -------------------------------------------------------

const CHILD_ROLE: &str = "EDGEGUARD_VPUGUARD_CHILD";

/// Not a test on its own: the body of the helper processes that the
/// multi-process tests start (this test binary, run again with CHILD_ROLE set).
/// It starts EDGEGUARD_PIPELINES live pipelines at once, prints how many got
/// hardware, and holds them until its stdin closes.
#[test]
fn child_process_entry() {
    if let Ok(dir) = std::env::var(HOLD_LOCK) {
        hold_decision_lock(&dir);
        return;
    }
    let Ok(args) = std::env::var(CHILD_ROLE) else {
        return;
    };
    common::init();
    let count: usize = std::env::var("EDGEGUARD_PIPELINES")
        .unwrap()
        .parse()
        .unwrap();
    if let Ok(seconds) = std::env::var(CHURN_SECONDS) {
        churn(&args, count, seconds.parse().unwrap());
        return;
    }
    let threads: Vec<_> = (0..count)
        .map(|_| {
            let args = args.clone();
            std::thread::spawn(move || {
                let (pipeline, d) = play_until_decision(&format!(
                    "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
                     vpuguardenc name=guard {args} ! fakesink"
                ));
                (pipeline, d.hardware)
            })
        })
        .collect();
    let pipelines: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let hw = pipelines.iter().filter(|(_, hw)| *hw).count();
    println!("RESULT hw={hw} sw={}", pipelines.len() - hw);
    std::io::stdout().flush().unwrap();
    // Hold every session until the parent has seen all processes decide.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    for (pipeline, _) in pipelines {
        pipeline.set_state(gst::State::Null).unwrap();
    }
}

const CHURN_SECONDS: &str = "EDGEGUARD_CHURN_SECONDS";
const HOLD_LOCK: &str = "EDGEGUARD_HOLD_DECISION_LOCK";

/// Child side of the lock tests: what a process stuck inside a hardware
/// encoder's start looks like from outside. Takes the decision lock of `dir`,
/// says so, and holds it until stdin closes.
fn hold_decision_lock(dir: &str) {
    let _lock = gstedgeguard::vpu::budget::Held::lock(std::path::Path::new(dir)).unwrap();
    println!("LOCKED");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// Child side of the churn test: `count` threads each start a pipeline, let it
/// run 0.2-1 s, stop it, and start again, until `seconds` have passed. Prints
/// the decisions taken and whether any hardware start failed.
fn churn(args: &str, count: usize, seconds: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..count)
        .map(|i| {
            let args = args.to_string();
            std::thread::spawn(move || {
                let (mut hw, mut sw, mut failed) = (0u32, 0u32, 0u32);
                let mut round = 0u64;
                while std::time::Instant::now() < deadline {
                    let (pipeline, d) = play_until_decision(&format!(
                        "videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 ! \
                         vpuguardenc name=guard {args} ! fakesink"
                    ));
                    match (d.hardware, d.reason.as_str()) {
                        (_, "hw-start-failed") => failed += 1,
                        (true, _) => hw += 1,
                        (false, _) => sw += 1,
                    }
                    // Vary how long each pipeline holds its encoder.
                    round += 1;
                    std::thread::sleep(Duration::from_millis(200 + (round * 37 + i as u64 * 101) % 800));
                    pipeline.set_state(gst::State::Null).unwrap();
                }
                (hw, sw, failed)
            })
        })
        .collect();
    let (mut hw, mut sw, mut failed) = (0, 0, 0);
    for t in threads {
        let (h, s, f) = t.join().unwrap();
        hw += h;
        sw += s;
        failed += f;
    }
    println!("CHURN hw={hw} sw={sw} failed={failed}");
}

struct Child {
    process: std::process::Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Child {
    fn spawn(guard_args: &str, pipelines: usize) -> Self {
        Self::spawn_with(
            Command::new(std::env::current_exe().unwrap()),
            guard_args,
            pipelines,
        )
    }

    /// Runs `command` (this test binary, maybe behind a uid switch) as a child.
    fn spawn_with(mut command: Command, guard_args: &str, pipelines: usize) -> Self {
        let mut process = command
            .args([
                "--exact",
                "child_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ROLE, guard_args)
            .env("EDGEGUARD_PIPELINES", pipelines.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(process.stdout.take().unwrap());
        Child { process, stdout }
    }

    /// Starts a process that holds the decision lock of `lock_dir`, and
    /// returns once it does.
    fn holding_decision_lock(lock_dir: &std::path::Path) -> Self {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_process_entry", "--nocapture"])
            .env(HOLD_LOCK, lock_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(process.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("LOCKED") {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "lock holder exited"
            );
        }
        Child { process, stdout }
    }

    /// Waits for the child's RESULT line: (hardware, software) pipelines.
    fn result(&mut self) -> (usize, usize) {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "child exited without a result"
            );
            // The test harness prints its own text on the same line first.
            if let Some((_, rest)) = line.trim().split_once("RESULT ") {
                let nums: Vec<usize> = rest
                    .split(' ')
                    .map(|kv| kv.split('=').nth(1).unwrap().parse().unwrap())
                    .collect();
                return (nums[0], nums[1]);
            }
        }
    }

    fn finish(mut self) {
        drop(self.process.stdin.take());
        assert!(self.process.wait().unwrap().success());
    }
}

fn twelve_pipelines_in_three_processes(guard_args: &str) -> usize {
    let mut children: Vec<Child> = (0..3).map(|_| Child::spawn(guard_args, 4)).collect();
    let results: Vec<_> = children.iter_mut().map(Child::result).collect();
    for child in children {
        child.finish();
    }
    assert_eq!(results.iter().map(|(h, s)| h + s).sum::<usize>(), 12);
    results.iter().map(|(h, _)| h).sum()
}

#[test]
fn twelve_pipelines_in_three_processes_share_four_slots_by_session_file() {
    common::init();
    let vpu = Vpu::new("procs-file", "");
    // The double's hard limit is the budget: one session too many would fail.
    let sf = vpu.session_file.display();
    let args = format!(
        "hw-encoder={FAKE_HW} max-sessions=4 session-file={sf} lock-dir={} \
         hw-properties=\"props,session-file={sf},hard-limit=4\"",
        vpu.lock_dir().display()
    );
    assert_eq!(twelve_pipelines_in_three_processes(&args), 4);
    assert_eq!(vpu.peak(), 4);
    assert_eq!(vpu.sessions(), 0);
}

#[test]
fn twelve_pipelines_in_three_processes_share_four_slots_by_ledger() {
    common::init();
    let vpu = Vpu::new("procs-ledger", "");
    let sf = vpu.session_file.display();
    let args = format!(
        "hw-encoder={FAKE_HW} max-sessions=4 session-file={} lock-dir={} \
         hw-properties=\"props,session-file={sf}\"",
        vpu.dir.join("unreadable").display(),
        vpu.lock_dir().display()
    );
    assert_eq!(twelve_pipelines_in_three_processes(&args), 4);
    assert_eq!(vpu.peak(), 4);
}

#[test]
fn churn_in_four_processes_never_exceeds_the_budget() {
    common::init();
    let seconds: u64 = std::env::var(CHURN_SECONDS)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let vpu = Vpu::new("churn", "");
    // The double refuses a fifth session, as an overloaded VPU would.
    let args = vpu.guard_with_double(",hard-limit=4", "max-sessions=4");
    let args = args.trim_start_matches("vpuguardenc ");
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_process_entry",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ROLE, args)
                .env("EDGEGUARD_PIPELINES", "4")
                .env(CHURN_SECONDS, seconds.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut hw, mut sw) = (0, 0);
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        let line = text
            .lines()
            .find_map(|l| l.split_once("CHURN ").map(|(_, r)| r.to_string()))
            .unwrap_or_else(|| panic!("no CHURN line: {text}"));
        let nums: Vec<u32> = line
            .split(' ')
            .map(|kv| kv.split('=').nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            nums[2], 0,
            "a hardware start failed: the budget was exceeded"
        );
        hw += nums[0];
        sw += nums[1];
    }
    println!(
        "churn: {seconds} s, 16 pipelines in 4 processes: {hw} hardware and {sw} software decisions, peak {} sessions",
        vpu.peak()
    );
    // Never more than the budget at once, and the budget was used.
    assert_eq!(vpu.peak(), 4);
    assert!(hw >= 4 && sw > 0, "hw {hw} sw {sw}");
    assert_eq!(vpu.sessions(), 0);
}

#[test]
fn a_killed_process_frees_its_slots() {
    common::init();
    let vpu = Vpu::new("sigkill", "");
    let args = format!(
        "hw-encoder={FAKE_HW} max-sessions=2 session-file={} lock-dir={}",
        vpu.dir.join("unreadable").display(),
        vpu.lock_dir().display()
    );
    let mut child = Child::spawn(&args, 2);
    assert_eq!(child.result(), (2, 0));
    // The budget is spent while the child lives.
    let live =
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1";
    let (p, _) = decided(&format!(
        "{live} ! vpuguardenc name=guard {args} ! fakesink"
    ));
    assert!(!p.by_name("guard").unwrap().property::<bool>("hardware"));
    p.set_state(gst::State::Null).unwrap();

    child.process.kill().unwrap(); // SIGKILL: no cleanup runs in the child
    child.process.wait().unwrap();
    let (p, _) = decided(&format!(
        "{live} ! vpuguardenc name=guard {args} ! fakesink"
    ));
    assert!(p.by_name("guard").unwrap().property::<bool>("hardware"));
    p.set_state(gst::State::Null).unwrap();
}

// ---- budgets that hold for every user, every encoder plugin, every load ------

/// A command that runs this test binary as the unprivileged user 65534
/// (nobody). The binary is copied where that user can read it, and `dir`
/// (sticky, world-writable) holds what it writes.
fn as_nobody(dir: &std::path::Path) -> Command {
    use std::os::unix::fs::PermissionsExt;
    let exe = dir.join("vpuguardenc-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        // nobody has no home to keep a registry in.
        .env("GST_REGISTRY", dir.join("registry-nobody.bin"))
        .env("HOME", dir);
    command
}

/// Lets another user create files in `dir` and write `files`.
fn share_with_other_users(dir: &std::path::Path, files: &[PathBuf]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    for file in files {
        if !file.exists() {
            std::fs::write(file, "").unwrap();
        }
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
}

#[test]
fn two_users_share_one_budget() {
    common::init();
    let vpu = Vpu::new("two-users", "");
    let files: Vec<PathBuf> = ["", ".lock", ".peak", ".peak.lock"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", vpu.session_file.display())))
        .collect();
    share_with_other_users(&vpu.dir, &files);
    let args = vpu.guard("max-sessions=2");
    let args = args.trim_start_matches("vpuguardenc ");
    // root first, so the lock and slot files exist, owned by root, when
    // nobody's guards come to decide.
    let mut root = Child::spawn(args, 2);
    let root_result = root.result();
    let mut nobody = Child::spawn_with(as_nobody(&vpu.dir), args, 2);
    let nobody_result = nobody.result();
    root.finish();
    nobody.finish();
    assert_eq!(root_result.0 + root_result.1, 2);
    assert_eq!(
        nobody_result.0 + nobody_result.1,
        2,
        "nobody's guards decided"
    );
    assert_eq!(
        root_result.0 + nobody_result.0,
        2,
        "{root_result:?} {nobody_result:?}"
    );
    assert_eq!(vpu.peak(), 2);
}

#[test]
fn a_held_decision_lock_means_software_after_lock_timeout() {
    common::init();
    let vpu = Vpu::new("lock-timeout", "");
    let holder = Child::holding_decision_lock(&vpu.lock_dir());
    // 0.2 s; the decision must come well before the generous bound below.
    let (p, d) = play_until_decision(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! {} ! fakesink",
        vpu.guard("name=guard lock-timeout=200000000")
    ));
    p.set_state(gst::State::Null).unwrap();
    holder.finish();
    assert_eq!(
        (d.encoder.as_str(), d.hardware, d.reason.as_str()),
        ("x264enc", false, "lock-timeout")
    );
    assert_eq!(vpu.peak(), 0);
}

#[test]
fn the_lock_timeout_warning_names_the_lock_file() {
    common::init();
    let vpu = Vpu::new("lock-timeout-warning", "");
    let holder = Child::holding_decision_lock(&vpu.lock_dir());
    let log = common::run_to_eos(
        &format!(
            "videotestsrc num-buffers=2 ! video/x-raw,format=I420,width=320,height=240 ! {} ! fakesink",
            vpu.guard("lock-timeout=1")
        ),
        TIMEOUT,
    );
    holder.finish();
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    assert_eq!(decision(&log).reason, "lock-timeout");
    let lock_file = vpu.lock_dir().join("decision.lock");
    assert!(
        log.warnings
            .iter()
            .any(|w| w.contains(&lock_file.display().to_string())),
        "{log:#?}"
    );
}

#[test]
fn waiting_for_the_decision_lock_never_blocks_going_to_null() {
    common::init();
    let vpu = Vpu::new("lock-null", "");
    let holder = Child::holding_decision_lock(&vpu.lock_dir());
    // An hour of lock-timeout: only giving up on shutdown lets NULL through.
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! {} ! fakesink",
        vpu.guard("lock-timeout=3600000000000")
    ))
    .unwrap()
    .downcast::<gst::Bin>()
    .unwrap();
    let (caps_tx, caps_rx) = std::sync::mpsc::channel();
    let guard = pipeline.iterate_all_by_element_factory_name("vpuguardenc");
    let guard = guard.into_iter().next().unwrap().unwrap();
    guard.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if matches!(info.event().map(|e| e.type_()), Some(gst::EventType::Caps)) {
                let _ = caps_tx.send(());
            }
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    // The streaming thread enters the CAPS handler, where it waits for the lock.
    caps_rx.recv_timeout(TIMEOUT).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (tx, rx) = std::sync::mpsc::channel();
    let p = pipeline.clone();
    std::thread::spawn(move || {
        tx.send(p.set_state(gst::State::Null)).unwrap();
    });
    let result = rx.recv_timeout(TIMEOUT);
    holder.finish();
    assert_eq!(result, Ok(Ok(gst::StateChangeSuccess::Success)));
    // No decision, no error: the stream was stopped before it had one.
    let bus = pipeline.bus().unwrap();
    while let Some(msg) = bus.pop() {
        assert!(
            !matches!(msg.view(), gst::MessageView::Error(..)),
            "{msg:?}"
        );
    }
}

#[test]
fn twelve_pipelines_with_a_late_opening_encoder_and_two_other_sessions_get_two_slots() {
    common::init();
    // Two sessions of programs that are not guards: an encoder and a decoder.
    let others = format!(
        "{}session: pid=1 index=2\n device: fdc38100.rkvdec-core\n",
        fake_mpp::record(1, 1, 1280, 720, 30, 0)
    );
    let vpu = Vpu::new("procs-open-at-caps", &others);
    let args = vpu.guard_with_double(",open-at-caps=true", "max-sessions=4");
    let args = args.trim_start_matches("vpuguardenc ");
    assert_eq!(twelve_pipelines_in_three_processes(args), 2);
    // Never more than the budget at once, the two other sessions included
    // (the two hardware streams may or may not overlap in time).
    let peak = vpu.peak();
    assert!((3..=4).contains(&peak), "peak {peak}");
    assert_eq!(vpu.sessions(), 2);
}

/// Decides one 1080p30 stream against `listing` with a pixel budget of
/// 3840x2160 at 120 fps and room for six sessions.
fn decide_1080p30_against(listing: &str) -> gst::Structure {
    let vpu = Vpu::new("pixels", listing);
    let log = common::run_to_eos(
        &format!(
            "videotestsrc num-buffers=2 ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 ! {} ! fakesink",
            vpu.guard(
                "max-sessions=6 max-pixel-rate=995328000 \
                 sw-properties=\"props,speed-preset=ultrafast\""
            )
        ),
        TIMEOUT,
    );
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let decisions = log.named("vpuguardenc-decision");
    assert_eq!(decisions.len(), 1, "{log:#?}");
    decisions[0].clone()
}

#[test]
fn two_4k60_encoders_leave_no_pixel_budget_for_1080p30() {
    common::init();
    let listing =
        fake_mpp::record(1, 1, 3840, 2160, 60, 0) + &fake_mpp::record(1, 2, 3840, 2160, 60, 0);
    let d = decide_1080p30_against(&listing);
    assert_eq!(
        d.get::<String>("reason").unwrap(),
        "over-pixel-budget",
        "{d:?}"
    );
    assert!(!d.get::<bool>("hardware").unwrap());
    // Only two sessions are open: the session budget alone would have said yes.
    assert_eq!(d.get::<u32>("sessions").unwrap(), 2);
    assert_eq!(d.get::<u64>("pixel-rate").unwrap(), 2 * 3840 * 2160 * 60);
    assert_eq!(d.get::<u64>("stream-pixel-rate").unwrap(), 1920 * 1080 * 30);
    assert!(
        d.get::<String>("session-file")
            .unwrap()
            .ends_with("sessions-summary")
    );
}

#[test]
fn two_720p30_encoders_leave_pixel_budget_for_1080p30() {
    common::init();
    let listing =
        fake_mpp::record(1, 1, 1280, 720, 30, 0) + &fake_mpp::record(1, 2, 1280, 720, 30, 0);
    let d = decide_1080p30_against(&listing);
    assert_eq!(d.get::<String>("reason").unwrap(), "budget", "{d:?}");
    assert!(d.get::<bool>("hardware").unwrap());
    assert_eq!(d.get::<u64>("pixel-rate").unwrap(), 2 * 1280 * 720 * 30);
}

#[test]
fn the_pixel_rate_property_says_the_load_seen() {
    common::init();
    let vpu = Vpu::new("pixel-property", &fake_mpp::record(1, 1, 1280, 720, 30, 0));
    let (p, _) = play_until_decision(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! {} ! fakesink",
        vpu.guard("name=guard")
    ));
    let guard = p.by_name("guard").unwrap();
    assert_eq!(guard.property::<u64>("pixel-rate"), 1280 * 720 * 30);
    p.set_state(gst::State::Null).unwrap();
}
