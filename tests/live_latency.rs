// SPDX-License-Identifier: MPL-2.0
//! A guard's software child on a live stream keeps the latency class of the
//! hardware child it stands in for: x264enc with its defaults reports 1.59 s
//! at 30 fps (x265enc 220 ms), the live defaults (tune=zerolatency, a preset
//! by pixel rate) 53 ms, as the MPP encoders' few frames do. The latencies
//! are the pipeline's own LATENCY answers in PLAYING, never wall-clock
//! measurements. Real x264enc, x265enc and avdec_h264; the MPP doubles of
//! tests/common stand in for the VPU.

mod common;

use common::fake_mpp::{self, FACTORY_NAME as FAKE_H265, H264_FACTORY_NAME as FAKE_H264};
use common::vpu::Vpu;
use gst::prelude::*;
use gst_base::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A hang fails the test here, never a duration assertion.
const TIMEOUT: Duration = Duration::from_secs(60);
/// A live branch's latency the rig's 1 s queues carry with room to spare;
/// x264enc's defaults give 1.59 s, its live defaults 53 ms.
const LIVE_LATENCY: gst::ClockTime = gst::ClockTime::from_mseconds(150);
const LIVE_SOURCE: &str = "videotestsrc is-live=true ! \
     video/x-raw,format=I420,width=320,height=240,framerate=30/1";

/// Two sessions of other processes fill a budget of 2.
fn full_listing() -> String {
    [
        fake_mpp::record(4001, 1, 1920, 1080, 30, 0),
        fake_mpp::record(4002, 2, 1920, 1080, 30, 0),
    ]
    .concat()
}

/// What the bus said that these tests look at, in order.
#[derive(Debug)]
enum Said {
    /// A guard's decision message.
    Decision(gst::Structure),
    /// A LATENCY message, by the name of the element that posted it.
    Latency(String),
}

/// A pipeline playing, what its bus said and the buffers its sink got.
struct Run {
    pipeline: gst::Pipeline,
    said: Vec<Said>,
    frames: Arc<AtomicUsize>,
}

impl Run {
    fn decisions(&self) -> Vec<&gst::Structure> {
        self.said
            .iter()
            .filter_map(|s| match s {
                Said::Decision(d) => Some(d),
                Said::Latency(_) => None,
            })
            .collect()
    }

    fn reasons(&self) -> Vec<String> {
        self.decisions()
            .iter()
            .map(|d| d.get::<String>("reason").unwrap())
            .collect()
    }

    /// Whether `guard` posted LATENCY after a decision for `reason`.
    fn latency_posted_after(&self, reason: &str, guard: &str) -> bool {
        let switch = self.said.iter().position(
            |s| matches!(s, Said::Decision(d) if d.get::<&str>("reason").unwrap() == reason),
        );
        switch.is_some_and(|at| {
            self.said[at..]
                .iter()
                .any(|s| matches!(s, Said::Latency(name) if name == guard))
        })
    }

    fn frames(&self) -> usize {
        self.frames.load(Ordering::SeqCst)
    }

    /// The pipeline's latency, as it answers a LATENCY query now.
    fn latency(&self) -> gst::ClockTime {
        let mut query = gst::query::Latency::new();
        assert!(self.pipeline.query(&mut query), "no LATENCY answer");
        let (live, min, _) = query.result();
        assert!(live, "the pipeline is live");
        min
    }

    /// The latency the pipeline last configured its sink with.
    fn configured_latency(&self) -> gst::ClockTime {
        let sink = self.pipeline.by_name("sink").unwrap();
        sink.downcast::<gst_base::BaseSink>().unwrap().latency()
    }

    /// The guard's child now working, by the guard's `property` (`active-encoder`).
    fn child(&self, property: &str) -> gst::Element {
        let guard = self
            .pipeline
            .by_name("guard")
            .unwrap()
            .downcast::<gst::Bin>()
            .unwrap();
        let active: String = guard.property(property);
        guard
            .iterate_elements()
            .into_iter()
            .map(Result::unwrap)
            .find(|e| e.factory().unwrap().name() == active)
            .unwrap_or_else(|| panic!("no {active} child"))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Plays `description` (its sink named `sink`) until `done` says so,
/// recalculating the latency at each LATENCY message as gst-launch and
/// applications do. An ERROR, an EOS before `done`, or TIMEOUT fails.
fn play_until(description: &str, mut done: impl FnMut(&Run) -> bool) -> Run {
    common::init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let frames = Arc::new(AtomicUsize::new(0));
    let counted = frames.clone();
    pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            gst::PadProbeReturn::Ok
        });
    let mut run = Run {
        pipeline,
        said: Vec::new(),
        frames,
    };
    run.pipeline.set_state(gst::State::Playing).unwrap();
    let bus = run.pipeline.bus().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while !done(&run) {
        assert!(
            Instant::now() < deadline,
            "not done within {TIMEOUT:?} (a hang): {} frames, {:#?}",
            run.frames(),
            run.said
        );
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(20)) {
            run.handle(&msg);
        }
    }
    // What was posted before the frames `done` counted.
    while let Some(msg) = bus.pop() {
        run.handle(&msg);
    }
    run
}

