// SPDX-License-Identifier: MPL-2.0
//! Test doubles for Rockchip's mpph265enc and mpph264enc, for machines without a VPU.
//!
//! They behave as the real elements do where vpuguardenc can tell: each opens a
//! "VPU session" in READY->PAUSED by appending a record to a sessions-summary
//! file in the kernel's layout (`shared/mpp/sessions-summary.sample`), closes it
//! in PAUSED->READY by removing that record, takes its bitrate as `bps` in bit/s,
//! and fails to start once the file holds `hard-limit` sessions, as an
//! overloaded VPU would. The encoding itself is done by x265enc (`fakempph265enc`)
//! or x264enc (`fakempph264enc`), both at ultrafast/zerolatency (no B-frames, as
//! MPP encoders), so the output is real H.265 or H.264 byte-stream. They also
//! record the highest session count they ever saw in `<session-file>.peak`, so
//! tests can check that a budget was never exceeded.
//!
//! Variants, each a behaviour of real Rockchip encoders the guard must survive:
//! - `open-at-caps`: the session is opened when caps arrive, not at start (some
//!   plugin variants call `mpp_init` when the format is set), so the listing
//!   shows it only after the CAPS event has passed the guard.
//! - `output-thread`: frames are encoded on the element's own thread, as MPP
//!   encoders push from their src task; with `fail-after-buffers` the failure
//!   happens there, asynchronously, with frames still queued in front of it.
//! - `frames-in-flight` (with `output-thread`): the output thread keeps this
//!   many frames queued before it encodes the oldest, as MPP's input queue
//!   does, so output lags input by that many frames until EOS drains them.
//!   When `fail-after-buffers` fails, the failed frame and the frames queued
//!   behind it never come out (GStreamer 1.22's queue keeps them until it is
//!   flushed or goes to READY). The queue restores the lag after a flush or a
//!   READY round trip, but not for a new stream after EOS without either
//!   (GstQueue clears its minimum threshold at EOS until it is flushed).
//! - `start-delay-ms`: READY->PAUSED takes this long, as a slow or wedged
//!   driver does; `<session-file>.starting` exists while it waits.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock};

use super::fake_mpp_core::{self, Common, Session};

pub const FACTORY_NAME: &str = "fakempph265enc";
/// Encoder doubles constructed in this process: a guard that must not create
/// its hardware child is seen not to.
pub static CREATED: AtomicU32 = AtomicU32::new(0);
pub const H264_FACTORY_NAME: &str = "fakempph264enc";

/// What tells the doubles apart; everything else is shared.
struct Codec {
    factory: &'static str,
    type_name: &'static str,
    long_name: &'static str,
    description: &'static str,
    /// The software encoder that does the encoding.
    encoder: &'static str,
    caps_name: &'static str,
    /// The format column of the double's listing record.
    listing_format: &'static str,
}

const H265: Codec = Codec {
    factory: FACTORY_NAME,
    type_name: "EdgeguardTestFakeMppH265Enc",
    long_name: "Fake MPP H.265 encoder (test double)",
    description: "Registers a VPU session in a sessions-summary file and encodes with x265enc",
    encoder: "x265enc",
    caps_name: "video/x-h265",
    listing_format: "h265",
};

const H264: Codec = Codec {
    factory: H264_FACTORY_NAME,
    type_name: "EdgeguardTestFakeMppH264Enc",
    long_name: "Fake MPP H.264 encoder (test double)",
    description: "Registers a VPU session in a sessions-summary file and encodes with x264enc",
    encoder: "x264enc",
    caps_name: "video/x-h264",
    listing_format: "h264",
};

pub fn register() {
    for (codec, type_) in [
        (&H265, FakeMppH265Enc::static_type()),
        (&H264, FakeMppH264Enc::static_type()),
    ] {
        gst::Element::register(None, codec.factory, gst::Rank::NONE, type_).unwrap();
    }
}

/// Counts session records the way the kernel listing is meant to be counted.
pub fn count_records(text: &str) -> usize {
    text.lines()
        .filter(|l| l.trim_start().starts_with("session: pid="))
        .count()
}

