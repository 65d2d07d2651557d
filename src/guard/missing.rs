// SPDX-License-Identifier: MPL-2.0
//! A hardware child that is not installed, told once: in `mode=auto` the
//! guard falls back to software as it must, but a typo in `hw-encoder` or
//! `hw-decoder` (or a machine without the vendor's plugin) would otherwise
//! never be seen.

use parking_lot::Mutex;

/// The (property, factory) pairs already told in this process.
static TOLD: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Whether the missing `factory` named by `property` is told now: true the
/// first time in the process for this pair, false after.
pub fn first_time(property: &str, factory: &str) -> bool {
    let mut told = TOLD.lock();
    if told.iter().any(|(p, f)| p == property && f == factory) {
        return false;
    }
    told.push((property.to_owned(), factory.to_owned()));
    true
}

/// When `factory` is not installed, posts a WARNING on `element` naming
/// `property` and `factory`, once per process for the pair: every guard of
/// a rig shares the same settings.
pub fn warn_if_missing(element: &gst::Element, property: &str, factory: &str) {
    if gst::ElementFactory::find(factory).is_some() || !first_time(property, factory) {
        return;
    }
    gst::element_warning!(
        element,
        gst::CoreError::MissingPlugin,
        (
            "{}: no element '{}' is installed; using the software {} (said once per process)",
            property,
            factory,
            property.trim_start_matches("hw-")
        )
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_property_and_factory_pair_is_told_once() {
        assert!(first_time("hw-decoder", "unit-missing-a"));
        assert!(!first_time("hw-decoder", "unit-missing-a"));
        assert!(first_time("hw-encoder", "unit-missing-a"));
        assert!(first_time("hw-decoder", "unit-missing-b"));
        assert!(!first_time("hw-encoder", "unit-missing-a"));
    }
}