impl Run {
    fn handle(&mut self, msg: &gst::Message) {
        let from = || msg.src().map(|s| s.name().to_string()).unwrap_or_default();
        match msg.view() {
            gst::MessageView::Latency(_) => {
                self.said.push(Said::Latency(from()));
                let _ = self.pipeline.recalculate_latency();
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name().ends_with("-decision")) {
                    self.said.push(Said::Decision(s.to_owned()));
                }
            }
            gst::MessageView::Error(e) => panic!("{}: {} ({:?})", from(), e.error(), e.debug()),
            gst::MessageView::Eos(_) => panic!("EOS before done: {:#?}", self.said),
            _ => (),
        }
    }

    /// Whether a decision for `reason` was posted and the sink got `frames`
    /// buffers since it was seen (`since` keeps the count then).
    fn frames_after(&self, reason: &str, frames: usize, since: &mut Option<usize>) -> bool {
        if !self.reasons().iter().any(|r| r == reason) {
            return false;
        }
        let at = *since.get_or_insert(self.frames());
        self.frames() >= at + frames
    }
}

/// Whether `element`'s `property` holds what `text` says (an enum or flags nick).
fn has_value(element: &gst::Element, property: &str, text: &str) -> bool {
    let pspec = element.find_property(property).unwrap();
    let expected = gst::glib::Value::deserialize_with_pspec(text, &pspec).unwrap();
    value_text(element, property) == expected.serialize().unwrap()
}

fn value_text(element: &gst::Element, property: &str) -> String {
    element.property_value(property).serialize().unwrap().into()
}

/// Whether `element`'s `property` is at its default.
fn is_default(element: &gst::Element, property: &str) -> bool {
    let pspec = element.find_property(property).unwrap();
    value_text(element, property) == pspec.default_value().serialize().unwrap().as_str()
}

/// A live 30 fps stream whose guard finds the budget spent and chooses `sw`.
fn live_on_software(sw: &str, extra: &str) -> (Run, Vpu) {
    let vpu = Vpu::new(&format!("live-{sw}"), &full_listing());
    let guard = vpu.guard_on(
        FAKE_H265,
        "",
        &format!("name=guard max-sessions=2 sw-encoder={sw} {extra}"),
    );
    let run = play_until(
        &format!("{LIVE_SOURCE} ! {guard} ! fakesink name=sink sync=true"),
        |run| run.frames() >= 30,
    );
    assert_eq!(run.reasons(), vec!["over-budget"]);
    (run, vpu)
}

fn software_chosen_on_a_live_stream_keeps_the_latency_low(sw: &str) {
    let (run, vpu) = live_on_software(sw, "");
    let latency = run.latency();
    println!("{sw} chosen on a live 320x240@30 stream: pipeline latency {latency}");
    assert!(latency < LIVE_LATENCY, "{sw}: {latency}");
    let encoder = run.child("active-encoder");
    assert!(has_value(&encoder, "tune", "zerolatency"));
    // 320x240@30 is well within what x264 keeps up with at veryfast.
    let preset = if sw == "x264enc" {
        "veryfast"
    } else {
        "ultrafast"
    };
    assert!(has_value(&encoder, "speed-preset", preset));
    drop(run);
    vpu.remove();
}

#[test]
fn x264enc_chosen_on_a_live_stream_reports_a_hardware_encoders_latency() {
    software_chosen_on_a_live_stream_keeps_the_latency_low("x264enc");
}

#[test]
fn x265enc_chosen_on_a_live_stream_reports_a_hardware_encoders_latency() {
    software_chosen_on_a_live_stream_keeps_the_latency_low("x265enc");
}

/// Plays `description` until its guard (named `guard`) failed over mid-stream
/// and 30 more frames reached the sink; the guard must have said that its
/// latency changed.
fn after_failover(description: &str) -> Run {
    let mut since = None;
    let run = play_until(description, |run| {
        run.frames_after("hw-failed-mid-stream", 30, &mut since)
    });
    assert_eq!(run.reasons(), vec!["budget", "hw-failed-mid-stream"]);
    assert!(
        run.latency_posted_after("hw-failed-mid-stream", "guard"),
        "no LATENCY from the guard after the switch: {:#?}",
        run.said
    );
    run
}

