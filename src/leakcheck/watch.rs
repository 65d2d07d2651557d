// SPDX-License-Identifier: MPL-2.0
//! Element mode: how a leakcheck element watches its own pipeline without
//! any process-wide tracing. GStreamer offers this per pipeline:
//! - the bus's `sync-message::state-changed` and `::error` signals, emitted in
//!   the posting thread after the application's sync handler, which they
//!   leave alone (sync emission is reference-counted, many users may enable
//!   it), and STATE_CHANGED messages of nested elements reach the top bus;
//! - the pipeline's `deep-element-added` and `deep-element-removed` signals;
//! - weak-reference notifications for elements' disposal (see `events`).

use gst::glib;
use gst::prelude::*;

use super::events;

/// The handlers one leakcheck element installed on its pipeline.
pub struct Attachment {
    pipeline: glib::WeakRef<gst::Pipeline>,
    bus: glib::WeakRef<gst::Bus>,
    bus_handlers: Vec<glib::SignalHandlerId>,
    pipeline_handlers: Vec<glib::SignalHandlerId>,
}

pub fn attach(pipeline: &gst::Pipeline, tracker: u64) -> Attachment {
    let bus = pipeline.bus().expect("a pipeline has a bus");
    bus.enable_sync_message_emission();
    let top = pipeline.downgrade();
    let bus_handlers = vec![
        bus.connect_sync_message(Some("state-changed"), move |_, msg| {
            on_state_changed(tracker, &top, msg)
        }),
        bus.connect_sync_message(Some("error"), move |_, msg| on_error(tracker, msg)),
    ];
    let pipeline_handlers = vec![
        pipeline.connect_deep_element_added(move |_, _, element| {
            events::element_added(tracker, element)
        }),
        pipeline.connect_deep_element_removed(move |top, _, element| {
            events::element_removed(tracker, top.upcast_ref(), element)
        }),
    ];
    Attachment {
        pipeline: pipeline.downgrade(),
        bus: bus.downgrade(),
        bus_handlers,
        pipeline_handlers,
    }
}

/// Removes the handlers; what is already gone took its handlers with it.
pub fn detach(attachment: Attachment) {
    if let Some(bus) = attachment.bus.upgrade() {
        for handler in attachment.bus_handlers {
            bus.disconnect(handler);
        }
        bus.disable_sync_message_emission();
    }
    if let Some(pipeline) = attachment.pipeline.upgrade() {
        for handler in attachment.pipeline_handlers {
            pipeline.disconnect(handler);
        }
    }
}

fn on_state_changed(tracker: u64, top: &glib::WeakRef<gst::Pipeline>, msg: &gst::Message) {
    let gst::MessageView::StateChanged(changed) = msg.view() else {
        return;
    };
    let Some(element) = msg.src().and_then(|s| s.downcast_ref::<gst::Element>()) else {
        return;
    };
    let (old, new) = (changed.old(), changed.current());
    // One step up or down; a lost state (old == new) changes nothing.
    if (old as i32 - new as i32).abs() != 1 || old == gst::State::VoidPending {
        return;
    }
    events::state_changed(tracker, element, gst::StateChange::new(old, new), "success");
    if new == gst::State::Null && pipeline_is_stopping(top, element) {
        events::cycle_ended(tracker);
    }
}

/// Whether the watched pipeline is on its way to NULL, for an element of it
/// that reached NULL (its own message is lost to its flushing bus). Not by
/// walking up from the element: that costs as many steps as it is deep.
fn pipeline_is_stopping(top: &glib::WeakRef<gst::Pipeline>, element: &gst::Element) -> bool {
    top.upgrade().is_some_and(|top| {
        top.upcast_ref::<gst::Element>() != element
            && element.parent().is_some()
            && top.pending_state() == gst::State::Null
    })
}

fn on_error(tracker: u64, msg: &gst::Message) {
    let gst::MessageView::Error(error) = msg.view() else {
        return;
    };
    if let Some(element) = msg.src().and_then(|s| s.downcast_ref::<gst::Element>()) {
        events::error_during_change(tracker, element, &error.error().to_string());
    }
}
