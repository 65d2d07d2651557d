// SPDX-License-Identifier: MPL-2.0
//! A guard's child chain, and putting it in and out of service: starting
//! it, linking it to the ghost pads, removing it.

use gst::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::watch::{ChainWatch, Coverage, Keep};
use crate::vpu::decision::GuardKind;

/// Adds a new chain's elements to the bin with their states locked: the
/// bin's own state changes, which the application makes from its thread
/// while the streaming thread builds a chain (the pipeline going to PLAYING,
/// a bin revisited when its parent's iteration resyncs), then leave them
/// alone. Otherwise a child that cannot start fails in the application's
/// state change, as that change's FAILURE and an ERROR posted before the
/// guard watches the child, instead of in `start`, where the guard falls
/// back.
pub fn add(bin: &gst::Bin, elements: &[gst::Element]) -> Result<(), glib::BoolError> {
    for element in elements {
        element.set_locked_state(true);
    }
    bin.add_many(elements)
}

/// Starts the chain's elements (added by `add`), downstream first so each
/// has a running peer when it starts, then hands them to the bin's state
/// changes: unlocked, and synced again for a change of the bin's state made
/// while they started.
pub fn start(elements: &[gst::Element]) -> Result<(), String> {
    elements.iter().rev().try_for_each(sync_with_parent)?;
    elements.iter().rev().try_for_each(|element| {
        element.set_locked_state(false);
        sync_with_parent(element)
    })
}

fn sync_with_parent(element: &gst::Element) -> Result<(), String> {
    element
        .sync_state_with_parent()
        .map(|_| ())
        .map_err(|_| format!("{} failed to change state", element.name()))
}

/// Makes the chain the one the ghost pads lead to. `rebuilding` is set
/// meanwhile: linking sends a RECONFIGURE upstream that the sink pad drops.
pub fn attach(
    sinkpad: &gst::GhostPad,
    srcpad: &gst::GhostPad,
    elements: &[gst::Element],
    rebuilding: &AtomicBool,
) -> Result<(), String> {
    let (Some(first), Some(last)) = (elements.first(), elements.last()) else {
        return Err("an empty chain".into());
    };
    rebuilding.store(true, Ordering::SeqCst);
    let linked = srcpad
        .set_target(Some(&last.static_pad("src").unwrap()))
        .and_then(|_| sinkpad.set_target(Some(&first.static_pad("sink").unwrap())));
    rebuilding.store(false, Ordering::SeqCst);
    linked.map_err(|e| e.to_string())
}

/// Sets every child the bin still has to NULL and takes it out: a chain
/// being built or replaced when the stream stopped is in the bin without
/// being in the guard's state, and must not be disposed above NULL.
pub fn remove_all(bin: &gst::Bin) {
    remove(bin, &bin.children());
}

/// Sets elements to NULL and takes them out of the bin.
pub fn remove(bin: &gst::Bin, elements: &[gst::Element]) {
    for element in elements {
        stop(element);
    }
    let _ = bin.remove_many(elements);
}

/// Sets a child to NULL for good: its state is locked first, so that the
/// bin's own state change, running in the application's thread while the
/// streaming thread replaces a chain, cannot take it back to PAUSED before it
/// is removed (it was then disposed above NULL).
pub fn stop(element: &gst::Element) {
    element.set_locked_state(true);
    let _ = element.set_state(gst::State::Null);
}

/// Sends the stream's sticky events on `sinkpad` (stream-start, caps,
/// segment...) to the chain's first element before it is linked: the chain
/// then has its caps before anything else reaches it (a FLUSH_STOP of a seek
/// racing a switch, a buffer), and a child that refuses them (mppvideodec
/// opens its MPP context on caps) is found out before the stream depends on
/// it. `caps` are the caps of a CAPS event being handled, which are not
/// sticky on `sinkpad` yet; they replace its own.
pub fn prime(
    sinkpad: &gst::GhostPad,
    elements: &[gst::Element],
    caps: Option<&gst::CapsRef>,
) -> Result<(), String> {
    let first = elements.first().ok_or("an empty chain")?;
    let sink = first
        .static_pad("sink")
        .ok_or("a chain starts on a sink pad")?;
    let mut events = Vec::new();
    sinkpad.sticky_events_foreach(|event| {
        if caps.is_none() || event.type_() < gst::EventType::Caps {
            events.push(event.clone());
        }
        std::ops::ControlFlow::Continue(gst::EventForeachAction::Keep)
    });
    events.extend(caps.map(|caps| gst::event::Caps::new(&caps.to_owned())));
    for event in events {
        if !sink.send_event(event.clone()) {
            let what = match event.view() {
                gst::EventView::Caps(c) => format!("the caps {}", c.caps()),
                _ => format!("the {:?} event", event.type_()),
            };
            return Err(format!("{} refused {what}", first.name()));
        }
    }
    Ok(())
}

