// SPDX-License-Identifier: MPL-2.0
//! The two codecs the guard outputs, and which one an encoder factory produces.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

impl Codec {
    pub fn media_type(self) -> &'static str {
        match self {
            Codec::H264 => "video/x-h264",
            Codec::H265 => "video/x-h265",
        }
    }

    /// The parser placed after the encoder, so that both byte-stream and avc
    /// (hvc1) consumers negotiate whatever the encoder itself outputs.
    pub fn parser(self) -> &'static str {
        match self {
            Codec::H264 => "h264parse",
            Codec::H265 => "h265parse",
        }
    }

    /// The software encoder that takes over from a failed hardware encoder
    /// of this codec when `failover-encoder` is `auto`.
    pub fn failover_encoder(self) -> &'static str {
        match self {
            Codec::H264 => "x264enc",
            Codec::H265 => "x265enc",
        }
    }

    pub fn caps(self) -> gst::Caps {
        gst::Caps::new_empty_simple(self.media_type())
    }

    /// The codec an encoder factory's src pad template announces, if it is one
    /// of ours. Read from the registry: no element is created. A parser
    /// (h265parse) outputs the codec too but encodes nothing: not an encoder.
    pub fn of_factory(factory: &gst::ElementFactory) -> Option<Codec> {
        if !factory.has_type(gst::ElementFactoryType::ENCODER) {
            return None;
        }
        factory
            .static_pad_templates()
            .iter()
            .filter(|t| t.direction() == gst::PadDirection::Src)
            .find_map(|t| {
                let caps = t.caps();
                [Codec::H265, Codec::H264]
                    .into_iter()
                    .find(|codec| caps.iter().any(|s| s.name() == codec.media_type()))
            })
    }

    /// Whether caps (e.g. downstream's answer to a caps query) accept this codec.
    pub fn accepted_by(self, caps: &gst::Caps) -> bool {
        caps.can_intersect(&self.caps())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_of_installed_encoders() {
        gst::init().unwrap();
        let find = |name| gst::ElementFactory::find(name).and_then(|f| Codec::of_factory(&f));
        assert_eq!(find("x264enc"), Some(Codec::H264));
        assert_eq!(find("x265enc"), Some(Codec::H265));
        // An encoder of another codec is not usable by the guard.
        assert_eq!(find("jpegenc"), None);
        // Nor is a parser, which outputs the codec without encoding.
        assert_eq!(find("h265parse"), None);
    }

    #[test]
    fn acceptance_by_caps() {
        gst::init().unwrap();
        let flv = gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .build();
        assert!(Codec::H264.accepted_by(&flv));
        assert!(!Codec::H265.accepted_by(&flv));
        assert!(Codec::H265.accepted_by(&gst::Caps::new_any()));
    }
}
