// SPDX-License-Identifier: MPL-2.0
//! Sources whose pools cannot grow (nvarguscamerasrc, fixed V4L2 queues,
//! decoders pinning their surfaces): how many held references from such a
//! pool have to be replaced by copies so that the source never waits.

/// Buffers the rest of a pipeline keeps in flight outside the delay: the one
/// the source fills, one in flight, the queues and the sinks (each holding
/// its last buffer) of the other branches of a tee.
pub const PIPELINE_RESERVE: u32 = 8;

/// How many references to buffers of a pool with `max_buffers` may be held;
/// `None` when the pool grows without limit (max-buffers 0). A small pool
/// keeps at least three quarters of itself for the rest of the pipeline, a
/// large one (one that grew on the ALLOCATION answer) `PIPELINE_RESERVE`.
pub fn references_allowed(max_buffers: u32) -> Option<u32> {
    if max_buffers == 0 {
        return None;
    }
    Some((max_buffers / 4).max(max_buffers.saturating_sub(PIPELINE_RESERVE)))
}

/// Whether GStreamer copies the memory of `caps` right: system memory (a
/// CPU copy of the pixels) and CUDA memory (device to device, by its own
/// allocator). NVMM's allocator has no copy of its own, and the default one
/// maps and copies what the map shows: the NvBufSurface descriptor, still
/// pointing at the camera's surface. DMABuf would come back as system
/// memory under DMABuf caps. Any other memory is held as references.
pub fn copyable(caps: &gst::CapsRef) -> bool {
    caps.features(0).is_none_or(|features| {
        features
            .iter()
            .filter(|f| f.starts_with("memory:"))
            .all(|f| f == "memory:SystemMemory" || f == "memory:CUDAMemory")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_memory_gstreamer_copies_right_is_copied() {
        gst::init().unwrap();
        let copyable = |caps: &str| copyable(&caps.parse::<gst::Caps>().unwrap());
        assert!(copyable("video/x-raw,format=I420"));
        assert!(copyable("video/x-raw(memory:SystemMemory),format=I420"));
        assert!(copyable("video/x-raw(memory:CUDAMemory),format=NV12"));
        assert!(copyable(
            "video/x-raw(memory:SystemMemory, meta:GstVideoOverlayComposition)"
        ));
        assert!(!copyable("video/x-raw(memory:NVMM),format=NV12"));
        assert!(!copyable("video/x-raw(memory:DMABuf),format=DMA_DRM"));
        assert!(!copyable("video/x-raw(memory:VAMemory),format=NV12"));
    }

    #[test]
    fn pools_that_grow_are_never_short() {
        assert_eq!(references_allowed(0), None);
    }

    #[test]
    fn a_small_fixed_pool_keeps_most_of_itself_for_the_pipeline() {
        // nvarguscamerasrc: 6 to 8 buffers.
        assert_eq!(references_allowed(8), Some(2));
        assert_eq!(references_allowed(6), Some(1));
        assert_eq!(references_allowed(1), Some(0));
    }

    #[test]
    fn a_pool_that_grew_for_the_delay_stays_referenced() {
        // 3 s at 30 fps: 90 held from a pool raised to 92 + 8 for the rest.
        assert!(references_allowed(100) >= Some(90));
        assert_eq!(references_allowed(u32::MAX), Some(u32::MAX - 8));
        // One that grew too little: only the excess is copied.
        assert_eq!(references_allowed(60), Some(52));
    }
}
