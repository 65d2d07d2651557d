// SPDX-License-Identifier: MPL-2.0
//! leakcheck wherever a user puts it: in playbin's `video-sink` (a bin that
//! playbin readies before adding it), in a bin added to a pipeline that is
//! already PLAYING, and in an RTSP media factory's pipeline served to a real
//! `rtspsrc`. In each it must report its own pipeline, count its cycles, find
//! an element left in PAUSED and write its `report-file`.

mod common;

use gst::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a wait may last before the test counts it as hung.
const HANG: Duration = Duration::from_secs(120);

fn report(check: &gst::Element) -> gst::Structure {
    check.emit_by_name::<gst::Structure>("get-report", &[])
}

/// (kind, name, state) of every finding naming an element.
fn findings(report: &gst::Structure) -> Vec<(String, String, String)> {
    report
        .get::<gst::Array>("findings")
        .unwrap()
        .iter()
        .map(|v| v.get::<gst::Structure>().unwrap())
        .filter(|s| s.has_field("name"))
        .map(|s| {
            (
                s.name().to_string(),
                s.get::<String>("name").unwrap(),
                s.get::<String>("state").unwrap_or_default(),
            )
        })
        .collect()
}

fn report_json(file: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("report-file {}: {e}", file.display()));
    serde_json::from_str(&text).unwrap()
}

/// A message each time a leakcheck starts watching the pipeline `name`
/// (its INFO line), whoever made it look.
fn attached_to(name: &str) -> std::sync::mpsc::Receiver<()> {
    gst::log::set_threshold_for_name("leakcheck", gst::DebugLevel::Info);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let line = format!("watching {name} ");
    gst::log::add_log_function(move |category, _, _, _, _, _, message| {
        if category.name() == "leakcheck" && message.get().is_some_and(|m| m.starts_with(&line)) {
            let _ = tx.lock().unwrap().send(());
        }
    });
    rx
}

/// Plays until PLAYING is reached (bounded).
fn play(p: &gst::Element) {
    p.set_state(gst::State::Playing).unwrap();
    let (result, state, _) = p.state(gst::ClockTime::from_seconds(HANG.as_secs()));
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(state, gst::State::Playing);
}

/// Keeps `element` in PAUSED while its pipeline goes to NULL.
fn leave_in_paused(element: &gst::Element) {
    element.set_locked_state(true);
    element.set_state(gst::State::Paused).unwrap();
}

fn release(element: &gst::Element) {
    element.set_locked_state(false);
    element.set_state(gst::State::Null).unwrap();
}

/// A short H.264 in MP4 file, made with real encoders.
fn mp4_file(dir: &Path) -> PathBuf {
    let file = dir.join("clip.mp4");
    let log = common::run_to_eos(
        &format!(
            "videotestsrc num-buffers=60 ! video/x-raw,width=160,height=120,framerate=30/1 ! \
             x264enc ! h264parse ! mp4mux ! filesink location={}",
            file.display()
        ),
        HANG,
    );
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    file
}

/// What every placement must show after `cycles` cycles, the last with
/// `stuck` left in PAUSED.
fn assert_reported(
    check: &gst::Element,
    file: &Path,
    pipeline: &str,
    cycles: u32,
    stuck: &str,
) -> gst::Structure {
    let r = report(check);
    assert_eq!(r.get::<&str>("pipeline").unwrap(), pipeline, "{r}");
    assert_eq!(r.get::<u32>("cycles").unwrap(), cycles, "{r}");
    let found = findings(&r);
    assert!(
        found.contains(&("not-null".into(), stuck.into(), "paused".into())),
        "{r}"
    );
    let json = report_json(file);
    assert_eq!(json["pipeline"], pipeline, "{json}");
    assert_eq!(json["cycles"], cycles, "{json}");
    assert_eq!(json["leaks"], r.get::<u32>("leaks").unwrap(), "{json}");
    r
}

