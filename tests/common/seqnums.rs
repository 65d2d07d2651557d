// SPDX-License-Identifier: MPL-2.0
//! The seqnums a seek leaves on the events reaching a sink: GStreamer's rule
//! (and gst-validate's check) is that the FLUSH_STOP and the EOS a seek or
//! its stop cause carry the seek's seqnum.

use gst::prelude::*;
use std::sync::{Arc, Mutex};

/// The seek's seqnum and those of the last FLUSH_STOP, SEGMENT (after that
/// flush) and EOS that reached the pad `watch` probes.
#[derive(Clone, Debug, Default)]
pub struct Seqnums {
    pub seek: Option<gst::Seqnum>,
    pub flush_stop: Option<gst::Seqnum>,
    pub segment: Option<gst::Seqnum>,
    pub eos: Option<gst::Seqnum>,
}

impl Seqnums {
    fn saw(&mut self, event: &gst::EventRef) {
        let seqnum = Some(event.seqnum());
        match event.type_() {
            gst::EventType::FlushStop => {
                self.flush_stop = seqnum;
                self.segment = None;
            }
            gst::EventType::Segment => self.segment = seqnum,
            gst::EventType::Eos => self.eos = seqnum,
            _ => (),
        }
    }

    /// As a bare codec carries them: the seek's seqnum on the flush and on
    /// the EOS, and a SEGMENT after the flush. Its seqnum is not checked:
    /// x265enc (GstVideoEncoder, moving the segment by its 1000 h offset)
    /// sends a SEGMENT of its own with a new one, bare or guarded alike.
    pub fn assert_the_seeks_flush_and_eos(&self, context: &str) {
        let seek = self.seek.expect("no seek sent");
        assert_eq!(
            self.flush_stop,
            Some(seek),
            "{context}: FLUSH_STOP {self:?}"
        );
        assert!(self.segment.is_some(), "{context}: no SEGMENT {self:?}");
        assert_eq!(self.eos, Some(seek), "{context}: EOS {self:?}");
    }
}

/// Records the seqnums of the events reaching `pad`.
pub fn watch(pad: &gst::Pad) -> Arc<Mutex<Seqnums>> {
    let seqnums = Arc::new(Mutex::new(Seqnums::default()));
    let s = seqnums.clone();
    pad.add_probe(
        gst::PadProbeType::EVENT_FLUSH | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if let Some(event) = info.event() {
                s.lock().unwrap().saw(event);
            }
            gst::PadProbeReturn::Ok
        },
    );
    seqnums
}

/// Sends a seek built by `seek` to `element`, its seqnum noted in `seqnums`
/// first (the events it causes may arrive before send_event returns).
pub fn send_seek(element: &gst::Element, seqnums: &Mutex<Seqnums>, seek: gst::Event) -> bool {
    seqnums.lock().unwrap().seek = Some(seek.seqnum());
    element.send_event(seek)
}
