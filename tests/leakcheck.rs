// SPDX-License-Identifier: MPL-2.0
//! leakcheck through real pipelines: each finding provoked for real, and clean
//! pipelines (decodebin, playbin, tee and queues) with none.

mod common;

use gst::prelude::*;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a wait may last before the test counts it as hung: a bound for
/// hangs, not an expectation of speed (valgrind slows these tests tenfold).
const HANG: Duration = Duration::from_secs(120);

fn pipeline(description: &str) -> gst::Pipeline {
    common::init();
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

fn play(p: &gst::Pipeline) {
    p.set_state(gst::State::Playing).unwrap();
    let (result, state, _) = p.state(gst::ClockTime::from_seconds(HANG.as_secs()));
    assert!(result.is_ok());
    assert_eq!(state, gst::State::Playing);
}

/// An element kept in its state while its pipeline goes to NULL, as a
/// leaking application leaves it; unlocked and set to NULL when the guard
/// drops, before the pipeline does (declared after it), even when an
/// assertion fails: disposed in PLAYING, the element would raise a CRITICAL
/// that G_DEBUG=fatal_warnings turns into a SIGTRAP, and the harness would
/// never print which assertion failed.
struct Stuck(gst::Element);

impl Stuck {
    fn lock(element: &gst::Element) -> Stuck {
        element.set_locked_state(true);
        Stuck(element.clone())
    }
}

impl Drop for Stuck {
    fn drop(&mut self) {
        self.0.set_locked_state(false);
        let _ = self.0.set_state(gst::State::Null);
    }
}

fn report(check: &gst::Element) -> gst::Structure {
    check.emit_by_name::<gst::Structure>("get-report", &[])
}

/// (kind, path) of every finding in a report.
fn findings(report: &gst::Structure) -> Vec<(String, String)> {
    report
        .get::<gst::Array>("findings")
        .unwrap()
        .iter()
        .map(|v| {
            let s = v.get::<gst::Structure>().unwrap();
            (
                s.name().to_string(),
                s.get::<String>("path")
                    .or_else(|_| s.get::<String>("target"))
                    .or_else(|_| s.get::<String>("what"))
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn finding(report: &gst::Structure, kind: &str) -> Vec<gst::Structure> {
    report
        .get::<gst::Array>("findings")
        .unwrap()
        .iter()
        .map(|v| v.get::<gst::Structure>().unwrap())
        .filter(|s| s.name() == kind)
        .collect()
}

#[test]
fn clean_pipeline_has_no_findings() {
    let p = pipeline(
        "videotestsrc num-buffers=30 ! tee name=t \
         t. ! queue ! leakcheck name=check grace=0 ! fakesink \
         t. ! queue ! fakesink",
    );
    let check = p.by_name("check").unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&p, TIMEOUT, |_| false);
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    p.set_state(gst::State::Null).unwrap();
    let r = report(&check);
    assert_eq!(r.get::<u32>("cycles").unwrap(), 1);
    assert_eq!(findings(&r), vec![]);
    assert_eq!(check.property::<u32>("leaks"), 0);
}

#[test]
fn element_removed_while_playing_is_reported_when_it_happens() {
    let p = pipeline(
        "videotestsrc is-live=true ! fakesink leakcheck name=check grace=0 identity name=victim",
    );
    let check = p.by_name("check").unwrap();
    let victim = p.by_name("victim").unwrap();
    play(&p);
    p.remove(&victim).unwrap();
    // The WARNING is on the bus right away, naming the element.
    let log = common::collect_bus(&p, HANG, |log| !log.warnings.is_empty());
    assert_eq!(log.warnings.len(), 1, "{log:#?}");
    assert!(log.warnings[0].contains("victim"), "{}", log.warnings[0]);
    assert!(log.warnings[0].contains("removed from its pipeline while playing"));
    p.set_state(gst::State::Null).unwrap();
    let r = report(&check);
    let removed = finding(&r, "removed-above-null");
    assert_eq!(removed.len(), 1, "{r}");
    assert_eq!(removed[0].get::<&str>("name").unwrap(), "victim");
    assert_eq!(removed[0].get::<&str>("state").unwrap(), "playing");
    assert_eq!(removed[0].get::<&str>("factory").unwrap(), "identity");
    victim.set_state(gst::State::Null).unwrap();
}

#[test]
fn locked_element_left_playing_is_reported_with_its_path_and_state() {
    let p = pipeline("videotestsrc is-live=true ! fakesink leakcheck name=check grace=0");
    let check = p.by_name("check").unwrap();
    // Nested in a sub-bin.
    let sub = gst::Bin::with_name("sub");
    let stuck = gst::ElementFactory::make("identity")
        .name("stuck")
        .build()
        .unwrap();
    sub.add(&stuck).unwrap();
    p.add(&sub).unwrap();
    play(&p);
    let _stuck = Stuck::lock(&stuck);
    p.set_state(gst::State::Null).unwrap();
    let r = report(&check);
    let not_null = finding(&r, "not-null");
    assert_eq!(not_null.len(), 1, "{r}");
    let f = &not_null[0];
    assert_eq!(
        f.get::<&str>("path").unwrap(),
        format!("/GstPipeline:{}/GstBin:sub/GstIdentity:stuck", p.name())
    );
    assert_eq!(f.get::<&str>("state").unwrap(), "playing");
    assert_eq!(f.get::<&str>("klass").unwrap(), "Generic");
}

#[test]
fn removed_element_still_referenced_is_reported_with_its_refcount() {
    let p = pipeline(
        "videotestsrc num-buffers=5 ! fakesink leakcheck name=check grace=0 identity name=held",
    );
    let check = p.by_name("check").unwrap();
    let held = p.by_name("held").unwrap();
    play(&p);
    p.set_state(gst::State::Null).unwrap();
    // Removed cleanly in NULL, but this test keeps a reference.
    p.remove(&held).unwrap();
    play(&p);
    p.set_state(gst::State::Null).unwrap();
    let r = report(&check);
    let alive = finding(&r, "still-alive");
    assert_eq!(alive.len(), 1, "{r}");
    assert_eq!(alive[0].get::<&str>("name").unwrap(), "held");
    assert_eq!(alive[0].get::<u32>("refcount").unwrap(), 1);
    assert!(finding(&r, "removed-above-null").is_empty());
    drop(held);
    // Once released it is gone from the next report.
    play(&p);
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(findings(&report(&check)), vec![]);
}

#[test]
fn device_handle_left_open_is_reported_with_its_path() {
    let p = pipeline(
        "filesrc name=dev location=/dev/zero blocksize=64 ! fakesink \
         leakcheck name=check grace=0 device-patterns=/dev/zero",
    );
    let check = p.by_name("check").unwrap();
    let dev = p.by_name("dev").unwrap();
    play(&p);
    // Removed without going to NULL: its fd stays open.
    let _dev = Stuck::lock(&dev);
    p.remove(&dev).unwrap();
    p.set_state(gst::State::Null).unwrap();
    let r = report(&check);
    let handles = finding(&r, "device-handle");
    assert_eq!(handles.len(), 1, "{r}");
    assert_eq!(handles[0].get::<&str>("target").unwrap(), "/dev/zero");
    assert_eq!(finding(&r, "removed-above-null").len(), 1);
    assert_eq!(finding(&r, "still-alive").len(), 1);
}

#[test]
fn growth_over_cycles_is_reported() {
    let p = pipeline("videotestsrc ! fakesink leakcheck name=check grace=0");
    let check = p.by_name("check").unwrap();
    let mut leaked = Vec::new();
    for i in 0..50 {
        play(&p);
        // Each cycle leaks one element: removed in NULL but kept referenced.
        let e = gst::ElementFactory::make("identity")
            .name(format!("leak{i}"))
            .build()
            .unwrap();
        p.add(&e).unwrap();
        p.set_state(gst::State::Null).unwrap();
        p.remove(&e).unwrap();
        leaked.push(e);
    }
    let r = report(&check);
    assert_eq!(r.get::<u32>("cycles").unwrap(), 50);
    let growth = finding(&r, "growth");
    assert_eq!(growth.len(), 1, "{r}");
    assert_eq!(growth[0].get::<&str>("what").unwrap(), "live elements");
    let per_cycle = growth[0].get::<gst::Array>("per-cycle").unwrap();
    let counts: Vec<u32> = per_cycle.iter().map(|v| v.get().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[1] == w[0] + 1), "{counts:?}");
}

#[test]
fn report_file_matches_get_report() {
    let dir = common::temp_dir("leakcheck-report");
    let file = dir.join("report.json");
    let p = pipeline(&format!(
        "videotestsrc is-live=true ! fakesink identity name=stuck \
         leakcheck name=check grace=0 report-file={}",
        file.display()
    ));
    let check = p.by_name("check").unwrap();
    let stuck = p.by_name("stuck").unwrap();
    play(&p);
    let _stuck = Stuck::lock(&stuck);
    p.set_state(gst::State::Null).unwrap();
    // Reading the report judges the cycle now that it is due (grace=0), and
    // each judgement writes the file.
    let r = report(&check);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        json["leaks"].as_u64().unwrap(),
        u64::from(r.get::<u32>("leaks").unwrap())
    );
    assert_eq!(json["cycles"].as_u64().unwrap(), 1);
    let from_json: Vec<(String, String)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(from_json, findings(&r));
    assert_eq!(from_json.len(), 1);
    // Every element is named with its transitions.
    let elements = json["elements"].as_array().unwrap();
    let stuck_entry = elements.iter().find(|e| e["name"] == "stuck").unwrap();
    assert_eq!(stuck_entry["state"], "playing");
    assert!(stuck_entry["transitions"].as_array().unwrap().len() >= 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn interim_report_is_posted_while_the_bus_delivers() {
    let p = pipeline(
        "videotestsrc is-live=true ! fakesink leakcheck name=check grace=0 identity name=victim",
    );
    let victim = p.by_name("victim").unwrap();
    play(&p);
    p.remove(&victim).unwrap();
    p.set_state(gst::State::Ready).unwrap();
    let log = common::collect_bus(&p, HANG, |log| !log.named("leakcheck-report").is_empty());
    let reports = log.named("leakcheck-report");
    assert_eq!(reports.len(), 1, "{log:#?}");
    assert_eq!(reports[0].get::<u32>("leaks").unwrap(), 1);
    p.set_state(gst::State::Null).unwrap();
    victim.set_state(gst::State::Null).unwrap();
}

#[test]
fn fail_on_leak_turns_a_removal_into_an_error() {
    let p = pipeline(
        "videotestsrc is-live=true ! fakesink leakcheck grace=0 fail-on-leak=true identity name=victim",
    );
    let victim = p.by_name("victim").unwrap();
    play(&p);
    p.remove(&victim).unwrap();
    let log = common::collect_bus(&p, HANG, |log| !log.errors.is_empty());
    assert_eq!(log.errors.len(), 1, "{log:#?}");
    assert!(log.errors[0].contains("victim"));
    p.set_state(gst::State::Null).unwrap();
    victim.set_state(gst::State::Null).unwrap();
}

#[test]
fn bad_device_patterns_fail_the_start_naming_the_property() {
    let p = pipeline("videotestsrc ! fakesink leakcheck device-patterns=video*");
    assert!(p.set_state(gst::State::Playing).is_err());
    let log = common::collect_bus(&p, HANG, |log| !log.errors.is_empty());
    assert!(
        log.errors[0].contains("device-patterns") && log.errors[0].contains("video*"),
        "{log:#?}"
    );
    p.set_state(gst::State::Null).unwrap();
}

/// Makes a small H.264 in Matroska file for the decoding pipelines.
fn media_file(name: &str) -> std::path::PathBuf {
    let dir = common::temp_dir(name);
    let file = dir.join("clip.mkv");
    let log = common::run_to_eos(
        &format!(
            "videotestsrc num-buffers=30 ! video/x-raw,width=160,height=120 ! x264enc ! \
             h264parse ! matroskamux ! filesink location={}",
            file.display()
        ),
        TIMEOUT,
    );
    assert!(log.eos, "{log:#?}");
    file
}

#[test]
fn decodebin_pipeline_has_no_findings() {
    let file = media_file("leakcheck-decodebin");
    let p = pipeline(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! fakesink leakcheck name=check grace=0",
        file.display()
    ));
    let check = p.by_name("check").unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&p, TIMEOUT, |_| false);
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    p.set_state(gst::State::Null).unwrap();
    let r = report(&check);
    assert_eq!(r.get::<u32>("cycles").unwrap(), 1);
    assert_eq!(findings(&r), vec![], "{r}");
    std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
}

#[test]
fn playbin_pipeline_has_no_findings() {
    common::init();
    let file = media_file("leakcheck-playbin");
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", format!("file://{}", file.display()))
        .property(
            "video-sink",
            gst::ElementFactory::make("fakesink").build().unwrap(),
        )
        .property(
            "audio-sink",
            gst::ElementFactory::make("fakesink").build().unwrap(),
        )
        .build()
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let check = gst::ElementFactory::make("leakcheck")
        .property("grace", 0u64)
        .build()
        .unwrap();
    playbin.add(&check).unwrap();
    playbin.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&playbin, TIMEOUT, |_| false);
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    playbin.set_state(gst::State::Null).unwrap();
    let r = report(&check);
    assert_eq!(findings(&r), vec![], "{r}");
    std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
}

/// A pipeline stopped with one element stuck above NULL, under `grace` ns;
/// `before_null` runs while it still plays.
fn stopped_with_a_stuck_element(
    grace: u64,
    before_null: impl FnOnce(&gst::Element),
) -> (gst::Pipeline, gst::Element, Stuck) {
    let p = pipeline(&format!(
        "videotestsrc is-live=true ! fakesink identity name=stuck leakcheck name=check grace={grace}"
    ));
    let check = p.by_name("check").unwrap();
    play(&p);
    let stuck = Stuck::lock(&p.by_name("stuck").unwrap());
    before_null(&check);
    p.set_state(gst::State::Null).unwrap();
    (p, check, stuck)
}

/// No wall clock decides this: an hour's grace cannot pass during the test,
/// however slowly it runs (valgrind), and reading the report asks for no
/// judgement before the grace is over.
#[test]
fn judgement_waits_for_the_grace() {
    let (_p, check, _stuck) = stopped_with_a_stuck_element(3_600_000_000_000, |_| ());
    assert_eq!(report(&check).get::<u32>("cycles").unwrap(), 0);
    assert_eq!(check.property::<u32>("leaks"), 0);
    assert_eq!(report(&check).get::<u32>("cycles").unwrap(), 0);
}

/// Nobody asks: the worker alone judges once the grace is over, and says so.
#[test]
fn judgement_comes_by_itself_after_the_grace() {
    let (judged, seen) = std::sync::mpsc::channel();
    let (_p, check, _stuck) = stopped_with_a_stuck_element(100_000_000, |check| {
        check.connect_notify(Some("leaks"), move |_, _| {
            let _ = judged.send(());
        });
    });
    seen.recv_timeout(HANG).expect("never judged");
    assert_eq!(finding(&report(&check), "not-null").len(), 1);
}

/// Paths are read once, and again only when the pipeline is renamed
/// (GStreamer renames nothing inside a bin): the next report names the
/// elements under the new name.
#[test]
fn a_renamed_pipeline_is_reported_under_its_new_name() {
    let (p, check, stuck) = stopped_with_a_stuck_element(0, |_| ());
    let before = findings(&report(&check));
    assert_eq!(
        before,
        vec![(
            "not-null".into(),
            format!("/GstPipeline:{}/GstIdentity:stuck", p.name())
        )]
    );
    let element = stuck.0.clone();
    drop(stuck);
    p.set_property("name", "renamed");
    play(&p);
    let _stuck = Stuck::lock(&element);
    p.set_state(gst::State::Null).unwrap();
    let after = report(&check);
    assert_eq!(after.get::<&str>("pipeline").unwrap(), "renamed");
    assert_eq!(
        findings(&after),
        vec![(
            "not-null".into(),
            "/GstPipeline:renamed/GstIdentity:stuck".into()
        )]
    );
}

#[test]
fn the_element_turns_on_no_process_wide_tracing() {
    let p = pipeline(
        "videotestsrc num-buffers=5 ! leakcheck name=check grace=0 ! fakesink \
         leakcheck name=standalone grace=0",
    );
    let check = p.by_name("check").unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let log = common::collect_bus(&p, TIMEOUT, |_| false);
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    p.set_state(gst::State::Null).unwrap();
    // It watched the pipeline all the same...
    assert_eq!(report(&check).get::<u32>("cycles").unwrap(), 1);
    // ...without registering a tracer: no hook dispatch for the process.
    assert!(gst::active_tracers().is_empty());
}

/// An application's sync handler that reads the report on every message,
/// the removal WARNING and the state changes leakcheck itself reacts to
/// included, in the posting thread: leakcheck holds no lock of its own
/// while it posts, so nothing waits on anything.
#[test]
fn sync_handler_reading_the_report_on_every_message_does_not_deadlock() {
    let p = pipeline(
        "videotestsrc is-live=true ! fakesink leakcheck name=check grace=0 identity name=victim",
    );
    let check = p.by_name("check").unwrap();
    let victim = p.by_name("victim").unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (counter, reader) = (seen.clone(), check.downgrade());
    p.bus().unwrap().set_sync_handler(move |_, msg| {
        if let Some(check) = reader.upgrade() {
            let leaks = check.property::<u32>("leaks");
            let report = check.emit_by_name::<gst::Structure>("get-report", &[]);
            assert_eq!(report.get::<u32>("leaks").unwrap(), leaks);
            if matches!(msg.view(), gst::MessageView::Warning(..)) {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        gst::BusSyncReply::Pass
    });
    for _ in 0..3 {
        play(&p);
        p.set_state(gst::State::Null).unwrap();
    }
    play(&p);
    p.remove(&victim).unwrap();
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(finding(&report(&check), "removed-above-null").len(), 1);
    assert_eq!(report(&check).get::<u32>("cycles").unwrap(), 4);
    victim.set_state(gst::State::Null).unwrap();
    p.bus().unwrap().unset_sync_handler();
}

/// A fake MPP encoder (the double of tests/common/fake_mpp.rs) opens its
/// session in the listing at READY->PAUSED and closes it at PAUSED->READY.
fn vpu_pipeline(sessions: &std::path::Path) -> gst::Pipeline {
    pipeline(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=30/1 ! \
         fakempph265enc name=enc session-file={s} ! fakesink \
         leakcheck name=check grace=0 session-file={s}",
        s = sessions.display()
    ))
}

#[test]
fn vpu_session_left_open_is_reported_with_its_device_block() {
    let dir = common::temp_dir("leakcheck-vpu-session");
    let sessions = dir.join("sessions-summary");
    // Another process's session, open before the pipeline ran: not ours.
    std::fs::write(
        &sessions,
        "session: pid=1 index=7\n device: fdc38100.rkvdec-core\n",
    )
    .unwrap();
    let p = vpu_pipeline(&sessions);
    let check = p.by_name("check").unwrap();
    let enc = p.by_name("enc").unwrap();

    // A clean cycle closes its session.
    play(&p);
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(findings(&report(&check)), vec![]);

    // The encoder never goes back to NULL: its session stays listed.
    play(&p);
    let enc_stuck = Stuck::lock(&enc);
    p.set_state(gst::State::Null).unwrap();
    let r = report(&check);
    let open = finding(&r, "vpu-session");
    assert_eq!(open.len(), 1, "{r}");
    assert_eq!(
        open[0].get::<&str>("device").unwrap(),
        "fdbd0000.rkvenc-core"
    );
    assert_eq!(open[0].get::<u32>("tid").unwrap(), std::process::id());
    assert!(
        open[0]
            .get::<&str>("message")
            .unwrap()
            .contains("still open after NULL"),
        "{r}"
    );
    // The encoder bin and the children it keeps playing with it.
    let not_null = finding(&r, "not-null");
    assert!(
        not_null
            .iter()
            .any(|f| f.get::<&str>("name").unwrap() == "enc"),
        "{r}"
    );
    drop(enc_stuck);
    p.set_state(gst::State::Null).unwrap();
    drop(enc);
    std::fs::remove_dir_all(&dir).unwrap();
}

const TRACER_CHILD: &str = "EDGEGUARD_LEAKCHECK_TRACER_CHILD";

/// Not a test on its own: the leaking program of
/// `tracer_mode_prints_the_report_at_exit`, run as a separate process with
/// GST_TRACERS set, loading the plugin from the build directory.
#[test]
fn tracer_child_entry() {
    if std::env::var(TRACER_CHILD).is_err() {
        return;
    }
    gst::init().unwrap();
    let p = gst::parse::launch("videotestsrc is-live=true ! fakesink identity name=stuck")
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let _ = p.state(gst::ClockTime::from_seconds(HANG.as_secs()));
    p.by_name("stuck").unwrap().set_locked_state(true);
    p.set_state(gst::State::Null).unwrap();
    // Exit without cleaning up, as a leaking program does.
    std::process::exit(0);
}

#[test]
fn tracer_mode_prints_the_report_at_exit() {
    let exe = std::env::current_exe().unwrap();
    let build_dir = exe.parent().unwrap().parent().unwrap();
    assert!(
        build_dir.join("libgstedgeguard.so").exists(),
        "{} is missing: `cargo build --lib` first (make test does)",
        build_dir.join("libgstedgeguard.so").display()
    );
    let registry =
        std::env::temp_dir().join(format!("edgeguard-registry-{}.bin", std::process::id()));
    let out = std::process::Command::new(&exe)
        .args([
            "--exact",
            "tracer_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TRACER_CHILD, "1")
        .env("GST_TRACERS", "leakchecktracer")
        .env("GST_PLUGIN_PATH", build_dir)
        .env("GST_REGISTRY", &registry)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&registry);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("finding(s) after"), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("not-null"))
        .unwrap_or_else(|| panic!("no not-null finding in: {stderr}"));
    assert!(
        line.contains("GstIdentity:stuck") && line.contains("playing"),
        "{line}"
    );
}

/// Bins nested 300 deep: the element stuck at the bottom is named by its
/// full path, and the report lists every element once, parents before their
/// children (one walk of the pipeline, whatever its depth).
#[test]
fn deeply_nested_bins_are_reported_in_tree_order_with_full_paths() {
    const DEPTH: usize = 300;
    let dir = common::temp_dir("leakcheck-nested");
    let file = dir.join("report.json");
    let p = pipeline(&format!(
        "videotestsrc is-live=true ! fakesink leakcheck name=check grace=0 report-file={}",
        file.display()
    ));
    let check = p.by_name("check").unwrap();
    let mut parent: gst::Bin = p.clone().upcast();
    let mut path = format!("/GstPipeline:{}", p.name());
    for i in 0..DEPTH {
        let bin = gst::Bin::with_name(&format!("b{i}"));
        parent.add(&bin).unwrap();
        path.push_str(&format!("/GstBin:b{i}"));
        parent = bin;
    }
    let stuck = gst::ElementFactory::make("identity")
        .name("stuck")
        .build()
        .unwrap();
    parent.add(&stuck).unwrap();
    play(&p);
    let _stuck = Stuck::lock(&stuck);
    p.set_state(gst::State::Null).unwrap();
    let r = report(&check);
    assert_eq!(
        findings(&r),
        vec![("not-null".into(), format!("{path}/GstIdentity:stuck"))]
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let paths: Vec<&str> = json["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    // The pipeline's children, the bins, the identity: each once.
    assert_eq!(paths.len(), 3 + DEPTH + 1, "{paths:?}");
    let depth = |p: &str| p.matches('/').count();
    let bins: Vec<usize> = paths
        .iter()
        .filter(|p| p.contains("/GstBin:b"))
        .map(|p| depth(p))
        .collect();
    assert!(bins.windows(2).all(|w| w[1] == w[0] + 1), "{paths:?}");
    assert_eq!(*paths.last().unwrap(), format!("{path}/GstIdentity:stuck"));
    std::fs::remove_dir_all(&dir).unwrap();
}