/// Runs `f` on the file's contents with an exclusive flock held on
/// `<path>.lock`, as the driver serializes its own session list; `f` returns
/// the new contents, if any. They replace the file in one rename: a reader
/// never sees it half written, as a procfs read never does.
fn with_locked_file<T>(
    path: &str,
    f: impl FnOnce(&str) -> (Option<String>, T),
) -> std::io::Result<T> {
    let lock: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(format!("{path}.lock"))?;
    // SAFETY: the fd belongs to `lock`, open for the whole call.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let text = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        other => other?,
    };
    let (new_text, result) = f(&text);
    if let Some(new_text) = new_text {
        let partial = format!("{path}.partial");
        let mut file = File::create(&partial)?;
        file.write_all(new_text.as_bytes())?;
        // Whoever wrote it first, every user's doubles may rewrite it.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
        std::fs::rename(&partial, path)?;
    }
    Ok(result)
}

/// One H.265 encoder record in the kernel listing's layout.
pub fn record(pid: u32, index: u64, width: i32, height: i32, fps: i32, bps: u32) -> String {
    record_as("h265", pid, index, width, height, fps, bps)
}

/// One encoder record in the kernel listing's layout, `format` ("h264",
/// "h265") in its format column.
pub fn record_as(
    format: &str,
    pid: u32,
    index: u64,
    width: i32,
    height: i32,
    fps: i32,
    bps: u32,
) -> String {
    format!(
        "session iova range dump:\n   0: 0x00000000ff020000..0x00000000ffff1fff (     16200 KiB)\n\
         session: pid={pid} index={index}\n device: fdbd0000.rkvenc-core\n memory: 21 MiB\n\
         --------------------------------------------------------------------------------\n\
         | session|  device|   width|  height|  format|  fps_in| fps_out| rc_mode| bitrate|gop_size|fps_calc| profile|\n\
         |{index:>8}|  RKVENC|{width:>8}|{height:>8}|{format:>8}|{fps:>8}|{fps:>8}|     cbr|{bps:>8}|      30|{fps:>8}|    main|\n"
    )
}

/// Opens a "session": appends the record `record(index)` makes for a new
/// index to the listing, unless it holds `hard_limit` sessions already (then
/// the count is the error), and raises `<session-file>.peak` to the count.
pub fn open_record(
    session_file: &str,
    hard_limit: u32,
    record: impl FnOnce(u64) -> String,
) -> std::io::Result<Result<u64, u32>> {
    let opened = with_locked_file(session_file, |text| {
        let count = count_records(text) as u32;
        if count >= hard_limit {
            return (None, Err(count));
        }
        let index = text
            .lines()
            .filter_map(|l| l.split("index=").nth(1))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .max()
            .unwrap_or(100)
            + 1;
        (
            Some(format!("{text}{}", record(index))),
            Ok((index, count + 1)),
        )
    })?;
    Ok(opened.map(|(index, now)| {
        let peak_path = format!("{session_file}.peak");
        let _ = with_locked_file(&peak_path, |text| {
            let peak = text.trim().parse::<u32>().unwrap_or(0).max(now);
            (Some(peak.to_string()), ())
        });
        index
    }))
}

/// Closes the session of `open_record`'s `index`.
pub fn close_record(session_file: &str, index: u64) {
    let _ = with_locked_file(session_file, |text| (Some(remove_record(text, index)), ()));
}

/// Removes the record whose session line has `index`, with its iova dump and table.
fn remove_record(text: &str, index: u64) -> String {
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        let starts_dump = line.starts_with("session iova range dump:");
        let starts_session = line.starts_with("session: pid=");
        let current_has_session = blocks
            .last()
            .is_some_and(|b| b.iter().any(|l| l.starts_with("session: pid=")));
        if starts_dump || (starts_session && (blocks.is_empty() || current_has_session)) {
            blocks.push(Vec::new());
        }
        match blocks.last_mut() {
            Some(block) => block.push(line),
            None => blocks.push(vec![line]),
        }
    }
    let ours = format!("index={index}");
    blocks
        .into_iter()
        .filter(|b| {
            !b.iter()
                .any(|l| l.starts_with("session: pid=") && l.split_whitespace().any(|w| w == ours))
        })
        .flat_map(|b| b.into_iter().map(|l| format!("{l}\n")))
        .collect()
}

