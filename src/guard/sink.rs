// SPDX-License-Identifier: MPL-2.0
//! The guard's sink pad: the CAPS event that takes the decision, flushes,
//! EOS, the caps query answered while no child is there to ask, and the
//! input path (a failover, a reclaim, frames dropped until a keyframe).

use gst::prelude::*;

use super::choice::DecideError;
use super::input::Input;
use super::kind::Kind;
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
    let hw = K::hw_name(settings);
    // A child with no hardware behind it is never created, not even to ask
    // its caps.
    if mode != Mode::Software && !K::budget(settings).hardware_absent(hw, K::SESSION) {
        names.push(hw);
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

/// A buffer or list on the sink pad.
pub fn sink_chain<K: Kind>(
    guard: &K,
    pad: &gst::GhostPad,
    input: Input,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let flushes = guard.core().flushes();
    super::failover::replace_if_failed(guard, pad)?;
    let Some(input) = skip_to_keyframe(guard, input) else {
        return Ok(gst::FlowSuccess::Ok);
    };
    super::reclaim::reclaim_if_due(guard, pad, &input)?;
    if guard.core().flushes() != flushes {
        // Flushed by a seek while switching: this input is the old segment's.
        return Ok(gst::FlowSuccess::Ok);
    }
    super::failover::push_watched(guard, pad, input)
}

/// After a switch that found no keyframe to start from, drops input
/// (counted lost) until one comes.
fn skip_to_keyframe<K: Kind>(guard: &K, input: Input) -> Option<Input> {
    let core = guard.core();
    if core.with_state(|s| s.awaiting_keyframe) != Some(true) {
        return Some(input);
    }
    let mut buffers = input.buffers();
    let key = buffers
        .iter()
        .position(|b| !b.flags().contains(gst::BufferFlags::DELTA_UNIT));
    let skipped = key.unwrap_or(buffers.len());
    core.with_state(|state| {
        state.frames_lost += skipped as u64;
        state.awaiting_keyframe = key.is_none();
    });
    // The skipped references go after the lock.
    let rest = buffers.split_off(skipped);
    drop(buffers);
    match (key, input) {
        (None, _) => None,
        (Some(0), input) => Some(input),
        (Some(_), Input::Buffer(buffer)) => Some(Input::Buffer(buffer)),
        (Some(_), Input::List(_)) => {
            let mut list = gst::BufferList::new_sized(rest.len());
            let list_mut = list.get_mut().expect("a new list is writable");
            rest.into_iter().for_each(|b| list_mut.add(b));
            Some(Input::List(list))
        }
    }
}
