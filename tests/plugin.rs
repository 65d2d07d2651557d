// SPDX-License-Identifier: MPL-2.0
//! The plugin's metadata as GStreamer's registry sees it.

mod common;

#[test]
fn registry_holds_plugin_metadata() {
    common::init();
    let plugin = gst::Registry::get()
        .find_plugin("edgeguard")
        .expect("edgeguard is in the registry");

    assert_eq!(plugin.plugin_name(), "edgeguard");
    assert_eq!(plugin.license(), "MPL");
    assert_eq!(plugin.source(), "gst-plugin-edgeguard");
    assert_eq!(plugin.package(), "gst-plugin-edgeguard");
    assert_eq!(plugin.origin(), env!("CARGO_PKG_REPOSITORY"));
    assert!(
        plugin.description().contains("VPU"),
        "description: {}",
        plugin.description()
    );

    // The version carries the crate version and the commit it was built from.
    let version = plugin.version();
    let prefix = concat!(env!("CARGO_PKG_VERSION"), "-");
    assert!(version.starts_with(prefix), "version: {version}");
    assert!(
        version.len() > prefix.len(),
        "version has no commit: {version}"
    );
}
