// SPDX-License-Identifier: MPL-2.0
//! Reading live objects: element ids, states, reference counts, the objects
//! the pipeline holds as properties, and the VPU session listing. Everything
//! here calls into GStreamer or GObject (property getters, object locks,
//! possibly the last unref of an element), so it runs with no lock of
//! leakcheck's held; its results go into the ledger afterwards.

use gst::glib;
use gst::prelude::*;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use super::identity;
use super::ledger::{Entry, Observed, Target};
use super::paths::Node;
use crate::vpu::listing::{self, SessionRecord};
use crate::vpu::process;

/// Where the element is: its name, its type and its parent's serial (not its
/// path, which is as long as it is deep).
pub fn node(element: &gst::Element) -> Node {
    Node {
        name: element.name().as_str().into(),
        type_name: element.type_().name(),
        parent: element.parent().map(|parent| identity::serial(&parent)),
    }
}

/// The element's factory name (its type's name without one) and klass.
fn factory_and_klass(element: &gst::Element) -> (Arc<str>, Arc<str>) {
    match element.factory() {
        Some(f) => (
            interned(&f.name()),
            interned(f.metadata(gst::ELEMENT_METADATA_KLASS).unwrap_or_default()),
        ),
        None => (interned(element.type_().name()), interned("")),
    }
}

/// One shared copy of each factory name and klass: every element of a
/// factory names the same ones. The set is bounded by the factories of the
/// process. A leaf lock, held for the lookup only.
fn interned(text: &str) -> Arc<str> {
    static TEXTS: LazyLock<Mutex<HashSet<Arc<str>>>> = LazyLock::new(Default::default);
    let mut texts = TEXTS.lock();
    if let Some(known) = texts.get(text) {
        return Arc::clone(known);
    }
    let text: Arc<str> = text.into();
    texts.insert(Arc::clone(&text));
    text
}

/// The element and, for a bin, every element inside it, walked once.
pub fn with_descendants(element: &gst::Element) -> Vec<gst::Element> {
    let mut all = vec![element.clone()];
    if let Some(bin) = element.downcast_ref::<gst::Bin>() {
        all.extend(bin.iterate_recurse().into_iter().flatten());
    }
    all
}

/// The element and everything inside it, parents before their children
/// and children in the order they were added: one visit per element, however
/// deep the bins are nested.
pub fn tree(top: &gst::Element) -> Vec<gst::Element> {
    let mut all = Vec::new();
    let mut stack = vec![top.clone()];
    while let Some(element) = stack.pop() {
        if let Some(bin) = element.downcast_ref::<gst::Bin>() {
            // A bin lists its newest child first; pushed as listed, the
            // oldest comes off the stack first.
            stack.extend(bin.children());
        }
        all.push(element);
    }
    all
}

/// The top-level object above an element (itself when it has no parent).
pub fn top_level(element: &gst::Element) -> gst::Element {
    let mut top = element.clone();
    while let Some(parent) = top.parent().and_then(|p| p.downcast::<gst::Element>().ok()) {
        top = parent;
    }
    top
}

pub fn entry(element: &gst::Element) -> Entry {
    let (factory, klass) = factory_and_klass(element);
    Entry {
        serial: identity::serial(element),
        weak: Arc::new(element.downgrade()),
        node: node(element),
        factory,
        klass,
        state: element.current_state(),
    }
}

/// The places of the element's ancestors that `known` does not know, from
/// its parent up to the first known one: usually none, since a bin is
/// tracked before what is added to it.
pub fn unknown_ancestors(element: &gst::Element, known: impl Fn(u64) -> bool) -> Vec<(u64, Node)> {
    let mut found = Vec::new();
    let mut at = parent_element(element);
    while let Some(parent) = at {
        let serial = identity::serial(&parent);
        if known(serial) {
            break;
        }
        found.push((serial, node(&parent)));
        at = parent_element(&parent);
    }
    found
}

fn parent_element(element: &gst::Element) -> Option<gst::Element> {
    element
        .parent()
        .and_then(|p| p.downcast::<gst::Element>().ok())
}

/// Ledger entries for an element and everything inside it, with the
/// elements themselves (the caller watches the new ones' disposal).
pub fn entries(element: &gst::Element) -> (Vec<gst::Element>, Vec<Entry>) {
    let elements = with_descendants(element);
    let entries = elements.iter().map(entry).collect();
    (elements, entries)
}

/// Whether the pipeline finished its change to NULL.
pub fn settled_in_null(pipeline: &gst::Element) -> bool {
    let (_, current, pending) = pipeline.state(gst::ClockTime::ZERO);
    current == gst::State::Null && pending == gst::State::VoidPending
}

