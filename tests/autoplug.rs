// SPDX-License-Identifier: MPL-2.0
//! The guards autoplugged as users do it: ranked above the codecs they guard
//! (`GST_PLUGIN_FEATURE_RANK=vpuguarddec:258`; here also in-process with
//! `set_rank`), inside playbin, uridecodebin, decodebin, decodebin3 and
//! encodebin, with real H.264 and H.265 files, and configured from
//! `element-setup` / `deep-element-added` as any autoplugged element is.

mod common;

use common::fake_mpp_dec::FACTORY_NAME as FAKE_DEC;
use common::vpu::Vpu;
use gst::prelude::*;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const FRAMES: u64 = 60;
/// 258 (PRIMARY + 2): above avdec_h264, x264enc and x265enc. GStreamer
/// 1.22 takes only numbers in GST_PLUGIN_FEATURE_RANK.
const RANK: i32 = 258;

fn init_ranked() {
    common::init();
    for guard in ["vpuguarddec", "vpuguardenc"] {
        gst::ElementFactory::find(guard)
            .unwrap()
            .set_rank(gst::Rank::from(RANK));
    }
}

#[derive(Clone, Copy, Debug)]
enum Codec {
    H264,
    H265,
}

/// A small file of `FRAMES` frames, a keyframe every 15, made once per
/// process: H.264 in MP4, H.265 in Matroska.
fn media_file(codec: Codec) -> PathBuf {
    static FILES: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let files = FILES.get_or_init(|| Mutex::new(Vec::new()));
    let mut files = files.lock().unwrap();
    let key = format!("{codec:?}");
    if let Some((_, path)) = files.iter().find(|(k, _)| *k == key) {
        return path.clone();
    }
    common::init();
    let (encode, file) = match codec {
        Codec::H264 => (
            "x264enc key-int-max=15 bframes=0 speed-preset=ultrafast ! h264parse ! mp4mux",
            "stream.mp4",
        ),
        Codec::H265 => (
            "x265enc key-int-max=15 speed-preset=ultrafast ! h265parse ! matroskamux",
            "stream.mkv",
        ),
    };
    let path = common::temp_dir(&format!("autoplug-{key}")).join(file);
    let log = common::run_to_eos(
        &format!(
            "videotestsrc num-buffers={FRAMES} pattern=ball ! \
             video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! {encode} ! \
             filesink location={}",
            path.display()
        ),
        TIMEOUT,
    );
    assert!(log.eos && log.errors.is_empty(), "{:?}", log.errors);
    files.push((key, path.clone()));
    path
}

fn uri(path: &Path) -> String {
    gst::glib::filename_to_uri(path, None).unwrap().to_string()
}

/// Every frame that reached the sink: its pts and a checksum of its pixels.
type Frames = Vec<(Option<gst::ClockTime>, u64)>;

/// Where the decoded video goes: I420 whatever the decoder output (the
/// hardware double outputs NV12; I420<->NV12 only moves the chroma bytes),
/// into a fakesink called `out`.
const FRAME_SINK: &str = "videoconvert ! video/x-raw,format=I420 ! fakesink name=out sync=false";

/// Records every frame reaching `sink`.
fn record_frames(sink: &gst::Element) -> Arc<Mutex<Frames>> {
    let frames = Arc::new(Mutex::new(Frames::new()));
    let f = frames.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let map = buffer.map_readable().unwrap();
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                map.as_slice().hash(&mut hasher);
                f.lock().unwrap().push((buffer.pts(), hasher.finish()));
            }
            gst::PadProbeReturn::Ok
        });
    frames
}

/// How a decode is autoplugged.
#[derive(Clone, Copy, Debug)]
enum Autoplugger {
    Playbin,
    Uridecodebin,
    Decodebin,
    Decodebin3,
}

const AUTOPLUGGERS: [Autoplugger; 4] = [
    Autoplugger::Playbin,
    Autoplugger::Uridecodebin,
    Autoplugger::Decodebin,
    Autoplugger::Decodebin3,
];

/// What came out of a decode, and what the guards in it did.
struct Decoded {
    log: common::BusLog,
    frames: Frames,
    /// vpuguarddec instances created anywhere in the pipeline.
    guards: usize,
}

