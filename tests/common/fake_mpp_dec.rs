// SPDX-License-Identifier: MPL-2.0
//! A test double for Rockchip's mppvideodec, for machines without a VPU.
//!
//! It behaves as the real element does where vpuguarddec can tell: it opens a
//! "VPU session" in READY->PAUSED by appending an `rkvdec` record to a
//! sessions-summary file in the kernel's layout, closes it in PAUSED->READY,
//! fails to start once the file holds `hard-limit` sessions (as an overloaded
//! VPU would), and outputs NV12 as MPP does. The decoding itself is done by
//! avdec_h264, so the output is real pictures. It shares the encoder doubles'
//! `<session-file>.peak`, the most sessions ever open at once.
//!
//! With `refuse-caps` it refuses the caps without an ERROR, as mppvideodec
//! does when `mpp_init` fails in set_format (the VPU has no session left).
//!
//! With `output-thread` it decodes on its own thread, as mppvideodec pushes
//! from its src task, keeping `frames-in-flight` access units queued in front
//! of the decoder; `fail-after-buffers` then fails there, asynchronously, with
//! those units (and the frames inside avdec_h264) never coming out.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use std::sync::{LazyLock, Mutex, OnceLock};

use super::fake_mpp;

pub const FACTORY_NAME: &str = "fakemppvideodec";

pub fn register() {
    gst::Element::register(
        None,
        FACTORY_NAME,
        gst::Rank::NONE,
        FakeMppVideoDec::static_type(),
    )
    .unwrap();
}

/// One decoder record in the kernel listing's layout.
pub fn decoder_record(pid: u32, index: u64) -> String {
    format!("session: pid={pid} index={index}\n device: fdc38100.rkvdec-core\n memory: 12 MiB\n")
}

glib::wrapper! {
    pub struct FakeMppVideoDec(ObjectSubclass<imp::FakeMppVideoDec>)
        @extends gst::Bin, gst::Element, gst::Object;
}

mod imp {
    use super::*;

    #[derive(Debug, Clone)]
    struct Settings {
        session_file: String,
        hard_limit: u32,
        output_thread: bool,
        frames_in_flight: u32,
        fail_after_buffers: u32,
        refuse_caps: bool,
    }

    impl Default for Settings {
        fn default() -> Self {
            Settings {
                session_file: String::new(),
                hard_limit: 8,
                output_thread: false,
                frames_in_flight: 0,
                fail_after_buffers: 0,
                refuse_caps: false,
            }
        }
    }

    #[derive(Default)]
    pub struct FakeMppVideoDec {
        settings: Mutex<Settings>,
        session_index: Mutex<Option<u64>>,
        decoder: OnceLock<gst::Element>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FakeMppVideoDec {
        const NAME: &'static str = "EdgeguardTestFakeMppVideoDec";
        type Type = super::FakeMppVideoDec;
        type ParentType = gst::Bin;
    }

    impl ObjectImpl for FakeMppVideoDec {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                vec![
                    glib::ParamSpecString::builder("session-file")
                        .blurb("Sessions-summary file that stands in for the kernel's")
                        .build(),
                    glib::ParamSpecUInt::builder("hard-limit")
                        .blurb("Sessions past which starting fails, as an overloaded VPU does")
                        .default_value(8)
                        .build(),
                    glib::ParamSpecBoolean::builder("output-thread")
                        .blurb("Decode on an own thread, as mppvideodec pushes from its src task")
                        .build(),
                    glib::ParamSpecUInt::builder("frames-in-flight")
                        .blurb("With output-thread: access units kept queued before decoding")
                        .build(),
                    glib::ParamSpecBoolean::builder("refuse-caps")
                        .blurb("Refuse the caps without an error, as a failed mpp_init does")
                        .build(),
                    glib::ParamSpecUInt::builder("fail-after-buffers")
                        .blurb("Fail after this many access units, as a VPU that hangs does (0 = never)")
                        .build(),
                ]
            });
            PROPS.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            let mut s = self.settings.lock().unwrap();
            match pspec.name() {
                "session-file" => {
                    s.session_file = value.get::<Option<String>>().unwrap().unwrap_or_default()
                }
                "hard-limit" => s.hard_limit = value.get().unwrap(),
                "output-thread" => s.output_thread = value.get().unwrap(),
                "frames-in-flight" => s.frames_in_flight = value.get().unwrap(),
                "fail-after-buffers" => s.fail_after_buffers = value.get().unwrap(),
                "refuse-caps" => s.refuse_caps = value.get().unwrap(),
                _ => unreachable!(),
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            let s = self.settings.lock().unwrap();
            match pspec.name() {
                "session-file" => s.session_file.to_value(),
                "hard-limit" => s.hard_limit.to_value(),
                "output-thread" => s.output_thread.to_value(),
                "frames-in-flight" => s.frames_in_flight.to_value(),
                "fail-after-buffers" => s.fail_after_buffers.to_value(),
                "refuse-caps" => s.refuse_caps.to_value(),
                _ => unreachable!(),
            }
        }