#[test]
fn a_failover_to_software_on_a_live_stream_keeps_the_latency_and_says_so() {
    let vpu = Vpu::new("live-failover", "");
    // The H.264 double fails on its own thread at frame 30, frames in flight.
    let guard = vpu.guard_on(
        FAKE_H264,
        ",output-thread=true,frames-in-flight=3,fail-after-buffers=30",
        "name=guard",
    );
    let run = after_failover(&format!(
        "{LIVE_SOURCE} ! {guard} ! fakesink name=sink sync=true"
    ));
    let latency = run.latency();
    println!("after a failover to x264enc on a live 320x240@30 stream: pipeline latency {latency}");
    assert!(latency < LIVE_LATENCY, "{latency}");
    // The pipeline recalculated on the guard's message: its sink runs at
    // the latency the stream has now.
    assert_eq!(run.configured_latency(), latency);
    drop(run);
    vpu.remove();
}

#[test]
fn reclaiming_the_hardware_encoder_says_the_latency_changed() {
    let vpu = Vpu::new("live-reclaim", &full_listing());
    let guard = vpu.guard_on(
        FAKE_H264,
        "",
        "name=guard sw-encoder=x264enc max-sessions=2 reclaim-interval=200000000",
    );
    let session_file = vpu.session_file.clone();
    let mut since = None;
    let mut freed = false;
    let run = play_until(
        &format!("{LIVE_SOURCE} ! {guard} ! fakesink name=sink sync=true"),
        |run| {
            // Polled: the count may pass 10 between two looks.
            if !freed && run.decisions().len() == 1 && run.frames() >= 10 {
                freed = true;
                // Another process closes a session: the budget has room.
                std::fs::write(&session_file, fake_mpp::record(4001, 1, 1920, 1080, 30, 0))
                    .unwrap();
            }
            run.frames_after("reclaimed", 30, &mut since)
        },
    );
    assert_eq!(run.reasons(), vec!["over-budget", "reclaimed"]);
    assert!(
        run.latency_posted_after("reclaimed", "guard"),
        "{:#?}",
        run.said
    );
    assert!(run.latency() < LIVE_LATENCY);
    drop(run);
    vpu.remove();
}

#[test]
fn a_stream_that_is_not_live_keeps_the_software_encoders_defaults() {
    let vpu = Vpu::new("not-live", &full_listing());
    let guard = vpu.guard_on(FAKE_H265, "", "name=guard max-sessions=2");
    let run = play_until(
        &format!(
            "videotestsrc num-buffers=300 ! \
             video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! {guard} ! \
             fakesink name=sink"
        ),
        |run| !run.decisions().is_empty(),
    );
    assert_eq!(run.reasons(), vec!["over-budget"]);
    let encoder = run.child("active-encoder");
    assert_eq!(encoder.factory().unwrap().name(), "x264enc");
    for property in ["tune", "speed-preset"] {
        assert!(
            is_default(&encoder, property),
            "{property}: {}",
            value_text(&encoder, property)
        );
    }
    drop(run);
    vpu.remove();
}

#[test]
fn the_applications_sw_properties_win_over_the_live_defaults() {
    // Only the properties the application set: the others keep the live defaults.
    let (run, vpu) = live_on_software("x264enc", "sw-properties=\"props,speed-preset=medium\"");
    let encoder = run.child("active-encoder");
    assert!(has_value(&encoder, "speed-preset", "medium"));
    assert!(has_value(&encoder, "tune", "zerolatency"));
    drop(run);
    vpu.remove();

    let (run, vpu) = live_on_software("x264enc", "sw-properties=\"props,tune=fastdecode\"");
    let encoder = run.child("active-encoder");
    assert!(has_value(&encoder, "tune", "fastdecode"));
    assert!(has_value(&encoder, "speed-preset", "veryfast"));
    // The application asked for lookahead, and has its latency.
    assert!(run.latency() > LIVE_LATENCY, "{}", run.latency());
    drop(run);
    vpu.remove();

    // No tuning at all: x264enc's own default, named.
    let (run, vpu) = live_on_software("x264enc", "sw-properties=\"props,tune=0\"");
    assert!(is_default(&run.child("active-encoder"), "tune"));
    drop(run);
    vpu.remove();
}

#[test]
fn a_software_decoder_taking_over_a_live_stream_keeps_its_latency() {
    let vpu = Vpu::new("live-dec-failover", "");
    // The decoder double fails on its own thread at access unit 30; avdec_h264
    // takes over with 8 threads: frame threading would add 8 frames.
    let guard = vpu.decoder_guard(
        ",output-thread=true,frames-in-flight=4,fail-after-buffers=30",
        "name=guard sw-properties=\"props,max-threads=8\"",
    );
    let run = after_failover(&format!(
        "{LIVE_SOURCE} ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! \
         h264parse ! {guard} ! fakesink name=sink sync=true"
    ));
    let decoder = run.child("active-decoder");
    assert!(has_value(&decoder, "thread-type", "slice"));
    let latency = run.latency();
    println!(
        "after a failover to avdec_h264 on a live 320x240@30 stream: pipeline latency {latency}"
    );
    assert!(latency < LIVE_LATENCY, "{latency}");
    assert_eq!(run.configured_latency(), latency);
    drop(run);
    vpu.remove();
}
