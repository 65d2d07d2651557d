// SPDX-License-Identifier: MPL-2.0
//! Helpers shared by the integration tests. Nothing here ships in the plugin.

#![allow(dead_code)]

use std::sync::Once;

/// Initializes GStreamer and registers the plugin statically, once per test binary.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initializes");
        gstedgeguard::plugin_register_static().expect("edgeguard registers");
    });
}
