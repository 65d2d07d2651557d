// SPDX-License-Identifier: MPL-2.0
//! Ground shared by the guard bins (vpuguardenc, vpuguarddec) that is not
//! the VPU budget: what arrives on their sink pads, how they follow the child
//! chain working now, and how they tell a child's failure from downstream's.

pub mod child_props;
pub mod input;
pub mod watch;

use gst::prelude::*;

/// Whether `object` is `ancestor` or inside it: a child's ERROR may come
/// from an element the child contains.
pub fn is_same_or_inside(object: &gst::Object, ancestor: &gst::Object) -> bool {
    let mut current = Some(object.clone());
    while let Some(o) = current {
        if &o == ancestor {
            return true;
        }
        current = o.parent();
    }
    false
}

/// Keeps a replacement chain ending at `pad` from sending downstream caps
/// equal to those it already has (`current`): an unchanged CAPS event at a
/// switch would make downstream renegotiate for nothing. Stops looking at the
/// first buffer.
pub fn suppress_repeated_caps(pad: &gst::Pad, current: gst::Caps) {
    pad.add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::BUFFER,
        move |_, info| match &info.data {
            Some(gst::PadProbeData::Event(event)) => match event.view() {
                // Consumed (returning Drop for an event trips a NULL unref
                // with gstreamer-rs).
                gst::EventView::Caps(caps) if caps.caps() == current.as_ref() => {
                    gst::PadProbeReturn::Handled
                }
                _ => gst::PadProbeReturn::Ok,
            },
            _ => gst::PadProbeReturn::Remove,
        },
    );
}