#[derive(Debug, Clone)]
struct Settings {
    common: Common,
    bps: u32,
    gop: i32,
    fail_on_first_buffer: bool,
    open_at_caps: bool,
    start_delay_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            common: Common::default(),
            bps: 0,
            gop: -1,
            fail_on_first_buffer: false,
            open_at_caps: false,
            start_delay_ms: 0,
        }
    }
}

/// The state and behaviour both doubles share; each double's `imp` holds one
/// and delegates to it.
struct Core {
    codec: &'static Codec,
    settings: Mutex<Settings>,
    session: Session,
    buffers_seen: AtomicU32,
    encoder: OnceLock<gst::Element>,
}

/// Finds the `Core` of the double that is a pad's parent.
/// The behaviour of the double that is a pad's parent. A free function, not
/// one the pad functions capture: gst-validate calls a pad's functions with
/// their data cleared, so they must capture nothing.
fn core_of(obj: &gst::Object) -> &Core {
    if let Some(h265) = obj.downcast_ref::<FakeMppH265Enc>() {
        return &h265.imp().core;
    }
    &obj.downcast_ref::<FakeMppH264Enc>()
        .expect("a fake MPP encoder")
        .imp()
        .core
}

impl Core {
    fn new(codec: &'static Codec) -> Self {
        Core {
            codec,
            settings: Mutex::default(),
            session: Session::default(),
            buffers_seen: AtomicU32::new(0),
            encoder: OnceLock::new(),
        }
    }

    /// Fresh specs for one class: a GParamSpec belongs to the class it is
    /// installed on, so the two doubles cannot share them.
    fn param_specs() -> Vec<glib::ParamSpec> {
        let own = [
            glib::ParamSpecUInt::builder("bps")
                .blurb("Target bitrate in bit/s, as the MPP encoders take it")
                .build(),
            glib::ParamSpecInt::builder("gop")
                .blurb("GOP size, -1 = framerate, as the MPP encoders take it")
                .minimum(-1)
                .default_value(-1)
                .build(),
            glib::ParamSpecBoolean::builder("open-at-caps")
                .blurb("Open the session when caps arrive instead of at start")
                .build(),
            glib::ParamSpecUInt::builder("start-delay-ms")
                .blurb("How long READY->PAUSED takes, as a slow driver does")
                .build(),
            glib::ParamSpecBoolean::builder("fail-on-first-buffer")
                .blurb("Fail with an error on the first frame, as a VPU that cannot init does")
                .build(),
        ];
        Common::param_specs("frames")
            .into_iter()
            .chain(own)
            .collect()
    }

