// SPDX-License-Identifier: MPL-2.0
//! docs/properties.md is generated from the plugin itself; this test fails
//! when the file no longer matches the code. `make docs` (which sets
//! EDGEGUARD_UPDATE_DOCS=1) regenerates it.

mod common;

use gst::glib;
use gst::prelude::*;
use std::fmt::Write;

fn range(pspec: &glib::ParamSpec) -> String {
    macro_rules! try_range {
        ($($t:ty),*) => {$(
            if let Some(p) = pspec.downcast_ref::<$t>() {
                return format!("{} - {}", p.minimum(), p.maximum());
            }
        )*};
    }
    try_range!(
        glib::ParamSpecUInt,
        glib::ParamSpecInt,
        glib::ParamSpecUInt64,
        glib::ParamSpecInt64
    );
    if let Some(p) = pspec.downcast_ref::<glib::ParamSpecEnum>() {
        return p
            .enum_class()
            .values()
            .iter()
            .map(|v| v.nick().to_string())
            .collect::<Vec<_>>()
            .join(", ");
    }
    String::new()
}

fn default(pspec: &glib::ParamSpec) -> String {
    // Boxed properties (the stats structure) have no default value to print;
    // serializing their NULL would be a GStreamer critical.
    if pspec.value_type().is_a(glib::Type::BOXED) {
        return "-".into();
    }
    let value = pspec.default_value();
    if let Ok(s) = value.get::<Option<String>>() {
        return format!("\"{}\"", s.unwrap_or_default());
    }
    value
        .serialize()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "-".into())
}

fn access(pspec: &glib::ParamSpec) -> String {
    let f = pspec.flags();
    let mut parts = Vec::new();
    if f.contains(glib::ParamFlags::READABLE) {
        parts.push("read");
    }
    if f.contains(glib::ParamFlags::WRITABLE) {
        parts.push("write");
        if f.contains(gst::PARAM_FLAG_MUTABLE_PLAYING) {
            parts.push("changeable in PLAYING");
        } else if f.contains(gst::PARAM_FLAG_MUTABLE_PAUSED) {
            parts.push("changeable in PAUSED");
        } else if f.contains(gst::PARAM_FLAG_MUTABLE_READY) {
            parts.push("changeable in READY");
        }
    }
    parts.join(", ")
}

/// The signals a type defines itself (not inherited ones): name, and
/// whether it is an action signal (one the application emits).
fn own_signals(type_: glib::Type) -> Vec<(String, bool)> {
    use glib::translate::IntoGlib;
    let mut n = 0u32;
    // SAFETY: g_signal_list_ids returns an array of n ids that the caller
    // frees; g_signal_query fills the struct for a valid id.
    unsafe {
        let ids = glib::gobject_ffi::g_signal_list_ids(type_.into_glib(), &mut n);
        let signals = (0..n as usize)
            .map(|i| {
                let mut query = std::mem::zeroed::<glib::gobject_ffi::GSignalQuery>();
                glib::gobject_ffi::g_signal_query(*ids.add(i), &mut query);
                let name = std::ffi::CStr::from_ptr(query.signal_name)
                    .to_string_lossy()
                    .into_owned();
                (
                    name,
                    query.signal_flags & glib::gobject_ffi::G_SIGNAL_ACTION != 0,
                )
            })
            .collect();
        glib::ffi::g_free(ids as *mut _);
        signals
    }
}

fn reference() -> String {
    common::init();
    let plugin = gst::Registry::get().find_plugin("edgeguard").unwrap();
    let mut features: Vec<_> = gst::Registry::get()
        .features_by_plugin("edgeguard")
        .into_iter()
        .collect();
    features.sort_by_key(|f| f.name().to_string());
    let mut md = String::new();
    writeln!(md, "# Property reference").unwrap();
    writeln!(md).unwrap();
    writeln!(
        md,
        "Generated from the plugin by `make docs` (tests/property_reference.rs checks it).\n\n\
         Plugin `{}`: {}. License {}.",
        plugin.plugin_name(),
        plugin.description(),
        plugin.license()
    )
    .unwrap();
    for feature in features {
        let Ok(factory) = feature.clone().downcast::<gst::ElementFactory>() else {
            writeln!(
                md,
                "\n## {} (tracer)\n\nUse with `GST_TRACERS={}`.",
                feature.name(),
                feature.name()
            )
            .unwrap();
            continue;
        };
        let element = factory.create().build().unwrap();
        writeln!(md, "\n## {}\n", factory.name()).unwrap();
        writeln!(
            md,
            "{} ({}). {}\n",
            factory.longname(),
            factory.klass(),
            factory.description()
        )
        .unwrap();
        writeln!(md, "Pads:\n").unwrap();
        for t in factory.static_pad_templates() {
            writeln!(
                md,
                "- `{}` ({:?}, {:?}): `{}`",
                t.name_template(),
                t.direction(),
                t.presence(),
                t.caps()
            )
            .unwrap();
        }
        property_table(&mut md, element.type_(), &element.list_properties());
        // Request pads of their own type (delaybuffer's taps) have properties too.
        for template in element.pad_template_list() {
            let gtype = template.gtype();
            if gtype == gst::Pad::static_type() || !gtype.is_a(gst::Pad::static_type()) {
                continue;
            }
            let pad = glib::Object::builder_with_type(gtype)
                .property("direction", template.direction())
                .build();
            writeln!(
                md,
                "\nPad properties of `{}` ({}):",
                template.name_template(),
                gtype.name()
            )
            .unwrap();
            property_table(&mut md, gtype, &pad.list_properties());
        }
        let signals = own_signals(element.type_());
        for (title, action) in [("Action signals", true), ("Signals", false)] {
            let names: Vec<String> = signals
                .iter()
                .filter(|(_, a)| *a == action)
                .map(|(name, _)| format!("`{name}`"))
                .collect();
            if !names.is_empty() {
                writeln!(md, "\n{title}: {}", names.join(", ")).unwrap();
            }
        }
        let _ = element.set_state(gst::State::Null);
    }
    md
}

/// The table of the properties `owner` itself defines.
fn property_table(md: &mut String, owner: glib::Type, properties: &[glib::ParamSpec]) {
    writeln!(
        md,
        "\n| property | type | default | range / values | access | description |"
    )
    .unwrap();
    writeln!(md, "|---|---|---|---|---|---|").unwrap();
    let mut pspecs: Vec<_> = properties
        .iter()
        .filter(|p| p.owner_type() == owner)
        .cloned()
        .collect();
    pspecs.sort_by_key(|p| p.name().to_string());
    for p in pspecs {
        writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} |",
            p.name(),
            p.value_type().name(),
            default(&p),
            range(&p),
            access(&p),
            p.blurb().unwrap_or_default().replace('|', "\\|")
        )
        .unwrap();
    }
}

#[test]
fn property_reference_matches_the_plugin() {
    let generated = reference();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/properties.md");
    if std::env::var_os("EDGEGUARD_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/properties.md is out of date: run `make docs`\n--- generated ---\n{generated}"
    );
}
