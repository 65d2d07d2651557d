// SPDX-License-Identifier: MPL-2.0
//! Keeping a guard's software child in the latency class of a live stream.
//!
//! x264enc with its defaults (lookahead, B-frames) reports 1.59 s of latency
//! at 30 fps and holds about 48 frames before its first output: behind a live
//! tee whose other branch's `queue` holds 1 s, the tee blocks before that
//! branch prerolls and the pipeline stalls. A hardware encoder outputs each
//! frame at once, so a software child chosen on a live stream is set up as
//! the low-latency encoder it replaces. avdec_* decides by itself from the
//! same LATENCY query, but a replacement decoder gets its caps before it is
//! linked to the stream (`guard::chain::prime`), where the query fails and it
//! takes the stream for a file: frame threading, one frame of latency per
//! thread.

use gst::prelude::*;

/// Whether the stream arriving on `sinkpad` is live, by the upstream LATENCY
/// query. A stream whose upstream does not answer counts as live: a
/// low-latency encoder on a file costs some compression, a high-latency one
/// on a live tee stalls the pipeline.
pub fn upstream_is_live(sinkpad: &gst::Pad) -> bool {
    let mut query = gst::query::Latency::new();
    if sinkpad.peer_query(&mut query) {
        query.result().0
    } else {
        true
    }
}

/// Pixel rates (width x height x frames per second) x264enc keeps up with at
/// a preset on an edge board's CPU (4 Cortex-A76 class cores, shared with the
/// rest of the rig): the slowest preset that does, for the best quality.
const X264_PRESETS: [(u64, &str); 3] = [
    (640 * 480 * 30, "veryfast"),
    (1280 * 720 * 30, "superfast"),
    (u64::MAX, "ultrafast"),
];

/// The speed preset a software encoder keeps up with a live stream of
/// `pixel_rate` at. x265 costs several times x264's CPU per pixel: only
/// ultrafast keeps up with a camera stream on such a CPU.
pub fn live_speed_preset(factory: &str, pixel_rate: u64) -> Option<&'static str> {
    match factory {
        "x264enc" => X264_PRESETS
            .iter()
            .find(|(up_to, _)| pixel_rate <= *up_to)
            .map(|(_, preset)| *preset),
        "x265enc" => Some("ultrafast"),
        _ => None,
    }
}

/// The properties a software encoder gets on a live stream of `pixel_rate`,
/// before the application's own (`sw-properties`, `failover-properties`),
/// which override them property by property. `tune=zerolatency` turns off
/// lookahead and B-frames: output leaves in input order, as a hardware
/// encoder's does, which a switchable encoder needs too.
pub fn encoder_defaults(factory: &str, pixel_rate: u64) -> Option<String> {
    let preset = live_speed_preset(factory, pixel_rate)?;
    Some(format!("props,tune=zerolatency,speed-preset={preset}"))
}

/// The properties a software decoder gets on a live stream, before
/// `sw-properties`: what avdec_* chooses by itself when it can see that the
/// stream is live (slice threading adds no latency, frame threading a frame
/// per thread; `normal` compliance accepts what a camera sends).
pub fn decoder_defaults(factory: &str) -> Option<&'static str> {
    factory
        .starts_with("avdec_")
        .then_some("props,thread-type=slice,std-compliance=normal")
}

/// The fields of `defaults` that `element` has: a property a version of the
/// element lacks is no reason to refuse the stream.
pub fn known_to(element: &gst::Element, defaults: &gst::Structure) -> gst::Structure {
    let mut known = defaults.to_owned();
    known.filter_map_in_place(|field, value| element.find_property(field.as_str()).map(|_| value));
    known
}

