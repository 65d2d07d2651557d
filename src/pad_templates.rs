// SPDX-License-Identifier: MPL-2.0
//! The pad templates every edgeguard element has: one always sink pad and one
//! always src pad.

/// An always `sink` and an always `src` template with the given caps.
pub(crate) fn always_sink_and_src(sink: &gst::Caps, src: &gst::Caps) -> Vec<gst::PadTemplate> {
    always_sink_and_named_src(sink, "src", src)
}

/// An always `sink` template and an always src template called `src_name`.
pub(crate) fn always_sink_and_named_src(
    sink: &gst::Caps,
    src_name: &str,
    src: &gst::Caps,
) -> Vec<gst::PadTemplate> {
    [
        ("sink", gst::PadDirection::Sink, sink),
        (src_name, gst::PadDirection::Src, src),
    ]
    .into_iter()
    .map(|(name, direction, caps)| {
        gst::PadTemplate::new(name, direction, gst::PadPresence::Always, caps)
            .expect("a static pad template is valid")
    })
    .collect()
}
