// SPDX-License-Identifier: MPL-2.0
//! What the MPP doubles (fake_mpp.rs, fake_mpp_dec.rs) share beside the
//! listing file: the settings of their session and output thread, the
//! session they hold from READY->PAUSED to PAUSED->READY, and the output
//! thread put in front of their codec. Nothing here is a pad function: the
//! doubles' pad functions find their data through the pad's parent (see
//! `core_of` in fake_mpp.rs).

use gst::glib;
use gst::prelude::*;
use std::sync::Mutex;

use super::fake_mpp;

/// The settings every double has.
#[derive(Debug, Clone)]
pub struct Common {
    pub session_file: String,
    pub hard_limit: u32,
    pub output_thread: bool,
    pub frames_in_flight: u32,
    pub fail_after_buffers: u32,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            session_file: String::new(),
            hard_limit: 8,
            output_thread: false,
            frames_in_flight: 0,
            fail_after_buffers: 0,
        }
    }
}

impl Common {
    /// Fresh specs for one class (a GParamSpec belongs to the class it is
    /// installed on); `unit` is what the double counts ("frames", "access
    /// units").
    pub fn param_specs(unit: &str) -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder("session-file")
                .blurb("Sessions-summary file that stands in for the kernel's")
                .build(),
            glib::ParamSpecUInt::builder("hard-limit")
                .blurb("Sessions past which starting fails, as an overloaded VPU does")
                .default_value(8)
                .build(),
            glib::ParamSpecBoolean::builder("output-thread")
                .blurb(
                    "Work on an own thread, as MPP elements push from their src task; \
                     fail-after-buffers then fails there",
                )
                .build(),
            glib::ParamSpecUInt::builder("frames-in-flight")
                .blurb(&format!(
                    "With output-thread: {unit} kept queued before the oldest goes to the \
                     codec, as MPP's input queue does"
                ))
                .build(),
            glib::ParamSpecUInt::builder("fail-after-buffers")
                .blurb(&format!(
                    "Fail mid-stream after this many {unit}, as a VPU that hangs does (0 = never)"
                ))
                .build(),
        ]
    }

    /// Sets `name` when it is one of these settings; false otherwise.
    pub fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        match name {
            "session-file" => {
                self.session_file = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "hard-limit" => self.hard_limit = value.get().unwrap(),
            "output-thread" => self.output_thread = value.get().unwrap(),
            "frames-in-flight" => self.frames_in_flight = value.get().unwrap(),
            "fail-after-buffers" => self.fail_after_buffers = value.get().unwrap(),
            _ => return false,
        }
        true
    }

    /// The value of `name` when it is one of these settings.
    pub fn get(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "session-file" => self.session_file.to_value(),
            "hard-limit" => self.hard_limit.to_value(),
            "output-thread" => self.output_thread.to_value(),
            "frames-in-flight" => self.frames_in_flight.to_value(),
            "fail-after-buffers" => self.fail_after_buffers.to_value(),
            _ => return None,
        })
    }
}

/// The "VPU session" a double holds: its record's index in the listing.
#[derive(Default)]
pub struct Session {
    index: Mutex<Option<u64>>,
}

impl Session {
    pub fn is_open(&self) -> bool {
        self.index.lock().unwrap().is_some()
    }

    /// Appends `record(index)` to the listing, or posts the ERROR of an
    /// overloaded VPU (no free `noun` session) once it holds `hard-limit`.
    pub fn open(
        &self,
        element: &gst::Element,
        s: &Common,
        noun: &str,
        record: impl FnOnce(u64) -> String,
    ) -> Result<(), gst::StateChangeError> {
        if s.session_file.is_empty() {
            return Ok(());
        }
        let opened = fake_mpp::open_record(&s.session_file, s.hard_limit, record)
            .map_err(|_| gst::StateChangeError)?;
        match opened {
            Ok(index) => {
                *self.index.lock().unwrap() = Some(index);
                Ok(())
            }
            Err(count) => {
                gst::element_error!(
                    element,
                    gst::ResourceError::Busy,
                    (
                        "mpp: no free {noun} session ({count} open, hard limit {})",
                        s.hard_limit
                    )
                );
                Err(gst::StateChangeError)
            }
        }
    }

