// SPDX-License-Identifier: MPL-2.0
//! The checks of a guard's settings at NULL->READY: settings errors are
//! reported when the element starts, not mid-stream.

use super::child_props;
use super::children;
use super::kind::Kind;
use crate::vpu::decision::GuardKind;

/// The shared checks (budget, the children's property strings, no guard as
/// a child), then those of the kind.
pub fn validate_settings<K: Kind>(guard: &K) -> Result<(), gst::ErrorMessage> {
    let settings = guard.settings();
    K::budget(&settings).validate().map_err(settings_error)?;
    for (property, text) in K::structure_properties(&settings) {
        child_props::parse_structure(property, text).map_err(settings_error)?;
    }
    for (property, name) in K::child_properties(&settings) {
        children::refuse_guard(property, name).map_err(settings_error)?;
    }
    guard.validate_children(&settings)?;
    // Settings good: the budget source may start what its first reading
    // needs (a DRM baseline scan, NVML's initialisation), outside any lock.
    K::budget(&settings).prepare(K::hw_name(&settings));
    Ok(())
}

/// A settings ERROR with `msg` (which names the property).
pub fn settings_error(msg: String) -> gst::ErrorMessage {
    gst::error_msg!(gst::LibraryError::Settings, ("{}", msg))
}

/// The installed factory `name` that `property` names, when it is a child of
/// `kind` (an encoder, a decoder).
pub fn installed_child(
    property: &str,
    name: &str,
    kind: GuardKind,
) -> Result<gst::ElementFactory, gst::ErrorMessage> {
    let factory = gst::ElementFactory::find(name).ok_or_else(|| {
        gst::error_msg!(
            gst::CoreError::MissingPlugin,
            ("{}: no element '{}' is installed", property, name)
        )
    })?;
    let class = match kind {
        GuardKind::Encoder => gst::ElementFactoryType::ENCODER,
        GuardKind::Decoder => gst::ElementFactoryType::DECODER,
    };
    if !factory.has_type(class) {
        return Err(settings_error(format!(
            "{property}: '{name}' is not {}",
            with_article(kind.noun())
        )));
    }
    Ok(factory)
}

/// "an encoder", "a decoder".
fn with_article(noun: &str) -> String {
    match noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        true => format!("an {noun}"),
        false => format!("a {noun}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_which_property_names_a_missing_child() {
        gst::init().unwrap();
        let err = installed_child("sw-decoder", "nosuchdec", GuardKind::Decoder).unwrap_err();
        assert!(
            err.to_string()
                .contains("sw-decoder: no element 'nosuchdec' is installed"),
            "{err}"
        );
    }

    #[test]
    fn an_element_of_another_class_is_no_child() {
        gst::init().unwrap();
        let err = installed_child("hw-encoder", "h265parse", GuardKind::Encoder).unwrap_err();
        assert!(
            err.to_string()
                .contains("hw-encoder: 'h265parse' is not an encoder"),
            "{err}"
        );
        let err = installed_child("hw-decoder", "identity", GuardKind::Decoder).unwrap_err();
        assert!(
            err.to_string()
                .contains("hw-decoder: 'identity' is not a decoder"),
            "{err}"
        );
    }
}
