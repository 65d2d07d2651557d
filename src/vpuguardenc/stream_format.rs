// SPDX-License-Identifier: MPL-2.0
//! The stream format of the guard's output when its encoder may change
//! mid-stream. A new encoder brings new parameter sets (and maybe another
//! profile or level); muxers take that only with parameter sets in band:
//! matroskamux refuses a new codec_data in avc/hvc1 but lets it pass in
//! avc3/hev1, and byte-stream carries them in band by design.

use super::codec::Codec;

/// In-band formats, in the order the guard prefers them.
fn in_band_formats(codec: Codec) -> [&'static str; 2] {
    match codec {
        Codec::H264 => ["byte-stream", "avc3"],
        Codec::H265 => ["byte-stream", "hev1"],
    }
}

fn format_caps(codec: Codec, format: &str) -> gst::Caps {
    gst::Caps::builder(codec.media_type())
        .field("stream-format", format)
        .field("alignment", "au")
        .build()
}

/// Output caps for a chain whose encoder may be switched later: the first
/// in-band format downstream accepts, None when it accepts none (the switch
/// then sends downstream new caps it may refuse; docs/vpuguardenc.md).
pub fn in_band_caps(codec: Codec, downstream: &gst::Caps) -> Option<gst::Caps> {
    in_band_formats(codec)
        .into_iter()
        .map(|format| format_caps(codec, format))
        .find(|caps| downstream.can_intersect(caps))
}

/// Output caps for a replacement chain: the stream format and alignment
/// downstream negotiated with the encoder it replaces. Profile and level stay
/// free: the caps query still offers only what downstream accepts.
pub fn pinned_caps(negotiated: &gst::CapsRef) -> Option<gst::Caps> {
    let s = negotiated.structure(0)?;
    let mut builder = gst::Caps::builder(s.name().as_str());
    for field in ["stream-format", "alignment"] {
        if let Ok(value) = s.get::<&str>(field) {
            builder = builder.field(field, value);
        }
    }
    Some(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(text: &str) -> gst::Caps {
        text.parse().unwrap()
    }

    #[test]
    fn byte_stream_first_then_the_in_band_packetized_format() {
        gst::init().unwrap();
        let any = gst::Caps::new_any();
        assert_eq!(
            in_band_caps(Codec::H265, &any).unwrap(),
            caps("video/x-h265,stream-format=byte-stream,alignment=au")
        );
        // What matroskamux takes.
        let mkv = caps(
            "video/x-h265,stream-format={hvc1,hev1},alignment=au; \
             video/x-h264,stream-format={avc,avc3},alignment=au",
        );
        assert_eq!(
            in_band_caps(Codec::H265, &mkv).unwrap(),
            caps("video/x-h265,stream-format=hev1,alignment=au")
        );
        assert_eq!(
            in_band_caps(Codec::H264, &mkv).unwrap(),
            caps("video/x-h264,stream-format=avc3,alignment=au")
        );
        // flvmux takes avc only: no in-band format to ask for.
        let flv = caps("video/x-h264,stream-format=avc");
        assert_eq!(in_band_caps(Codec::H264, &flv), None);
    }

    #[test]
    fn a_replacement_keeps_format_and_alignment_only() {
        gst::init().unwrap();
        let negotiated = caps(
            "video/x-h265,stream-format=hev1,alignment=au,profile=main,level=(string)2.1,\
             width=320,height=240",
        );
        assert_eq!(
            pinned_caps(&negotiated).unwrap(),
            caps("video/x-h265,stream-format=hev1,alignment=au")
        );
        assert_eq!(pinned_caps(&gst::Caps::new_empty()), None);
    }
}