    fn set_property(&self, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            name if s.common.set(name, value) => (),
            "bps" => s.bps = value.get().unwrap(),
            "gop" => s.gop = value.get().unwrap(),
            "fail-on-first-buffer" => s.fail_on_first_buffer = value.get().unwrap(),
            "open-at-caps" => s.open_at_caps = value.get().unwrap(),
            "start-delay-ms" => s.start_delay_ms = value.get().unwrap(),
            _ => unreachable!(),
        }
    }

    fn property(&self, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        if let Some(value) = s.common.get(pspec.name()) {
            return value;
        }
        match pspec.name() {
            "bps" => s.bps.to_value(),
            "gop" => s.gop.to_value(),
            "fail-on-first-buffer" => s.fail_on_first_buffer.to_value(),
            "open-at-caps" => s.open_at_caps.to_value(),
            "start-delay-ms" => s.start_delay_ms.to_value(),
            _ => unreachable!(),
        }
    }

    fn metadata(codec: &Codec) -> gst::subclass::ElementMetadata {
        gst::subclass::ElementMetadata::new(
            codec.long_name,
            "Codec/Encoder/Video/Hardware",
            codec.description,
            "edgeguard developers",
        )
    }

    /// The src caps, as the real element's template has them.
    fn src_caps(codec: &Codec) -> gst::Caps {
        gst::Caps::builder(codec.caps_name)
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build()
    }

    fn pad_templates(codec: &Codec) -> Vec<gst::PadTemplate> {
        let sink = gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::I420)
            .build();
        fake_mpp_core::always_pads(&sink, &Self::src_caps(codec))
    }

    /// Builds sink -> encoder -> capsfilter -> src (the capsfilter holds the
    /// encoder to the real element's byte-stream output: x264enc would
    /// otherwise pick avc for a downstream that takes both).
    fn constructed(&self, obj: &gst::Bin) {
        CREATED.fetch_add(1, Ordering::SeqCst);
        let encoder = gst::ElementFactory::make(self.codec.encoder)
            .property_from_str("speed-preset", "ultrafast")
            .property_from_str("tune", "zerolatency")
            .build()
            .unwrap();
        let bitstream = gst::ElementFactory::make("capsfilter")
            .name("mpp-bitstream")
            .property("caps", Self::src_caps(self.codec))
            .build()
            .unwrap();
        obj.add_many([&encoder, &bitstream]).unwrap();
        encoder.link(&bitstream).unwrap();
        let sink = gst::GhostPad::builder_from_template_with_target(
            &obj.pad_template("sink").unwrap(),
            &encoder.static_pad("sink").unwrap(),
        )
        .unwrap()
        .chain_function(|pad, parent, buffer| {
            let parent = parent.unwrap();
            let this = core_of(parent);
            let element = parent.downcast_ref::<gst::Element>().unwrap();
            let seen = this.buffers_seen.fetch_add(1, Ordering::SeqCst);
            let (fail_after, output_thread) = {
                let s = this.settings.lock().unwrap();
                (s.common.fail_after_buffers, s.common.output_thread)
            };
            if fail_after > 0 && seen >= fail_after && !output_thread {
                gst::element_error!(element, gst::StreamError::Encode, ("mpp: encoder timeout"));
                return Err(gst::FlowError::Error);
            }
            if this.settings.lock().unwrap().fail_on_first_buffer {
                gst::element_error!(
                    element,
                    gst::LibraryError::Init,
                    ("mpp: failed to init encoder context")
                );
                return Err(gst::FlowError::Error);
            }
            gst::ProxyPad::chain_default(pad, Some(parent), buffer)
        })
        .event_function(|pad, parent, event| {
            let parent = parent.unwrap();
            if let gst::EventView::Caps(caps) = event.view()
                && !core_of(parent).open_at_caps_if_asked(parent, caps.caps())
            {
                return false;
            }
            gst::Pad::event_default(pad, Some(parent), event)
        })
        .build();
        let src = gst::GhostPad::builder_from_template_with_target(
            &obj.pad_template("src").unwrap(),
            &bitstream.static_pad("src").unwrap(),
        )
        .unwrap()
        .build();
        obj.add_pad(&sink).unwrap();
        obj.add_pad(&src).unwrap();
        self.encoder.set(encoder).unwrap();
    }

    /// The double's `change_state`, `parent` being its parent class's.
    fn change_state(
        &self,
        obj: &gst::Bin,
        transition: gst::StateChange,
        parent: impl FnOnce() -> Result<gst::StateChangeSuccess, gst::StateChangeError>,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        fake_mpp_core::change_state(
            transition,
            || self.build_output_thread_if_asked(obj),
            || self.start(obj.upcast_ref()),
            parent,
            || {
                self.session
                    .close(&self.settings.lock().unwrap().common.session_file)
            },
        )
    }

    /// READY->PAUSED: the encoder configured, and the session opened unless
    /// `open-at-caps`.
    fn start(&self, obj: &gst::Element) -> Result<(), gst::StateChangeError> {
        let s = self.settings.lock().unwrap().clone();
        let encoder = self.encoder.get().unwrap();
        if s.bps > 0 {
            encoder.set_property("bitrate", s.bps / 1000);
        }
        if s.gop > 0 {
            // x265enc's key-int-max is a gint, x264enc's a guint.
            encoder.set_property_from_str("key-int-max", &s.gop.to_string());
        }
        self.wait_start_delay(&s);
        match s.open_at_caps {
            true => Ok(()),
            false => self.open_session(obj, &s, (320, 240, 30)),
        }
    }

    /// With `output-thread`: sink -> queue (the output thread, holding
    /// `frames-in-flight` frames back) -> identity (fails there after
    /// `fail-after-buffers`) -> encoder.
    fn build_output_thread_if_asked(&self, obj: &gst::Bin) {
        let s = self.settings.lock().unwrap().clone();
        if s.common.output_thread {
            let encoder = self.encoder.get().unwrap();
            fake_mpp_core::insert_output_thread(obj, &s.common, "mpp-encode", encoder);
        }
    }

    fn wait_start_delay(&self, s: &Settings) {
        if s.start_delay_ms == 0 {
            return;
        }
        let marker = format!("{}.starting", s.common.session_file);
        let _ = std::fs::write(&marker, std::process::id().to_string());
        std::thread::sleep(std::time::Duration::from_millis(s.start_delay_ms.into()));
        let _ = std::fs::remove_file(&marker);
    }

    /// Opens the session from the caps with `open-at-caps`; false when
    /// that fails (the error is posted).
    fn open_at_caps_if_asked(&self, obj: &gst::Object, caps: &gst::CapsRef) -> bool {
        let s = self.settings.lock().unwrap().clone();
        if !s.open_at_caps || self.session.is_open() {
            return true;
        }
        let st = caps.structure(0).unwrap();
        let fps = st
            .get::<gst::Fraction>("framerate")
            .map_or(30, |f| f.numer() / f.denom().max(1));
        let format = (
            st.get::<i32>("width").unwrap_or(0),
            st.get::<i32>("height").unwrap_or(0),
            fps,
        );
        // mpp_init and the first encoder config take tens of milliseconds,
        // so the listing shows the session well after the caps passed the guard.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let element = obj.downcast_ref::<gst::Element>().unwrap();
        self.open_session(element, &s, format).is_ok()
    }

    fn open_session(
        &self,
        obj: &gst::Element,
        s: &Settings,
        (width, height, fps): (i32, i32, i32),
    ) -> Result<(), gst::StateChangeError> {
        let format = self.codec.listing_format;
        self.session.open(obj, &s.common, "encoder", |index| {
            record_as(format, std::process::id(), index, width, height, fps, s.bps)
        })
    }
}

