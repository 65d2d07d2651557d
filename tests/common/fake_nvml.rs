// SPDX-License-Identifier: MPL-2.0
//! Test doubles for NVIDIA hardware this machine lacks: a fake NVML library
//! (tests/data/fake_nvml.c, built here with `cc`) and an NVENC encoder
//! (`fakenvh264enc`) that share one state file.
//!
//! The state file is what the fake NVML reports (see fake_nvml.c): `gpu`
//! lines, each followed by its NVENC sessions, `session pid=<pid> id=<n>`.
//! The encoder double opens an "NVENC session" in READY->PAUSED by
//! appending its line (its process's pid) to the file, and closes it in
//! PAUSED->READY; once the file holds `hard-limit` sessions, machine-wide as
//! a GeForce driver counts them, it fails to start with the error
//! nvEncOpenEncodeSessionEx gives then. The encoding is x264enc's.
//!
//! Its name starts with `fake`, so `budget-source=auto` counts slots only:
//! tests set `budget-source=nvml`, as a user of a renamed vendor build would.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, OnceLock};

pub const FACTORY_NAME: &str = "fakenvh264enc";
/// The environment variable naming the fake library's state file.
pub const STATE_ENV: &str = "FAKE_NVML_STATE";
/// What nvEncOpenEncodeSessionEx says past a GeForce card's session cap
/// (as ffmpeg prints it; newer drivers say `incompatible client key (21)`).
pub const OPEN_SESSION_ERROR: &str = "OpenEncodeSessionEx failed: out of memory (10)";

/// The fake libnvidia-ml, compiled once per test process.
pub fn library() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fake_nvml.c");
            let out = super::temp_dir("fake-nvml-lib").join("libfake-nvidia-ml.so");
            let status = std::process::Command::new("cc")
                .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o"])
                .arg(&out)
                .arg(&source)
                .status()
                .expect("cc runs (make deps installs gcc)");
            assert!(status.success(), "cc failed on {}", source.display());
            out
        })
        .clone()
}

/// Counts the NVENC sessions of a state file's text, all GPUs together.
pub fn count_sessions(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with("session ")).count()
}

/// Runs `f` on the state file's text with an exclusive flock on
/// `<path>.lock`; the text `f` returns replaces the file in one rename, so
/// the fake library never reads it half written.
fn with_locked_state<T>(path: &str, f: impl FnOnce(&str) -> (Option<String>, T)) -> T {
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(format!("{path}.lock"))
        .unwrap();
    // SAFETY: the fd belongs to `lock`, open for the whole call.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (new_text, result) = f(&text);
    if let Some(new_text) = new_text {
        let partial = format!("{path}.partial");
        File::create(&partial)
            .and_then(|mut file| file.write_all(new_text.as_bytes()))
            .unwrap();
        std::fs::rename(&partial, path).unwrap();
    }
    result
}

/// Opens a session of this process, unless `hard_limit` are open already:
/// its id, or the count that refused it.
fn open_session(path: &str, hard_limit: u32) -> Result<u64, usize> {
    with_locked_state(path, |text| {
        let count = count_sessions(text);
        if count >= hard_limit as usize {
            return (None, Err(count));
        }
        let id = text
            .lines()
            .filter_map(|l| l.split("id=").nth(1)?.trim().parse::<u64>().ok())
            .max()
            .unwrap_or(1000)
            + 1;
        let line = format!("session pid={} id={id}\n", std::process::id());
        (Some(format!("{text}{line}")), Ok(id))
    })
}

fn close_session(path: &str, id: u64) {
    let ours = format!("id={id}");
    with_locked_state(path, |text| {
        let kept: String = text
            .lines()
            .filter(|l| !(l.starts_with("session ") && l.split_whitespace().any(|w| w == ours)))
            .map(|l| format!("{l}\n"))
            .collect();
        (Some(kept), ())
    })
}

pub fn register() {
    gst::Element::register(
        None,
        FACTORY_NAME,
        gst::Rank::NONE,
        FakeNvH264Enc::static_type(),
    )
    .unwrap();
}

glib::wrapper! {
    pub struct FakeNvH264Enc(ObjectSubclass<imp::FakeNvH264Enc>)
        @extends gst::Bin, gst::Element, gst::Object;
}

mod imp {
    use super::*;

    #[derive(Debug, Clone)]
    struct Settings {
        state_file: String,
        hard_limit: u32,
    }

    impl Default for Settings {
        fn default() -> Self {
            Settings {
                state_file: String::new(),
                hard_limit: 8,
            }
        }
    }

