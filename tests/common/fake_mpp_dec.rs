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

use super::fake_mpp_core::{self, Common, Session};

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

    #[derive(Debug, Clone, Default)]
    struct Settings {
        common: Common,
        refuse_caps: bool,
    }

    #[derive(Default)]
    pub struct FakeMppVideoDec {
        settings: Mutex<Settings>,
        session: Session,
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
                let own = [glib::ParamSpecBoolean::builder("refuse-caps")
                    .blurb("Refuse the caps without an error, as a failed mpp_init does")
                    .build()];
                Common::param_specs("access units")
                    .into_iter()
                    .chain(own)
                    .collect()
            });
            PROPS.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            let mut s = self.settings.lock().unwrap();
            match pspec.name() {
                name if s.common.set(name, value) => (),
                "refuse-caps" => s.refuse_caps = value.get().unwrap(),
                _ => unreachable!(),
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            let s = self.settings.lock().unwrap();
            if let Some(value) = s.common.get(pspec.name()) {
                return value;
            }
            match pspec.name() {
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
                fake_mpp_core::always_pads(&sink, &nv12_caps())
            });
            TEMPLATES.as_ref()
        }

        fn change_state(
            &self,
            transition: gst::StateChange,
        ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
            fake_mpp_core::change_state(
                transition,
                || self.build_output_thread_if_asked(),
                || self.open_session(),
                || self.parent_change_state(transition),
                || {
                    let s = self.settings.lock().unwrap();
                    self.session.close(&s.common.session_file)
                },
            )
        }
    }

    impl BinImpl for FakeMppVideoDec {}

    impl FakeMppVideoDec {
        /// sink -> [queue (the output thread, holding frames-in-flight
        /// units back) ->] identity (fails after fail-after-buffers) -> decoder.
        fn build_output_thread_if_asked(&self) {
            let s = self.settings.lock().unwrap().clone();
            if s.common.output_thread || s.common.fail_after_buffers > 0 {
                let decoder = self.decoder.get().unwrap();
                fake_mpp_core::insert_output_thread(
                    self.obj().upcast_ref(),
                    &s.common,
                    "mpp-decode",
                    decoder,
                );
            }
        }

        fn open_session(&self) -> Result<(), gst::StateChangeError> {
            let s = self.settings.lock().unwrap().clone();
            let obj = self.obj();
            self.session
                .open(obj.upcast_ref(), &s.common, "decoder", |index| {
                    decoder_record(std::process::id(), index)
                })
        }
    }

    fn nv12_caps() -> gst::Caps {
        gst::Caps::builder("video/x-raw")
            .field("format", "NV12")
            .build()
    }
}
