// SPDX-License-Identifier: MPL-2.0
//! The request pads `tap_%u`: one more reader of the held window each, with
//! its own `delay` and `active` (pad properties, changeable in PLAYING) and
//! `stats`. The pad keeps no state of its own: the element holds it, so that
//! a property change moves the reader under the element's lock.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use std::sync::LazyLock;

use super::Leaky;
use super::flow::MAX_DELAY;

glib::wrapper! {
    pub struct TapPad(ObjectSubclass<imp::TapPad>) @extends gst::Pad, gst::Object;
}

/// A tap's delay when none is set: it follows the input like a tee branch.
pub const DEFAULT_TAP_DELAY: gst::ClockTime = gst::ClockTime::ZERO;
pub const DEFAULT_TAP_ACTIVE: bool = true;

impl TapPad {
    fn element(&self) -> Option<super::DelayBuffer> {
        self.parent().and_then(|p| p.downcast().ok())
    }
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct TapPad;

    #[glib::object_subclass]
    impl ObjectSubclass for TapPad {
        const NAME: &'static str = "GstDelayBufferTapPad";
        type Type = super::TapPad;
        type ParentType = gst::Pad;
    }

    impl ObjectImpl for TapPad {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                vec![
                    glib::ParamSpecUInt64::builder("delay")
                        .nick("Delay")
                        .blurb(
                            "Delay of this tap in ns, at most one hour. Raising it in PLAYING \
                             replays from that far back, lowering it skips ahead (counted in \
                             dropped); on encoded input the tap lands on a keyframe",
                        )
                        .maximum(MAX_DELAY)
                        .default_value(DEFAULT_TAP_DELAY.nseconds())
                        .mutable_playing()
                        .build(),
                    glib::ParamSpecBoolean::builder("active")
                        .nick("Active")
                        .blurb(
                            "Whether the tap outputs; turned on, it starts `delay` back in the \
                             window, on a keyframe (pre-record)",
                        )
                        .default_value(DEFAULT_TAP_ACTIVE)
                        .mutable_playing()
                        .build(),
                    glib::ParamSpecEnum::builder_with_default("leaky", Leaky::No)
                        .nick("Leaky")
                        .blurb(
                            "What this tap costs when it falls behind: no = what it has not \
                             read is kept for it (live: up to 1 s past the window; not live: \
                             the input waits for it, as a tee waits for its slowest branch); \
                             downstream = it holds back nothing and loses what leaves the \
                             window unread (counted in dropped)",
                        )
                        .mutable_playing()
                        .build(),
                    glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                        .nick("Statistics")
                        .blurb("The tap's delay, pushed and dropped counts")
                        .read_only()
                        .build(),
                ]
            });
            PROPERTIES.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            let obj = self.obj();
            let Some(element) = obj.element() else {
                gst::warning!(gst::CAT_DEFAULT, obj = obj, "tap without a delaybuffer");
                return;
            };
            let pad = obj.upcast_ref::<gst::Pad>();
            match pspec.name() {
                "delay" => element
                    .imp()
                    .set_tap_delay(pad, gst::ClockTime::from_nseconds(value.get().unwrap())),
                "active" => element.imp().set_tap_active(pad, value.get().unwrap()),
                "leaky" => element.imp().set_tap_leaky(pad, value.get().unwrap()),
                _ => unreachable!(),
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            let obj = self.obj();
            let pad = obj.upcast_ref::<gst::Pad>();
            let element = obj.element();
            let tap = element.as_ref().and_then(|e| e.imp().tap_snapshot(pad));
            match pspec.name() {
                "delay" => tap
                    .map_or(DEFAULT_TAP_DELAY, |t| t.delay)
                    .nseconds()
                    .to_value(),
                "active" => tap.map_or(DEFAULT_TAP_ACTIVE, |t| t.active).to_value(),
                "leaky" => tap.map_or(Leaky::No, |t| t.leaky).to_value(),
                "stats" => {
                    let t = tap.unwrap_or_default();
                    gst::Structure::builder("delaybuffer-tap-stats")
                        .field("delay", t.delay.nseconds())
                        .field("pushed", t.pushed)
                        .field("dropped", t.dropped)
                        .build()
                        .to_value()
                }
                _ => unreachable!(),
            }
        }
    }

    impl GstObjectImpl for TapPad {}
    impl PadImpl for TapPad {}
}