    #[derive(Default)]
    pub struct FakeNvH264Enc {
        settings: Mutex<Settings>,
        /// The id of the open session, in the state file it was opened in.
        session: Mutex<Option<(String, u64)>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FakeNvH264Enc {
        const NAME: &'static str = "EdgeguardTestFakeNvH264Enc";
        type Type = super::FakeNvH264Enc;
        type ParentType = gst::Bin;
    }

    impl ObjectImpl for FakeNvH264Enc {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                vec![
                    glib::ParamSpecString::builder("state-file")
                        .blurb("The fake NVML's state file, where sessions are opened")
                        .build(),
                    glib::ParamSpecUInt::builder("hard-limit")
                        .blurb("NVENC sessions of the machine past which opening one fails")
                        .default_value(8)
                        .build(),
                ]
            });
            PROPS.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            let mut s = self.settings.lock().unwrap();
            match pspec.name() {
                "state-file" => {
                    s.state_file = value.get::<Option<String>>().unwrap().unwrap_or_default()
                }
                "hard-limit" => s.hard_limit = value.get().unwrap(),
                _ => unreachable!(),
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            let s = self.settings.lock().unwrap();
            match pspec.name() {
                "state-file" => s.state_file.to_value(),
                "hard-limit" => s.hard_limit.to_value(),
                _ => unreachable!(),
            }
        }

        /// sink -> x264enc -> capsfilter (byte-stream, as nvh264enc) -> src.
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            let encoder = gst::ElementFactory::make("x264enc")
                .property_from_str("speed-preset", "ultrafast")
                .property_from_str("tune", "zerolatency")
                .build()
                .unwrap();
            let bitstream = gst::ElementFactory::make("capsfilter")
                .property("caps", src_caps())
                .build()
                .unwrap();
            obj.add_many([&encoder, &bitstream]).unwrap();
            encoder.link(&bitstream).unwrap();
            for (template, target) in [
                ("sink", encoder.static_pad("sink").unwrap()),
                ("src", bitstream.static_pad("src").unwrap()),
            ] {
                let pad = gst::GhostPad::builder_from_template_with_target(
                    &obj.pad_template(template).unwrap(),
                    &target,
                )
                .unwrap()
                .build();
                obj.add_pad(&pad).unwrap();
            }
        }
    }

    fn src_caps() -> gst::Caps {
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build()
    }

    impl GstObjectImpl for FakeNvH264Enc {}

    impl ElementImpl for FakeNvH264Enc {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "Fake NVENC H.264 encoder (test double)",
                    "Codec/Encoder/Video/Hardware",
                    "Opens an NVENC session in the fake NVML's state file and encodes with x264enc",
                    "edgeguard developers",
                )
            });
            Some(&*META)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                let sink = gst_video::VideoCapsBuilder::new()
                    .format(gst_video::VideoFormat::I420)
                    .build();
                vec![
                    gst::PadTemplate::new(
                        "sink",
                        gst::PadDirection::Sink,
                        gst::PadPresence::Always,
                        &sink,
                    )
                    .unwrap(),
                    gst::PadTemplate::new(
                        "src",
                        gst::PadDirection::Src,
                        gst::PadPresence::Always,
                        &src_caps(),
                    )
                    .unwrap(),
                ]
            });
            TEMPLATES.as_ref()
        }

        fn change_state(
            &self,
            transition: gst::StateChange,
        ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
            if transition == gst::StateChange::ReadyToPaused {
                self.open()?;
            }
            let result = self.parent_change_state(transition);
            if transition == gst::StateChange::PausedToReady || result.is_err() {
                self.close();
            }
            result
        }
    }

    impl BinImpl for FakeNvH264Enc {}

    impl FakeNvH264Enc {
        fn open(&self) -> Result<(), gst::StateChangeError> {
            let s = self.settings.lock().unwrap().clone();
            if s.state_file.is_empty() {
                return Ok(());
            }
            match open_session(&s.state_file, s.hard_limit) {
                Ok(id) => {
                    *self.session.lock().unwrap() = Some((s.state_file, id));
                    Ok(())
                }
                Err(count) => {
                    gst::element_imp_error!(
                        self,
                        gst::LibraryError::Init,
                        ("{OPEN_SESSION_ERROR}"),
                        ["{count} NVENC sessions open, cap {}", s.hard_limit]
                    );
                    Err(gst::StateChangeError)
                }
            }
        }

        fn close(&self) {
            if let Some((file, id)) = self.session.lock().unwrap().take() {
                close_session(&file, id);
            }
        }
    }
}
