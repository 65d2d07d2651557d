// SPDX-License-Identifier: MPL-2.0
//! Which factories a guard may run as its hardware, software or failover
//! child: never a guard. With its rank raised for autoplugging, a guard is
//! the best ranked decoder (encoder) of its codec, so an `auto` choice that
//! looked only at ranks would pick the guard itself and recurse until the
//! stack overflows; a failover would nest one guard in another per failure.

use gst::glib;
use gst::prelude::*;

/// The plugin that registers the guards, for a factory whose plugin is not
/// loaded (its element type is not known yet).
const PLUGIN_NAME: &str = "edgeguard";
const GUARD_FACTORIES: [&str; 2] = ["vpuguarddec", "vpuguardenc"];

/// The guards' GType names: looked up by name, so that this module, which
/// the guards use, does not depend on them in turn.
const GUARD_TYPE_NAMES: [&str; 2] = ["GstVpuGuardDec", "GstVpuGuardEnc"];

/// The guards' types that are registered: an element of a type not
/// registered yet cannot exist.
fn guard_types() -> impl Iterator<Item = glib::Type> {
    GUARD_TYPE_NAMES
        .into_iter()
        .filter_map(glib::Type::from_name)
}

/// Whether the factory makes a guard: its element type is (or derives from)
/// one of the guards' types, whatever the factory is called; a factory not
/// loaded yet is one when our plugin registers it under a guard's name.
pub fn is_guard(factory: &gst::ElementFactory) -> bool {
    let element_type = factory.element_type();
    if element_type.is_valid() {
        return guard_types().any(|guard| element_type.is_a(guard));
    }
    factory.plugin_name().as_deref() == Some(PLUGIN_NAME)
        && GUARD_FACTORIES.contains(&factory.name().as_str())
}

/// The installed factory `name` when a guard may run it as a child: None for
/// a guard, as for a factory that is not installed.
pub fn find(name: &str) -> Option<gst::ElementFactory> {
    gst::ElementFactory::find(name).filter(|factory| !is_guard(factory))
}

/// An error naming `property` and its value when the value is a guard: set
/// explicitly, it is the application's mistake, told at NULL->READY.
pub fn refuse_guard(property: &str, name: &str) -> Result<(), String> {
    match gst::ElementFactory::find(name) {
        Some(factory) if is_guard(&factory) => Err(format!(
            "{property}: '{name}' is a guard; a guard never runs a guard (itself or the \
             other) as its child: name the codec element itself"
        )),
        _ => Ok(()),
    }
}

/// Initializes GStreamer and registers the plugin, once per test process.
#[cfg(test)]
pub fn init_for_tests() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        gst::init().unwrap();
        crate::plugin_register_static().unwrap();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init() {
        init_for_tests();
    }

    #[test]
    fn both_guards_are_guards_and_codecs_are_not() {
        init();
        for name in GUARD_FACTORIES {
            let factory = gst::ElementFactory::find(name).unwrap();
            assert!(is_guard(&factory), "{name}");
            assert!(find(name).is_none(), "{name}");
        }
        for name in ["avdec_h264", "x264enc", "h264parse"] {
            let factory = gst::ElementFactory::find(name).unwrap();
            assert!(!is_guard(&factory), "{name}");
            assert!(find(name).is_some(), "{name}");
        }
    }

    #[test]
    fn a_guard_registered_under_another_name_is_a_guard() {
        init();
        gst::Element::register(
            None,
            "renamedguarddec",
            gst::Rank::NONE,
            crate::vpuguarddec::VpuGuardDec::static_type(),
        )
        .unwrap();
        assert!(find("renamedguarddec").is_none());
        let err = refuse_guard("sw-decoder", "renamedguarddec").unwrap_err();
        assert!(
            err.starts_with("sw-decoder: 'renamedguarddec' is a guard"),
            "{err}"
        );
    }

    #[test]
    fn refusing_names_the_property_and_value_and_passes_codecs_and_unknown_names() {
        init();
        let err = refuse_guard("hw-encoder", "vpuguardenc").unwrap_err();
        assert!(
            err.starts_with("hw-encoder: 'vpuguardenc' is a guard"),
            "{err}"
        );
        assert!(refuse_guard("hw-encoder", "x264enc").is_ok());
        assert!(refuse_guard("hw-encoder", "nosuchenc").is_ok());
    }
}