/// Asks the pipeline to recompute its latency: a switch of child changed the
/// guard's. The application (gst-launch, a bus watch) answers LATENCY with
/// `gst_bin_recalculate_latency`. The child's own LATENCY message came while
/// it was primed, not yet linked, when the pipeline still saw the old child.
pub fn post_latency_changed(guard: &gst::Element) {
    let _ = guard.post_message(gst::message::Latency::builder().src(guard).build());
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::glib;

    /// Whether `element`'s `property` holds what `text` says (an enum or
    /// flags nick).
    fn has_value(element: &gst::Element, property: &str, text: &str) -> bool {
        let pspec = element.find_property(property).unwrap();
        let expected = glib::Value::deserialize_with_pspec(text, &pspec).unwrap();
        element.property_value(property).serialize().unwrap() == expected.serialize().unwrap()
    }

    const P480_30: u64 = 640 * 480 * 30;
    const P720_30: u64 = 1280 * 720 * 30;
    const P1080_30: u64 = 1920 * 1080 * 30;

    #[test]
    fn x264_goes_faster_as_the_pixel_rate_grows() {
        assert_eq!(
            live_speed_preset("x264enc", 160 * 120 * 30),
            Some("veryfast")
        );
        assert_eq!(live_speed_preset("x264enc", P480_30), Some("veryfast"));
        assert_eq!(live_speed_preset("x264enc", P480_30 + 1), Some("superfast"));
        assert_eq!(live_speed_preset("x264enc", P720_30), Some("superfast"));
        assert_eq!(live_speed_preset("x264enc", P1080_30), Some("ultrafast"));
        assert_eq!(live_speed_preset("x264enc", u64::MAX), Some("ultrafast"));
    }

    #[test]
    fn x265_is_ultrafast_at_every_rate() {
        for rate in [0, P480_30, P1080_30, u64::MAX] {
            assert_eq!(live_speed_preset("x265enc", rate), Some("ultrafast"));
        }
    }

    #[test]
    fn other_encoders_keep_their_defaults() {
        assert_eq!(encoder_defaults("openh264enc", P720_30), None);
        assert_eq!(encoder_defaults("fakempph264enc", P720_30), None);
    }

    #[test]
    fn encoder_defaults_parse_and_apply_to_the_installed_encoders() {
        gst::init().unwrap();
        for (factory, rate, preset) in [
            ("x264enc", P720_30, "superfast"),
            ("x265enc", P720_30, "ultrafast"),
        ] {
            let encoder = gst::ElementFactory::make(factory).build().unwrap();
            let text = encoder_defaults(factory, rate).unwrap();
            let props = crate::guard::child_props::parse_structure("sw-properties", &text)
                .unwrap()
                .unwrap();
            crate::guard::child_props::apply_structure(&encoder, "sw-properties", &props).unwrap();
            assert!(has_value(&encoder, "tune", "zerolatency"), "{factory}");
            assert!(has_value(&encoder, "speed-preset", preset), "{factory}");
        }
    }

    #[test]
    fn decoder_defaults_are_for_libav_only_and_apply_to_it() {
        gst::init().unwrap();
        assert_eq!(decoder_defaults("fakemppvideodec"), None);
        let decoder = gst::ElementFactory::make("avdec_h264").build().unwrap();
        let text = decoder_defaults("avdec_h264").unwrap();
        let props = crate::guard::child_props::parse_structure("sw-properties", text)
            .unwrap()
            .unwrap();
        let props = known_to(&decoder, &props);
        crate::guard::child_props::apply_structure(&decoder, "sw-properties", &props).unwrap();
        assert!(has_value(&decoder, "thread-type", "slice"));
    }

    #[test]
    fn fields_an_element_lacks_are_left_out() {
        gst::init().unwrap();
        let decoder = gst::ElementFactory::make("avdec_h264").build().unwrap();
        let props = gst::Structure::builder("props")
            .field("thread-type", "slice")
            .field("no-such-property", 1)
            .build();
        let known = known_to(&decoder, &props);
        assert!(known.has_field("thread-type"));
        assert!(!known.has_field("no-such-property"));
    }
}