/// Runs `switch` off the streaming thread, holding `sinkpad`'s stream lock so
/// that no buffer or serialized event reaches the chain meanwhile, unless the
/// guard is stopping or the pad flushing. `deferring` is set meanwhile: what
/// the switch would announce waits until the lock is released (an
/// application seeking from a sync handler would otherwise wait for the
/// source's stream lock while the source waits for ours).
pub fn off_stream(
    sinkpad: &gst::GhostPad,
    stopping: &AtomicBool,
    deferring: &AtomicBool,
    switch: impl FnOnce(),
) {
    let _stream = sinkpad.stream_lock();
    if stopping.load(Ordering::SeqCst) || sinkpad.pad_flags().contains(gst::PadFlags::FLUSHING) {
        return;
    }
    deferring.store(true, Ordering::SeqCst);
    switch();
    deferring.store(false, Ordering::SeqCst);
}

/// An element of the factory `name` for a chain.
pub fn make(name: &str) -> Result<gst::Element, ChainError> {
    gst::ElementFactory::make(name)
        .build()
        .map_err(|e| ChainError::Config(format!("cannot create {name}: {e}")))
}

/// The child `factory` makes.
pub fn create(factory: &gst::ElementFactory) -> Result<gst::Element, ChainError> {
    factory
        .create()
        .build()
        .map_err(|e| ChainError::Config(format!("cannot create {}: {e}", factory.name())))
}

/// Adds the chain of `factory`'s child to the bin (as `add` does) and
/// links it in stream order; when it cannot be linked, none of it stays.
pub fn add_linked(
    bin: &gst::Bin,
    elements: &[gst::Element],
    factory: &gst::ElementFactory,
) -> Result<(), ChainError> {
    add(bin, elements).map_err(|e| ChainError::Config(e.to_string()))?;
    gst::Element::link_many(elements).map_err(|e| {
        let _ = bin.remove_many(elements);
        ChainError::Config(format!("cannot link the {} chain: {e}", factory.name()))
    })
}

/// What a child is there for, which decides the properties it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Hardware,
    Software,
    /// A software child taking over mid-stream from a failed hardware one.
    Failover,
}

/// A chain created and linked inside the bin, not yet linked to the ghost pads.
pub struct Chain {
    /// In stream order.
    pub elements: Vec<gst::Element>,
    /// The encoder or decoder: its ERRORs are the chain's.
    pub child: gst::Element,
    pub factory: String,
    pub role: Role,
    /// Whether the chain may be replaced mid-stream (failover or reclaim).
    pub switchable: bool,
}

impl Chain {
    pub fn last(&self) -> &gst::Element {
        self.elements.last().expect("a chain has a child")
    }

    /// A watch for the chain, when the guard must follow it: a hardware child
    /// until its first output at least, any chain that may be replaced
    /// mid-stream for the whole stream.
    pub fn watch<W: Coverage + std::fmt::Debug>(&self) -> Option<Arc<ChainWatch<W>>> {
        let hardware = self.role == Role::Hardware;
        let keep = if self.switchable {
            Keep::WholeStream
        } else {
            Keep::UntilFirstOutput
        };
        (hardware || self.switchable)
            .then(|| ChainWatch::new(self.child.clone(), hardware, keep, self.last()))
    }
}

/// Why a chain could not be built.
#[derive(Debug)]
pub enum ChainError {
    /// The settings are wrong: no other child would fix it.
    Config(String),
    /// The child failed to start: another one may work.
    Start(String),
}

impl ChainError {
    pub fn why(self) -> String {
        match self {
            ChainError::Config(why) | ChainError::Start(why) => why,
        }
    }

    /// The ERROR for a chain of `factory` (a `kind`) that could not be built.
    pub fn into_message(self, kind: GuardKind, factory: &gst::ElementFactory) -> gst::ErrorMessage {
        match self {
            ChainError::Config(msg) => gst::error_msg!(gst::LibraryError::Settings, ("{}", msg)),
            ChainError::Start(why) => gst::error_msg!(
                gst::LibraryError::Init,
                (
                    "{} {} failed to start",
                    capitalized(kind.noun()),
                    factory.name()
                ),
                ["{}", why]
            ),
        }
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
