// SPDX-License-Identifier: MPL-2.0
//! What a candidate child's pads take, for the caps queries a guard answers
//! before it has chosen a child. An element is created to ask (creating an
//! MPP element opens no session), once per factory name and process: a
//! factory's pads take the same caps for every guard.

use gst::prelude::*;
use parking_lot::Mutex;

static CACHE: Mutex<Vec<(String, gst::PadDirection, gst::Caps)>> = Mutex::new(Vec::new());

/// What the factory's sink pad takes, in its own order of preference.
pub fn sink_caps(factory: &str) -> Option<gst::Caps> {
    pad_caps(factory, gst::PadDirection::Sink)
}

fn pad_caps(factory: &str, direction: gst::PadDirection) -> Option<gst::Caps> {
    let cached = CACHE
        .lock()
        .iter()
        .find(|(name, dir, _)| name == factory && *dir == direction)
        .map(|(_, _, caps)| caps.clone());
    if cached.is_some() {
        return cached;
    }
    // Created, asked and dropped with no lock held.
    let element = gst::ElementFactory::make(factory).build().ok()?;
    let name = match direction {
        gst::PadDirection::Src => "src",
        _ => "sink",
    };
    let caps = element.static_pad(name)?.query_caps(None);
    drop(element);
    let mut cache = CACHE.lock();
    if !cache
        .iter()
        .any(|(n, dir, _)| n == factory && *dir == direction)
    {
        cache.push((factory.to_string(), direction, caps.clone()));
    }
    Some(caps)
}
