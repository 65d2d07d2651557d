// SPDX-License-Identifier: MPL-2.0
//! The ghost pads of a guard bin: the sink pad hands events, queries and
//! data to the guard, and the internal pads drop the RECONFIGURE of a chain
//! being linked and note downstream's errors.

use gst::prelude::*;
use gst::subclass::prelude::*;
use std::sync::atomic::Ordering;

use super::input::Input;
use super::kind::Kind;
use crate::metrics;
use crate::vpu::decision::GuardKind;

/// What a guard bin's ghost pads call: the shared sink pad handling of
/// the guard core, unless the kind says otherwise.
pub trait GuardPads: ElementImpl + Kind
where
    <Self as ObjectSubclass>::Type: IsA<gst::Element>,
{
    fn sink_event(&self, pad: &gst::GhostPad, event: gst::Event) -> bool {
        super::sink::sink_event(self, pad, event)
    }
    fn sink_query(&self, pad: &gst::GhostPad, query: &mut gst::QueryRef) -> bool {
        super::sink::sink_query(self, pad, query)
    }
    fn sink_chain(
        &self,
        pad: &gst::GhostPad,
        input: Input,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        super::sink::sink_chain(self, pad, input)
    }
    /// A query on the src pad; by default what the chain answers.
    fn src_query(&self, pad: &gst::GhostPad, query: &mut gst::QueryRef) -> bool {
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }
    /// Whether a chain is being linked to the ghost pads now.
    fn rebuilding(&self) -> bool {
        self.core().rebuilding.load(Ordering::SeqCst)
    }
    /// Downstream returned an error: a flow error the child passes on then
    /// is not the child's own failure.
    fn downstream_failed(&self) {
        self.core().downstream_error.store(true, Ordering::SeqCst);
    }
}

/// The guard owning an internal (proxy) pad of one of its ghost pads.
fn guard_of<T>(parent: Option<&gst::Object>) -> Option<T::Type>
where
    T: GuardPads,
    <T as ObjectSubclass>::Type: IsA<gst::Element>,
{
    parent?.parent()?.downcast::<T::Type>().ok()
}

/// The always `sink` and `src` ghost pads of the guard `element`, from its
/// sink and src templates.
pub fn ghost_pads<T>(element: &gst::Element) -> (gst::GhostPad, gst::GhostPad)
where
    T: GuardPads,
    <T as ObjectSubclass>::Type: IsA<gst::Element>,
{
    let sinkpad = gst::GhostPad::builder_from_template(&element.pad_template("sink").unwrap())
        .name("sink")
        .event_function(|pad, parent, event| {
            T::catch_panic_pad_function(parent, || false, |guard| guard.sink_event(pad, event))
        })
        .query_function(|pad, parent, query| {
            T::catch_panic_pad_function(parent, || false, |guard| guard.sink_query(pad, query))
        })
        .chain_function(|pad, parent, buffer| {
            T::catch_panic_pad_function(
                parent,
                || Err(gst::FlowError::Error),
                |guard| guard.sink_chain(pad, Input::Buffer(buffer)),
            )
        })
        .chain_list_function(|pad, parent, list| {
            T::catch_panic_pad_function(
                parent,
                || Err(gst::FlowError::Error),
                |guard| guard.sink_chain(pad, Input::List(list)),
            )
        })
        // Linking a chain sends RECONFIGURE upstream through this internal
        // pad. The chain is built in the CAPS handler, before upstream's
        // ALLOCATION query, so there is nothing to renegotiate; and behind a
        // non-live tee a renegotiation deadlocks: the source's new ALLOCATION
        // query waits in the queue of a branch whose sink is prerolled, while
        // this branch cannot preroll without more data.
        .proxy_pad_event_function(|pad, parent, event| {
            let rebuilding = guard_of::<T>(parent).is_some_and(|g| g.imp().rebuilding());
            if rebuilding && event.type_() == gst::EventType::Reconfigure {
                return true;
            }
            gst::Pad::event_default(pad, parent, event)
        })
        .build();
    // Found by direction: vpuguardenc's src template has another name.
    let src_template = element
        .pad_template_list()
        .into_iter()
        .find(|t| t.direction() == gst::PadDirection::Src)
        .expect("a guard has a src template");
    let srcpad = gst::GhostPad::builder_from_template(&src_template)
        .name("src")
        .query_function(|pad, parent, query| {
            T::catch_panic_pad_function(parent, || false, |guard| guard.src_query(pad, query))
        })
        .proxy_pad_chain_function(|pad, parent, buffer| {
            let result = gst::ProxyPad::chain_default(pad, parent, buffer);
            note_downstream_result::<T>(parent, result)
        })
        .proxy_pad_chain_list_function(|pad, parent, list| {
            let result = gst::ProxyPad::chain_list_default(pad, parent, list);
            note_downstream_result::<T>(parent, result)
        })
        .build();
    (sinkpad, srcpad)
}

fn note_downstream_result<T>(
    parent: Option<&gst::Object>,
    result: Result<gst::FlowSuccess, gst::FlowError>,
) -> Result<gst::FlowSuccess, gst::FlowError>
where
    T: GuardPads,
    <T as ObjectSubclass>::Type: IsA<gst::Element>,
{
    if let Err(gst::FlowError::Error | gst::FlowError::NotNegotiated) = result
        && let Some(guard) = guard_of::<T>(parent)
    {
        guard.imp().downstream_failed();
    }
    result
}

/// Adds the guard's ghost pads (made by `ghost_pads`) to it and its core,
/// and publishes its decisions to the metrics; the handle keeps them
/// published.
pub fn construct<T>(guard: &T) -> metrics::Handle
where
    T: GuardPads,
    <T as ObjectSubclass>::Type: IsA<gst::Element> + Send + Sync,
{
    let obj = guard.obj();
    let (sinkpad, srcpad) = ghost_pads::<T>(obj.upcast_ref());
    obj.add_pad(&sinkpad).unwrap();
    obj.add_pad(&srcpad).unwrap();
    guard.core().sinkpad.set(sinkpad).unwrap();
    guard.core().continuity.install(&srcpad);
    guard.core().srcpad.set(srcpad).unwrap();
    metrics::publish(&*obj, sample::<T>)
}

/// What the metrics read of a guard: its decisions since creation.
fn sample<T>(obj: &T::Type) -> metrics::Sample
where
    T: GuardPads,
    <T as ObjectSubclass>::Type: IsA<gst::Element>,
{
    let stats = obj.imp().core().stats.lock().clone();
    match T::GUARD {
        GuardKind::Encoder => metrics::Sample::Encoder(stats),
        GuardKind::Decoder => metrics::Sample::Decoder(stats),
    }
}