/// Reads the targets' live side. The strong references taken to read them
/// are returned rather than dropped: the caller drops them once it holds no
/// lock and has finished judging (the last one may dispose an element).
///
/// `emptying`: the pipeline is being disposed and removes its children, so
/// an element found outside it is not one the application took out.
pub fn observe(
    targets: &[Target],
    pipeline: Option<&gst::Element>,
    check_pending: bool,
    emptying: bool,
    session_file: Option<&Path>,
    known_name: &str,
) -> (Observed, Vec<gst::Element>) {
    // GStreamer refuses to rename an element inside a bin: only the
    // pipeline's own rename changes paths, and its name begins them all.
    // Not while the pipeline empties itself.
    let renamed = pipeline
        .filter(|_| !emptying)
        .map(|p| p.name().to_string())
        .filter(|name| name != known_name);
    // One walk of the pipeline says what is inside it and in which order:
    // looking up each element's top-level instead walks its ancestors, as
    // many as it is deep.
    let tree = pipeline.map(tree).unwrap_or_default();
    let order: HashMap<u64, usize> = tree
        .iter()
        .enumerate()
        .filter_map(|(place, e)| identity::peek(e).map(|serial| (serial, place)))
        .collect();
    let mut observed = Observed {
        owned: held_by_properties(&tree),
        sessions: this_process_sessions(session_file),
        judged_live: true,
        ..Observed::default()
    };
    let mut alive = Vec::with_capacity(targets.len());
    for target in targets {
        let Some(element) = target.weak.upgrade() else {
            continue;
        };
        // Our upgrade holds one reference: the rest are someone else's.
        let refcount = element.ref_count().saturating_sub(1);
        observed.refcounts.insert(target.serial, refcount);
        let inside = emptying || order.contains_key(&target.serial);
        observed
            .states
            .insert(target.serial, element.current_state());
        if !target.removed && !inside && pipeline.is_some() {
            observed.outside.insert(target.serial);
        }
        let pending = element.pending_state();
        if check_pending && pending != gst::State::VoidPending {
            observed
                .pending
                .insert(target.serial, (element.current_state(), pending));
        }
        alive.push(element);
    }
    observed.renamed = renamed;
    if !emptying {
        observed.order = order;
    }
    (observed, alive)
}

/// Serials of the elements that the pipeline's own elements hold as object
/// properties (playbin's `video-sink`), and of everything inside them.
fn held_by_properties(tree: &[gst::Element]) -> HashSet<u64> {
    let mut owned = HashSet::new();
    for holder in tree {
        for pspec in element_properties(holder).iter() {
            // A held bin holds what is inside it too (playbin's `video-sink`
            // given as "leakcheck ! fakesink": a bin playsink removes at stop).
            if let Ok(Some(value)) = holder
                .property_value(pspec.name())
                .get::<Option<gst::Element>>()
                && identity::peek(&value).is_some()
            {
                owned.extend(with_descendants(&value).iter().filter_map(identity::peek));
            }
        }
    }
    owned
}

/// The readable properties of the holder's type whose value is an element,
/// found once per type: listing a class's properties allocates, and every
/// judgement looks at every element of the pipeline.
fn element_properties(holder: &gst::Element) -> Arc<[glib::ParamSpec]> {
    static BY_TYPE: LazyLock<Mutex<HashMap<glib::Type, Arc<[glib::ParamSpec]>>>> =
        LazyLock::new(Default::default);
    let type_ = holder.type_();
    if let Some(known) = BY_TYPE.lock().get(&type_) {
        return Arc::clone(known);
    }
    // Listed with the cache unlocked: it calls into GObject.
    let found: Arc<[glib::ParamSpec]> = holder
        .list_properties()
        .iter()
        .filter(|pspec| holds_element(pspec))
        .cloned()
        .collect();
    BY_TYPE.lock().insert(type_, Arc::clone(&found));
    found
}

// Takes the spec itself: on a `&&ParamSpec`, `value_type()` would resolve to
// `ToValue::value_type` of the reference (G_TYPE_PARAM), not the property's.
fn holds_element(pspec: &glib::ParamSpec) -> bool {
    pspec.flags().contains(glib::ParamFlags::READABLE)
        && pspec.value_type().is_a(gst::Element::static_type())
}

/// The sessions in the MPP listing opened by a thread of this process, or
/// None when no listing can be read (not a Rockchip board).
pub fn this_process_sessions(session_file: Option<&Path>) -> Option<Vec<SessionRecord>> {
    let (_, text) = listing::read_first_text(session_file).ok()?;
    let records = listing::parse_records(&text);
    Some(
        records
            .into_iter()
            .filter(|r| process::is_this_process(r.tid))
            .collect(),
    )
}