/// Defines one double: the wrapper type `$wrapper` and its subclass in
/// module `$imp`, for a `Codec`; the behaviour is all in `Core`.
macro_rules! fake_mpp_encoder {
    ($wrapper:ident, $imp:ident, $codec:path) => {
        glib::wrapper! {
            pub struct $wrapper(ObjectSubclass<$imp::$wrapper>)
                @extends gst::Bin, gst::Element, gst::Object;
        }

        mod $imp {
            use super::*;

            pub struct $wrapper {
                pub(super) core: Core,
            }

            impl Default for $wrapper {
                fn default() -> Self {
                    $wrapper {
                        core: Core::new(&$codec),
                    }
                }
            }

            #[glib::object_subclass]
            impl ObjectSubclass for $wrapper {
                const NAME: &'static str = $codec.type_name;
                type Type = super::$wrapper;
                type ParentType = gst::Bin;
            }

            impl ObjectImpl for $wrapper {
                fn properties() -> &'static [glib::ParamSpec] {
                    static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(Core::param_specs);
                    PROPS.as_ref()
                }

                fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
                    self.core.set_property(value, pspec)
                }

                fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
                    self.core.property(pspec)
                }

                fn constructed(&self) {
                    self.parent_constructed();
                    self.core.constructed(self.obj().upcast_ref());
                }
            }

            impl GstObjectImpl for $wrapper {}

            impl ElementImpl for $wrapper {
                fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
                    static META: LazyLock<gst::subclass::ElementMetadata> =
                        LazyLock::new(|| Core::metadata(&$codec));
                    Some(&*META)
                }

                fn pad_templates() -> &'static [gst::PadTemplate] {
                    static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
                        LazyLock::new(|| Core::pad_templates(&$codec));
                    TEMPLATES.as_ref()
                }

                fn change_state(
                    &self,
                    transition: gst::StateChange,
                ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
                    self.core
                        .change_state(self.obj().upcast_ref(), transition, || {
                            self.parent_change_state(transition)
                        })
                }
            }

            impl BinImpl for $wrapper {}
        }
    };
}

fake_mpp_encoder!(FakeMppH265Enc, imp_h265, H265);
fake_mpp_encoder!(FakeMppH264Enc, imp_h264, H264);
