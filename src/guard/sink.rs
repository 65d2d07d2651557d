// SPDX-License-Identifier: MPL-2.0
//! The guard's sink pad before and around the decision: the CAPS event that
//! takes it, flushes, EOS, and the caps query answered while no child is
//! there to ask.

use gst::prelude::*;

use super::kind::{DecideError, Kind};
use crate::factory_caps;
use crate::vpu::decision::Mode;

/// An event on the guard's sink pad. The first CAPS event of a stream takes
/// the decision; a later one is renegotiation, which the chain follows (a
/// reclaim counts the stream at its new size).
pub fn sink_event<K: Kind>(guard: &K, pad: &gst::GhostPad, event: gst::Event) -> bool {
    let element = guard.element();
    let core = guard.core();
    match event.type_() {
        gst::EventType::Eos => return super::eos::sink_eos(guard, pad, event),
        gst::EventType::FlushStart => {
            let forwarded = gst::Pad::event_default(pad, Some(&element), event);
            core.flush_started();
            return forwarded;
        }
        gst::EventType::FlushStop => core.flush_stopped(),
        _ => (),
    }
    if let gst::EventView::Caps(caps) = event.view() {
        let (needs_chain, old_caps) = {
            let mut state = core.state.lock();
            match state.as_mut() {
                Some(state) => (
                    false,
                    Some(std::mem::replace(&mut state.caps, caps.caps_owned())),
                ),
                None => (true, None),
            }
        };
        drop(old_caps);
        if needs_chain {
            match super::decide::decide_and_build(guard, caps.caps()) {
                Ok(()) => (),
                Err(DecideError::Failed(err)) => {
                    element.post_error_message(err);
                    return false;
                }
                Err(DecideError::Stopping) => {
                    gst::debug!(K::cat(), obj = element, "stopping: no decision taken");
                    return false;
                }
            }
        }
    }
    gst::Pad::event_default(pad, Some(&element), event)
}

/// Before the decision there is no child to ask: offer what the candidates
/// take, the hardware one first so upstream fixates to a format it takes
/// without conversion, as the template allows, then the template itself (a
/// converter or parser in the chain takes the rest).
pub fn sink_query<K: Kind>(guard: &K, pad: &gst::GhostPad, query: &mut gst::QueryRef) -> bool {
    let element = guard.element();
    if pad.target().is_some() {
        return gst::Pad::query_default(pad, Some(&element), query);
    }
    let gst::QueryViewMut::Caps(q) = query.view_mut() else {
        return gst::Pad::query_default(pad, Some(&element), query);
    };
    let settings = guard.settings();
    let template = pad.pad_template_caps();
    let mut caps = gst::Caps::new_empty();
    for name in candidate_names::<K>(&settings) {
        if let Some(sink_caps) = factory_caps::sink_caps(name) {
            caps.merge(sink_caps.intersect_with_mode(&template, gst::CapsIntersectMode::First));
        }
    }
    caps.merge(template);
    q.set_result(&filtered(caps, q.filter()));
    true
}

/// The children `mode` lets the guard choose, the hardware one first.
pub fn candidate_names<K: Kind>(settings: &K::Settings) -> Vec<&str> {
    let mode = K::mode(settings);
    let mut names = Vec::with_capacity(2);
    if mode != Mode::Software {
        names.push(K::hw_name(settings));
    }
    if mode != Mode::Hardware {
        names.push(K::sw_name(settings));
    }
    names
}

/// A caps query's answer: `caps` within the query's filter, in the filter's
/// order of preference.
pub fn filtered(caps: gst::Caps, filter: Option<&gst::CapsRef>) -> gst::Caps {
    match filter {
        Some(filter) => filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
        None => caps,
    }
}