        /// sink -> avdec_h264 -> videoconvert -> capsfilter(NV12) -> src.
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            let decoder = gst::ElementFactory::make("avdec_h264").build().unwrap();
            let convert = gst::ElementFactory::make("videoconvert").build().unwrap();
            let nv12 = gst::ElementFactory::make("capsfilter")
                .name("mpp-nv12")
                .property("caps", nv12_caps())
                .build()
                .unwrap();
            obj.add_many([&decoder, &convert, &nv12]).unwrap();
            gst::Element::link_many([&decoder, &convert, &nv12]).unwrap();
            let sink = gst::GhostPad::builder_from_template_with_target(
                &obj.pad_template("sink").unwrap(),
                &decoder.static_pad("sink").unwrap(),
            )
            .unwrap()
            .event_function(|pad, parent, event| {
                let refuse = parent
                    .and_then(|p| p.downcast_ref::<super::FakeMppVideoDec>())
                    .is_some_and(|d| d.imp().settings.lock().unwrap().refuse_caps);
                if refuse && event.type_() == gst::EventType::Caps {
                    return false;
                }
                gst::Pad::event_default(pad, parent, event)
            })
            .build();
            let src = gst::GhostPad::builder_from_template_with_target(
                &obj.pad_template("src").unwrap(),
                &nv12.static_pad("src").unwrap(),
            )
            .unwrap()
            .build();
            obj.add_pad(&sink).unwrap();
            obj.add_pad(&src).unwrap();
            self.decoder.set(decoder).unwrap();
        }
    }

    impl GstObjectImpl for FakeMppVideoDec {}

    impl ElementImpl for FakeMppVideoDec {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "Fake MPP video decoder (test double)",
                    "Codec/Decoder/Video/Hardware",
                    "Registers an rkvdec session in a sessions-summary file and decodes with avdec_h264",
                    "edgeguard developers",
                )
            });
            Some(&*META)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                let sink = gst::Caps::builder("video/x-h264")
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au")
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
                        &nv12_caps(),
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
            if transition == gst::StateChange::NullToReady {
                self.build_output_thread_if_asked();
            }
            if transition == gst::StateChange::ReadyToPaused {
                self.open_session()?;
            }
            let result = self.parent_change_state(transition);
            if transition == gst::StateChange::PausedToReady || result.is_err() {
                self.close_session();
            }
            result
        }
    }

    impl BinImpl for FakeMppVideoDec {}

    impl FakeMppVideoDec {
        /// sink -> [queue (the output thread, holding frames-in-flight
        /// units back) ->] identity (fails after fail-after-buffers) -> decoder.
        fn build_output_thread_if_asked(&self) {
            let obj = self.obj();
            let s = self.settings.lock().unwrap().clone();
            let wants = s.output_thread || s.fail_after_buffers > 0;
            if !wants || obj.by_name("mpp-decode").is_some() {
                return;
            }
            let mut front = Vec::new();
            if s.output_thread {
                let mut queue = gst::ElementFactory::make("queue").name("mpp-output-task");
                if s.frames_in_flight > 0 {
                    queue = queue
                        .property("min-threshold-buffers", s.frames_in_flight + 1)
                        .property("max-size-buffers", (s.frames_in_flight + 1).max(200))
                        .property("max-size-bytes", 0u32)
                        .property("max-size-time", 0u64);
                }
                front.push(queue.build().unwrap());
            }
            let mut identity = gst::ElementFactory::make("identity").name("mpp-decode");
            if s.fail_after_buffers > 0 {
                identity = identity.property("error-after", s.fail_after_buffers as i32);
            }
            front.push(identity.build().unwrap());
            let decoder = self.decoder.get().unwrap();
            let sink = obj
                .static_pad("sink")
                .unwrap()
                .downcast::<gst::GhostPad>()
                .unwrap();
            sink.set_target(None::<&gst::Pad>).unwrap();
            obj.add_many(&front).unwrap();
            let mut chain = front.clone();
            chain.push(decoder.clone());
            gst::Element::link_many(&chain).unwrap();
            sink.set_target(Some(&front[0].static_pad("sink").unwrap()))
                .unwrap();
        }

        fn open_session(&self) -> Result<(), gst::StateChangeError> {
            let s = self.settings.lock().unwrap().clone();
            if s.session_file.is_empty() {
                return Ok(());
            }
            let opened = fake_mpp::open_record(&s.session_file, s.hard_limit, |index| {
                decoder_record(std::process::id(), index)
            })
            .map_err(|_| gst::StateChangeError)?;
            match opened {
                Ok(index) => {
                    *self.session_index.lock().unwrap() = Some(index);
                    Ok(())
                }
                Err(count) => {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Busy,
                        (
                            "mpp: no free decoder session ({count} open, hard limit {})",
                            s.hard_limit
                        )
                    );
                    Err(gst::StateChangeError)
                }
            }
        }

        fn close_session(&self) {
            let Some(index) = self.session_index.lock().unwrap().take() else {
                return;
            };
            fake_mpp::close_record(&self.settings.lock().unwrap().session_file, index);
        }
    }

    fn nv12_caps() -> gst::Caps {
        gst::Caps::builder("video/x-raw")
            .field("format", "NV12")
            .build()
    }
}