impl Decoded {
    fn decisions(&self) -> Vec<(String, String, bool)> {
        self.log
            .named("vpuguarddec-decision")
            .into_iter()
            .map(|s| {
                (
                    s.get::<String>("reason").unwrap(),
                    s.get::<String>("decoder").unwrap(),
                    s.get::<bool>("hardware").unwrap(),
                )
            })
            .collect()
    }
}

/// Decodes `file` through `how` to EOS. `setup` gets every vpuguarddec the
/// autoplugger creates, before it leaves NULL: from playbin's
/// `element-setup`, from the pipeline's `deep-element-added` otherwise.
/// `force_sw` sets playbin's force-sw-decoders flag.
fn decode(
    how: Autoplugger,
    file: &Path,
    force_sw: bool,
    setup: impl Fn(&gst::Element) + Send + Sync + 'static,
) -> Decoded {
    let is_guard = |e: &gst::Element| e.factory().is_some_and(|f| f.name() == "vpuguarddec");
    let (pipeline, frames) = match how {
        Autoplugger::Playbin => {
            let sink = gst::parse::bin_from_description(FRAME_SINK, true).unwrap();
            let frames = record_frames(&sink.by_name("out").unwrap());
            let playbin = gst::ElementFactory::make("playbin")
                .property("uri", uri(file))
                .property("video-sink", &sink)
                .property("audio-sink", common::fakesink(false, true))
                .build()
                .unwrap();
            if force_sw {
                playbin.set_property_from_str("flags", "video+force-sw-decoders");
            }
            playbin.connect("element-setup", false, move |args| {
                let element = args[1].get::<gst::Element>().unwrap();
                if is_guard(&element) {
                    setup(&element);
                }
                None
            });
            let pipeline = gst::Pipeline::new();
            pipeline.add(&playbin).unwrap();
            (pipeline, frames)
        }
        Autoplugger::Uridecodebin | Autoplugger::Decodebin | Autoplugger::Decodebin3 => {
            assert!(!force_sw, "the flag is playbin's");
            let source = match how {
                Autoplugger::Uridecodebin => format!("uridecodebin uri={}", uri(file)),
                Autoplugger::Decodebin => {
                    format!("filesrc location={} ! decodebin", file.display())
                }
                _ => format!("filesrc location={} ! decodebin3", file.display()),
            };
            // The decoder is plugged once the stream starts: configured
            // from the pipeline's deep-element-added, connected now.
            let pipeline = gst::parse::launch(&format!("{source} ! {FRAME_SINK}"))
                .unwrap()
                .downcast::<gst::Pipeline>()
                .unwrap();
            pipeline.connect_deep_element_added(move |_, _, element| {
                if is_guard(element) {
                    setup(element);
                }
            });
            let frames = record_frames(&pipeline.by_name("out").unwrap());
            (pipeline, frames)
        }
    };
    let guards = Arc::new(AtomicUsize::new(0));
    let count = guards.clone();
    pipeline.connect_deep_element_added(move |_, _, element| {
        if is_guard(element) {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let log = common::run_pipeline_to_eos(&pipeline, TIMEOUT);
    let frames = frames.lock().unwrap().clone();
    Decoded {
        log,
        frames,
        guards: guards.load(Ordering::SeqCst),
    }
}

fn assert_clean(decoded: &Decoded, what: &str) {
    assert!(
        decoded.log.errors.is_empty(),
        "{what}: {:?}",
        decoded.log.errors
    );
    assert!(decoded.log.eos, "{what}: no EOS");
}

/// Bare playbin's frames for `codec`: playbin with force-sw-decoders, which
/// leaves the guard out (its klass says Hardware) and plugs avdec_*.
fn bare_frames(codec: Codec) -> Frames {
    static BARE: OnceLock<Mutex<Vec<(String, Frames)>>> = OnceLock::new();
    let bare = BARE.get_or_init(|| Mutex::new(Vec::new()));
    let key = format!("{codec:?}");
    if let Some((_, frames)) = bare.lock().unwrap().iter().find(|(k, _)| *k == key) {
        return frames.clone();
    }
    let decoded = decode(Autoplugger::Playbin, &media_file(codec), true, |_| {});
    assert_clean(&decoded, "bare playbin");
    assert_eq!(decoded.guards, 0, "force-sw-decoders plugged the guard");
    assert_eq!(decoded.frames.len() as u64, FRAMES);
    bare.lock().unwrap().push((key, decoded.frames.clone()));
    decoded.frames
}

#[test]
fn force_sw_decoders_leaves_the_guard_out() {
    init_ranked();
    for codec in [Codec::H264, Codec::H265] {
        let decoded = decode(Autoplugger::Playbin, &media_file(codec), true, |_| {});
        assert_clean(&decoded, "force-sw-decoders");
        assert_eq!(decoded.guards, 0, "{codec:?}: the guard was plugged");
        assert!(decoded.decisions().is_empty());
    }
}

fn decodes_like_bare_playbin(how: Autoplugger) {
    init_ranked();
    for codec in [Codec::H264, Codec::H265] {
        let what = format!("{how:?} {codec:?}");
        let decoded = decode(how, &media_file(codec), false, |_| {});
        assert_clean(&decoded, &what);
        // One guard, not one inside another.
        assert_eq!(decoded.guards, 1, "{what}");
        let decisions = decoded.decisions();
        assert_eq!(decisions.len(), 1, "{what}: {decisions:?}");
        assert!(!decisions[0].2, "{what}: {decisions:?}");
        assert!(
            decisions[0].1.starts_with("avdec_"),
            "{what}: {decisions:?}"
        );
        assert_eq!(decoded.frames.len() as u64, FRAMES, "{what}");
        assert!(
            decoded.frames == bare_frames(codec),
            "{what}: frames differ from bare playbin's"
        );
    }
}

#[test]
fn playbin_decodes_through_the_guard_as_bare_playbin_does() {
    decodes_like_bare_playbin(Autoplugger::Playbin);
}

#[test]
fn uridecodebin_decodes_through_the_guard_as_bare_playbin_does() {
    decodes_like_bare_playbin(Autoplugger::Uridecodebin);
}

#[test]
fn decodebin_decodes_through_the_guard_as_bare_playbin_does() {
    decodes_like_bare_playbin(Autoplugger::Decodebin);
}

#[test]
fn decodebin3_decodes_through_the_guard_as_bare_playbin_does() {
    decodes_like_bare_playbin(Autoplugger::Decodebin3);
}

/// The autoplugged guard configured as an application does it: the MPP
/// decoder double as its hardware decoder, failing on its own thread after
/// 25 access units with 4 in flight.
fn on_failing_double(vpu: &Vpu) -> impl Fn(&gst::Element) + Send + Sync + 'static {
    let session_file = vpu.session_file.display().to_string();
    let lock_dir = vpu.lock_dir().display().to_string();
    move |guard| {
        guard.set_property("hw-decoder", FAKE_DEC);
        guard.set_property("session-file", &session_file);
        guard.set_property("lock-dir", &lock_dir);
        guard.set_property(
            "hw-properties",
            format!(
                "props,session-file={session_file},output-thread=true,frames-in-flight=4,\
                 fail-after-buffers=25"
            ),
        );
    }
}

#[test]
fn an_autoplugged_guard_fails_over_once_to_software_without_nesting() {
    init_ranked();
    for how in AUTOPLUGGERS {
        let what = format!("{how:?}");
        let vpu = Vpu::new(&format!("autoplug-failover-{how:?}"), "");
        let decoded = decode(
            how,
            &media_file(Codec::H264),
            false,
            on_failing_double(&vpu),
        );
        assert_clean(&decoded, &what);
        assert_eq!(decoded.guards, 1, "{what}: guards nested");
        let decisions = decoded.decisions();
        assert_eq!(
            decisions,
            vec![
                ("budget".to_string(), FAKE_DEC.to_string(), true),
                (
                    "hw-failed-mid-stream".to_string(),
                    "avdec_h264".to_string(),
                    false
                ),
            ],
            "{what}"
        );
        // Every frame once, and the same pictures as bare playbin's.
        assert_eq!(decoded.frames.len() as u64, FRAMES, "{what}");
        assert!(
            decoded.frames == bare_frames(Codec::H264),
            "{what}: frames differ from bare playbin's"
        );
        assert_eq!(vpu.sessions(), 0, "{what}");
        vpu.remove();
    }
}

/// The user's recipe, as a user runs it: gst-launch-1.0 with the rank
/// raised from the environment and the plugin found on GST_PLUGIN_PATH.
#[test]
fn the_rank_from_the_environment_autoplugs_the_guard_in_gst_launch() {
    common::init();
    let file = media_file(Codec::H265);
    let registry = common::temp_dir("autoplug-registry").join("registry.bin");
    let out = Command::new("gst-launch-1.0")
        .args(["-m", "playbin", &format!("uri={}", uri(&file))])
        .args(["video-sink=fakesink", "audio-sink=fakesink"])
        .env("GST_PLUGIN_PATH", common::plugin_dir())
        .env("GST_REGISTRY", &registry)
        .env("GST_PLUGIN_FEATURE_RANK", format!("vpuguarddec:{RANK}"))
        .output()
        .expect("gst-launch-1.0 runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("Got EOS"), "{said}");
    let decisions: Vec<_> = said
        .lines()
        .filter(|l| l.contains("vpuguarddec-decision"))
        .collect();
    assert_eq!(decisions.len(), 1, "{said}");
    assert!(
        decisions[0].contains("decoder=(string)avdec_h265"),
        "{}",
        decisions[0]
    );
}

/// Encodes `FRAMES` frames through encodebin with `profile` (a
/// GstEncodingProfile string) into `file`; `setup` gets every vpuguardenc
/// before it leaves NULL. Returns the bus log and the guards created.
fn encode(
    profile: &str,
    file: &Path,
    setup: impl Fn(&gst::Element) + Send + Sync + 'static,
) -> (common::BusLog, usize) {
    let pipeline = gst::Pipeline::new();
    let guards = Arc::new(AtomicUsize::new(0));
    let count = guards.clone();
    pipeline.connect_deep_element_added(move |_, _, element| {
        if element.factory().is_some_and(|f| f.name() == "vpuguardenc") {
            count.fetch_add(1, Ordering::SeqCst);
            setup(element);
        }
    });
    let source = gst::parse::bin_from_description(
        &format!(
            "videotestsrc num-buffers={FRAMES} pattern=ball ! capsfilter \
             caps=video/x-raw,format=I420,width=320,height=240,framerate=30/1"
        ),
        true,
    )
    .unwrap();
    let encodebin = gst::ElementFactory::make("encodebin")
        .property_from_str("profile", profile)
        .build()
        .unwrap();
    let sink = gst::ElementFactory::make("filesink")
        .property("location", file.display().to_string())
        .build()
        .unwrap();
    pipeline
        .add_many([source.upcast_ref(), &encodebin, &sink])
        .unwrap();
    source.link(&encodebin).unwrap();
    encodebin.link(&sink).unwrap();
    let log = common::run_pipeline_to_eos(&pipeline, TIMEOUT);
    (log, guards.load(Ordering::SeqCst))
}

/// ffmpeg decodes the whole file without a word, and finds every frame.
fn assert_ffmpeg_decodes_every_frame(file: &Path, codec: &str) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs (make deps installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.is_empty(), "ffmpeg: {said}");
    assert_eq!(common::probe_video(file), (codec.to_string(), FRAMES));
}

#[test]
fn encodebin_encodes_h264_and_h265_profiles_through_the_guard() {
    init_ranked();
    let dir = common::temp_dir("autoplug-encodebin");
    for (profile, file, codec, sw_encoder) in [
        (
            "video/quicktime,variant=iso:video/x-h264",
            "h264.mp4",
            "h264",
            "x264enc",
        ),
        (
            "video/x-matroska:video/x-h265",
            "h265.mkv",
            "hevc",
            "x265enc",
        ),
    ] {
        let file = dir.join(file);
        // An H.265 profile needs the guard's software encoder to make H.265:
        // set as for any element encodebin plugs.
        let (log, guards) = encode(profile, &file, move |guard| {
            guard.set_property("sw-encoder", sw_encoder);
        });
        assert!(
            log.errors.is_empty() && log.eos,
            "{profile}: {:?}",
            log.errors
        );
        assert_eq!(guards, 1, "{profile}");
        let decision = log.named("vpuguardenc-decision");
        assert_eq!(decision.len(), 1, "{profile}");
        assert_eq!(decision[0].get::<String>("encoder").unwrap(), sw_encoder);
        assert_ffmpeg_decodes_every_frame(&file, codec);
    }
}
