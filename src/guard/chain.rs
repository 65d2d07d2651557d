// SPDX-License-Identifier: MPL-2.0
//! Putting a guard's child chain in and out of service: starting it, linking
//! it to the ghost pads, removing it.

use gst::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Starts the chain's elements, downstream first so each has a running peer
/// when it starts.
pub fn start(elements: &[gst::Element]) -> Result<(), String> {
    elements.iter().rev().try_for_each(|element| {
        element
            .sync_state_with_parent()
            .map(|_| ())
            .map_err(|_| format!("{} failed to change state", element.name()))
    })
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

/// Sets elements to NULL and takes them out of the bin.
pub fn remove(bin: &gst::Bin, elements: &[gst::Element]) {
    for element in elements {
        let _ = element.set_state(gst::State::Null);
    }
    let _ = bin.remove_many(elements);
}