/// `gst-launch-1.0 playbin uri=... video-sink="leakcheck name=lc ! fakesink"`:
/// playbin readies the sink bin before adding it to the pipeline.
#[test]
fn in_playbin_video_sink_it_watches_playbin() {
    common::init();
    let dir = common::temp_dir("leakcheck-playbin-sink");
    let media = mp4_file(&dir);
    let file = dir.join("report.json");
    let playbin = gst::parse::launch(&format!(
        "playbin name=player uri=file://{} audio-sink=fakesink \
         video-sink=\"leakcheck name=lc grace=0 report-file={} ! fakesink\"",
        media.display(),
        file.display()
    ))
    .unwrap();
    let sink_bin = playbin.property::<gst::Element>("video-sink");
    let check = sink_bin
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("lc")
        .unwrap();
    let stuck = gst::ElementFactory::make("identity")
        .name("stuck")
        .build()
        .unwrap();
    playbin
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .add(&stuck)
        .unwrap();

    // A clean cycle to EOS, then one leaving `stuck` in PAUSED.
    playbin.set_state(gst::State::Playing).unwrap();
    let bus_owner = playbin.clone().downcast::<gst::Pipeline>().unwrap();
    let log = common::collect_bus(&bus_owner, HANG, |_| false);
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    playbin.set_state(gst::State::Null).unwrap();
    let first = report(&check);
    assert_eq!(first.get::<&str>("pipeline").unwrap(), "player", "{first}");
    assert_eq!(first.get::<u32>("cycles").unwrap(), 1, "{first}");
    assert_eq!(findings(&first), vec![], "{first}");

    play(&playbin);
    leave_in_paused(&stuck);
    playbin.set_state(gst::State::Null).unwrap();
    assert_reported(&check, &file, "player", 2, "stuck");
    release(&stuck);
    drop(check);
    drop(sink_bin);
    drop(playbin);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An application builds a branch, readies and starts it on its own, then
/// adds it to a pipeline that is already PLAYING: leakcheck attaches when it
/// learns of the pipeline and judges the cycle under way and the next ones.
#[test]
fn in_a_bin_added_to_a_playing_pipeline_it_watches_that_pipeline() {
    common::init();
    let dir = common::temp_dir("leakcheck-late-bin");
    let file = dir.join("report.json");
    let p = gst::parse::launch(
        "videotestsrc is-live=true ! fakesink identity name=stuck identity name=victim",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    p.set_property("name", "host");
    let stuck = p.by_name("stuck").unwrap();
    let victim = p.by_name("victim").unwrap();
    play(p.upcast_ref());

    let branch = gst::parse::bin_from_description(
        &format!(
            "leakcheck name=lc grace=0 report-file={} \
             videotestsrc is-live=true ! leakcheck name=inline grace=0 ! fakesink",
            file.display()
        ),
        false,
    )
    .unwrap();
    branch.set_state(gst::State::Playing).unwrap();
    let attached = attached_to("host");
    // Already PLAYING: nothing to sync, so no state change reaches it.
    p.add(&branch).unwrap();
    let check = branch.by_name("lc").unwrap();
    let inline = branch.by_name("inline").unwrap();
    // Joining a running pipeline is a state change for nobody: leakcheck
    // learns of it as the pipeline hands its clock to the newcomer, and then
    // sees what happens while it plays, before anyone reads a report.
    attached.recv_timeout(HANG).expect("never attached");
    attached.recv_timeout(HANG).expect("never attached");
    p.remove(&victim).unwrap();
    let log = common::collect_bus(&p, HANG, |log| !log.warnings.is_empty());
    assert!(log.warnings[0].contains("victim"), "{log:#?}");
    assert_eq!(report(&check).get::<&str>("pipeline").unwrap(), "host");

    leave_in_paused(&stuck);
    p.set_state(gst::State::Null).unwrap();
    let r = assert_reported(&check, &file, "host", 1, "stuck");
    assert!(
        findings(&r).contains(&(
            "removed-above-null".into(),
            "victim".into(),
            "playing".into()
        )),
        "{r}"
    );
    victim.set_state(gst::State::Null).unwrap();
    drop(victim);
    assert_eq!(report(&inline).get::<&str>("pipeline").unwrap(), "host");
    release(&stuck);

    // The next cycle is watched from its start.
    play(p.upcast_ref());
    leave_in_paused(&stuck);
    p.set_state(gst::State::Null).unwrap();
    let r = assert_reported(&check, &file, "host", 2, "stuck");
    assert_eq!(findings(&r).len(), 1, "{r}");
    release(&stuck);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A real gst-rtsp-server whose factory readies each media bin before the
/// server puts it in the media's pipeline, served to a real `rtspsrc`.
#[test]
fn in_an_rtsp_media_readied_before_its_pipeline_it_watches_the_media_pipeline() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    common::init();
    let dir = common::temp_dir("leakcheck-rtsp-late");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rtsp_leakcheck_late.py");
    let registry = dir.join("registry.bin");
    let mut server = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(&dir)
        .env("GST_PLUGIN_PATH", common::plugin_dir())
        .env("GST_REGISTRY", &registry)
        .env_remove("GST_TRACERS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = server.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        lines
            .recv_timeout(HANG)
            .unwrap_or_else(|_| panic!("the server said nothing while waiting for {what}"))
    };
    let port: u16 = next("its port")
        .strip_prefix("PORT ")
        .unwrap()
        .parse()
        .unwrap();

    play_rtsp_client(port, "late");
    let report = next("the media's report");
    let field = |name: &str| {
        report
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {report}"))
            .to_string()
    };
    assert!(!field("pipeline").is_empty(), "{report}");
    assert_eq!(field("pipeline"), field("media"), "{report}");
    assert_eq!(field("cycles"), "1", "{report}");
    assert_eq!(field("file-cycles"), "1", "{report}");
    assert!(
        field("findings")
            .split(',')
            .any(|f| f == "not-null:stuck:paused"),
        "{report}"
    );

    drop(server.stdin.take());
    assert!(server.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Connects, receives a few packets, disconnects (TEARDOWN).
fn play_rtsp_client(port: u16, mount: &str) {
    let p = gst::parse::launch(&format!(
        "rtspsrc location=rtsp://127.0.0.1:{port}/{mount} protocols=tcp latency=0 ! fakesink name=sink"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let packets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = packets.clone();
    p.by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            gst::PadProbeReturn::Ok
        });
    p.set_state(gst::State::Playing).unwrap();
    let received = common::poll_until(HANG, || {
        packets.load(std::sync::atomic::Ordering::SeqCst) >= 5
    });
    p.set_state(gst::State::Null).unwrap();
    assert!(received, "client of /{mount} received nothing");
}
