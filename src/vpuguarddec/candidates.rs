// SPDX-License-Identifier: MPL-2.0
//! Which decoders can serve a stream: the hardware one if it takes the input
//! caps, the software one named by `sw-decoder` or, for `auto`, the best
//! ranked software decoder of the input's codec (avdec_h264 for H.264,
//! avdec_h265 for H.265, ...), and the parser a decoder may need in front.

use gst::prelude::*;
use parking_lot::Mutex;

/// What the factory's src templates can output, read from the registry: no
/// element is created, no plugin loaded.
pub fn output_caps(factory: &gst::ElementFactory) -> gst::Caps {
    let mut caps = gst::Caps::new_empty();
    for template in factory.static_pad_templates() {
        if template.direction() == gst::PadDirection::Src {
            caps.merge(template.caps());
        }
    }
    caps
}

/// Whether the factory's sink template takes `caps`, as they are or through
/// the parser the chain puts in front of a decoder refusing their stream
/// format: an MP4 file's avc H.264 for a hardware decoder of byte-stream
/// only, as decodebin hands it over (h264parse passes avc through when the
/// guard accepts it).
pub fn takes(factory: &gst::ElementFactory, caps: &gst::CapsRef) -> bool {
    factory.can_sink_any_caps(caps)
        || (parser_for(caps).is_some() && factory.can_sink_any_caps(&any_stream_format(caps)))
}

/// `caps` with the fields a parser converts left open.
fn any_stream_format(caps: &gst::CapsRef) -> gst::Caps {
    let mut open = caps.to_owned();
    for structure in open.make_mut().iter_mut() {
        structure.remove_fields(["stream-format", "alignment", "codec_data"]);
    }
    open
}

/// The software decoder for `caps`: `name`, or for `auto` the highest
/// ranked software video decoder that takes them; never a guard.
pub fn software_decoder(name: &str, caps: &gst::CapsRef) -> Option<gst::ElementFactory> {
    if name != "auto" {
        return crate::guard::children::find(name).filter(|f| takes(f, caps));
    }
    // Looking through the registry takes tens of milliseconds, once per
    // stream: the answer for the same caps is kept for the process (a rig's
    // cameras send the same caps; at most `AUTO_CACHE` different ones).
    const AUTO_CACHE: usize = 32;
    static CHOSEN: Mutex<Vec<(String, Option<String>)>> = Mutex::new(Vec::new());
    let key = caps.to_string();
    let cached = CHOSEN
        .lock()
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, name)| name.clone());
    let name = match cached {
        Some(name) => name,
        None => {
            let name = best_software_decoder(caps).map(|f| f.name().to_string());
            let mut chosen = CHOSEN.lock();
            if chosen.len() >= AUTO_CACHE {
                chosen.clear();
            }
            chosen.push((key, name.clone()));
            name
        }
    };
    gst::ElementFactory::find(&name?)
}

fn best_software_decoder(caps: &gst::CapsRef) -> Option<gst::ElementFactory> {
    let mut decoders: Vec<_> = gst::ElementFactory::factories_with_type(
        gst::ElementFactoryType::DECODER | gst::ElementFactoryType::MEDIA_VIDEO,
        gst::Rank::MARGINAL,
    )
    .into_iter()
    // A guard ranked up for autoplugging is the best ranked decoder of its
    // codecs: chosen, it would choose itself again, without end.
    .filter(|f| {
        !crate::guard::children::is_guard(f) && !crate::guard::is_hardware(f) && takes(f, caps)
    })
    .collect();
    decoders.sort_by(|a, b| {
        b.rank()
            .cmp(&a.rank())
            .then_with(|| a.name().cmp(&b.name()))
    });
    decoders.into_iter().next()
}

/// The parser that turns any stream format of `caps` into what a decoder
/// takes, for the codecs that have stream formats.
pub fn parser_for(caps: &gst::CapsRef) -> Option<&'static str> {
    match caps.structure(0)?.name().as_str() {
        "video/x-h264" => Some("h264parse"),
        "video/x-h265" => Some("h265parse"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(media_type: &str) -> gst::Caps {
        gst::Caps::builder(media_type)
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build()
    }

    #[test]
    fn auto_picks_libav_by_codec() {
        gst::init().unwrap();
        let name = |c: &gst::Caps| software_decoder("auto", c).map(|f| f.name().to_string());
        assert_eq!(name(&caps("video/x-h264")).as_deref(), Some("avdec_h264"));
        assert_eq!(name(&caps("video/x-h265")).as_deref(), Some("avdec_h265"));
        assert_eq!(name(&gst::Caps::new_empty_simple("audio/x-opus")), None);
    }

    #[test]
    fn auto_never_picks_a_guard_even_ranked_above_libav() {
        crate::guard::children::init_for_tests();
        let guard = gst::ElementFactory::find("vpuguarddec").unwrap();
        guard.set_rank(gst::Rank::PRIMARY + 2);
        let best = best_software_decoder(&caps("video/x-h264")).map(|f| f.name().to_string());
        guard.set_rank(gst::Rank::NONE);
        assert_eq!(best.as_deref(), Some("avdec_h264"));
        assert!(software_decoder("vpuguarddec", &caps("video/x-h264")).is_none());
    }

    #[test]
    fn a_named_decoder_must_take_the_caps() {
        gst::init().unwrap();
        assert!(software_decoder("avdec_h264", &caps("video/x-h264")).is_some());
        assert!(software_decoder("avdec_h264", &caps("video/x-h265")).is_none());
        assert!(software_decoder("nosuchdecoder", &caps("video/x-h264")).is_none());
    }

    #[test]
    fn a_parser_opens_the_stream_format_of_the_codec_only() {
        gst::init().unwrap();
        let byte_stream_only: gst::Caps = "video/x-h264, stream-format=byte-stream, alignment=au"
            .parse()
            .unwrap();
        let avc: gst::Caps = "video/x-h264, stream-format=avc, alignment=au, parsed=true"
            .parse()
            .unwrap();
        assert!(!byte_stream_only.can_intersect(&avc));
        assert!(byte_stream_only.can_intersect(&any_stream_format(&avc)));
        let hvc1: gst::Caps = "video/x-h265, stream-format=hvc1".parse().unwrap();
        assert!(!byte_stream_only.can_intersect(&any_stream_format(&hvc1)));
    }

    #[test]
    fn libav_is_software() {
        gst::init().unwrap();
        let avdec = gst::ElementFactory::find("avdec_h264").unwrap();
        assert!(!crate::guard::is_hardware(&avdec));
        assert_eq!(parser_for(&caps("video/x-h264")), Some("h264parse"));
        assert_eq!(
            parser_for(&gst::Caps::new_empty_simple("video/x-vp8")),
            None
        );
    }
}