    pub fn close(&self, session_file: &str) {
        let Some(index) = self.index.lock().unwrap().take() else {
            return;
        };
        fake_mpp::close_record(session_file, index);
    }
}

/// Puts `[queue (the output thread, holding frames-in-flight back, when
/// output-thread) ->] identity (failing after fail-after-buffers, named
/// `identity_name`)` between the bin's sink ghost pad and `codec`, once per
/// bin (NULL->READY comes again after READY->NULL).
pub fn insert_output_thread(bin: &gst::Bin, s: &Common, identity_name: &str, codec: &gst::Element) {
    if bin.by_name(identity_name).is_some() {
        return;
    }
    let mut front = Vec::with_capacity(3);
    if s.output_thread {
        front.push(output_queue(s.frames_in_flight));
    }
    let mut identity = gst::ElementFactory::make("identity").name(identity_name);
    if s.fail_after_buffers > 0 {
        identity = identity.property("error-after", s.fail_after_buffers as i32);
    }
    front.push(identity.build().unwrap());
    let sink = bin
        .static_pad("sink")
        .unwrap()
        .downcast::<gst::GhostPad>()
        .unwrap();
    // The codec's sink pad is free to link only once the ghost pad lets go.
    sink.set_target(None::<&gst::Pad>).unwrap();
    bin.add_many(&front).unwrap();
    let mut chain = front.clone();
    chain.push(codec.clone());
    gst::Element::link_many(&chain).unwrap();
    sink.set_target(Some(&front[0].static_pad("sink").unwrap()))
        .unwrap();
}

/// The output thread. The loop pushes only once it holds frames-in-flight +
/// 1 units, so it leaves frames-in-flight behind. Only the unit count may
/// hold them: no byte or time limit that fills first (then it pushes
/// anyway). At EOS the queue drops the threshold and drains.
fn output_queue(frames_in_flight: u32) -> gst::Element {
    let mut queue = gst::ElementFactory::make("queue").name("mpp-output-task");
    if frames_in_flight > 0 {
        queue = queue
            .property("min-threshold-buffers", frames_in_flight + 1)
            .property("max-size-buffers", (frames_in_flight + 1).max(200))
            .property("max-size-bytes", 0u32)
            .property("max-size-time", 0u64);
    }
    queue.build().unwrap()
}

/// A double's `change_state` around its parent class's (`parent`): the
/// output thread built at NULL->READY (`build`), the session opened at
/// READY->PAUSED (`open`, which may fail the change) and closed when the
/// double is back in READY or the change failed (`close`).
pub fn change_state(
    transition: gst::StateChange,
    build: impl FnOnce(),
    open: impl FnOnce() -> Result<(), gst::StateChangeError>,
    parent: impl FnOnce() -> Result<gst::StateChangeSuccess, gst::StateChangeError>,
    close: impl FnOnce(),
) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
    match transition {
        gst::StateChange::NullToReady => build(),
        gst::StateChange::ReadyToPaused => open()?,
        _ => (),
    }
    let result = parent();
    if transition == gst::StateChange::PausedToReady || result.is_err() {
        close();
    }
    result
}

/// A double's always `sink` and `src` templates.
pub fn always_pads(sink: &gst::Caps, src: &gst::Caps) -> Vec<gst::PadTemplate> {
    let template = |name, direction, caps| {
        gst::PadTemplate::new(name, direction, gst::PadPresence::Always, caps).unwrap()
    };
    vec![
        template("sink", gst::PadDirection::Sink, sink),
        template("src", gst::PadDirection::Src, src),
    ]
}
