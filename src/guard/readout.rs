// SPDX-License-Identifier: MPL-2.0
//! The read-only properties every guard has: what the chain in place is
//! (`active-encoder`/`active-decoder`, `hardware`, `sessions`, `switches`,
//! and the kind's own `pixel-rate` or `frames-lost`) and the `stats`.

use gst::glib;
use gst::prelude::*;

use super::kind::Kind;

/// The value of the read-only property `name`, None for a property that is
/// not one of them (the element's own settings).
pub fn read_only_property<K: Kind>(guard: &K, name: &str) -> Option<glib::Value> {
    let core = guard.core();
    if name == "stats" {
        let stats = core.stats.lock().clone();
        let structure =
            stats.to_structure(&format!("{}-stats", K::GUARD.element()), K::GUARD.noun());
        return Some(structure.to_value());
    }
    let state = core.state.lock();
    let state = state.as_ref();
    let value = match name {
        "hardware" => state.is_some_and(|s| s.hardware).to_value(),
        "sessions" => state.map_or(0, |s| s.seen.sessions).to_value(),
        "pixel-rate" => state.map_or(0, |s| s.seen.pixel_rate).to_value(),
        "switches" => state.map_or(0, |s| s.switches).to_value(),
        "frames-lost" => state.map_or(0, |s| s.frames_lost).to_value(),
        name if name == active_property::<K>() => state
            .map_or_else(String::new, |s| s.factory.clone())
            .to_value(),
        _ => return None,
    };
    Some(value)
}

/// `active-encoder` or `active-decoder`.
fn active_property<K: Kind>() -> String {
    format!("active-{}", K::GUARD.noun())
}
