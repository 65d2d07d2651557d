// SPDX-License-Identifier: MPL-2.0
//! The `budget-source` property: which kind of hardware a guard counts, and
//! the rule `auto` picks one by from the hardware child's factory name.

use gst::glib;

/// Where a guard counts the sessions and load of its hardware.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstEdgeguardBudgetSource")]
pub enum BudgetSource {
    #[default]
    #[enum_value(
        name = "From the hardware child's factory (a session-file set means mpp)",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "Rockchip MPP: the kernel's session listing", nick = "mpp")]
    Mpp = 1,
    #[enum_value(name = "NVIDIA NVENC/NVDEC through NVML", nick = "nvml")]
    Nvml = 2,
    #[enum_value(
        name = "Intel/AMD VA, QSV: video-engine time from DRM fdinfo",
        nick = "drm"
    )]
    Drm = 3,
    #[enum_value(
        name = "NVIDIA Jetson: /dev/v4l2-nvenc, /dev/v4l2-nvdec and their holders",
        nick = "jetson"
    )]
    Jetson = 4,
    #[enum_value(
        name = "Mainline V4L2 codecs: holders of the codec's /dev/video*",
        nick = "v4l2"
    )]
    V4l2 = 5,
    #[enum_value(name = "Only the guards' own slots", nick = "slots")]
    Slots = 6,
}

impl BudgetSource {
    /// The property's nick: the decision message's `budget-source`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetSource::Auto => "auto",
            BudgetSource::Mpp => "mpp",
            BudgetSource::Nvml => "nvml",
            BudgetSource::Drm => "drm",
            BudgetSource::Jetson => "jetson",
            BudgetSource::V4l2 => "v4l2",
            BudgetSource::Slots => "slots",
        }
    }

    /// The source counted: this one, or for `auto` the one `hw_factory`
    /// calls for. A `session-file` set explicitly means the MPP listing
    /// whatever the factory is called: test doubles and renamed vendor
    /// builds rely on that.
    pub fn resolve(self, session_file_set: bool, hw_factory: &str) -> BudgetSource {
        match self {
            BudgetSource::Auto if session_file_set => BudgetSource::Mpp,
            BudgetSource::Auto => for_factory(hw_factory),
            chosen => chosen,
        }
    }
}

/// The source for a hardware child of factory `name`.
pub fn for_factory(name: &str) -> BudgetSource {
    let name = name.to_ascii_lowercase();
    let nvcodec = name.starts_with("nv") && (name.ends_with("enc") || name.ends_with("dec"));
    if name.starts_with("mpp") {
        BudgetSource::Mpp
    } else if name.starts_with("nvv4l2") {
        BudgetSource::Jetson
    } else if nvcodec || name.starts_with("nvautogpu") {
        BudgetSource::Nvml
    } else if ["va", "qsv", "msdk"].iter().any(|p| name.starts_with(p)) {
        // va* covers both the va plugin and gstreamer-vaapi's vaapi*.
        BudgetSource::Drm
    } else if name.starts_with("v4l2") {
        BudgetSource::V4l2
    } else {
        BudgetSource::Slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_from_the_factory_name() {
        for (factory, source) in [
            ("mpph265enc", BudgetSource::Mpp),
            ("mppvideodec", BudgetSource::Mpp),
            ("mppjpegdec", BudgetSource::Mpp),
            ("nvh264enc", BudgetSource::Nvml),
            ("nvh265enc", BudgetSource::Nvml),
            ("nvcudah264enc", BudgetSource::Nvml),
            ("nvh264dec", BudgetSource::Nvml),
            ("nvh265sldec", BudgetSource::Nvml),
            ("nvautogpuh264enc", BudgetSource::Nvml),
            ("nvv4l2h265enc", BudgetSource::Jetson),
            ("nvv4l2decoder", BudgetSource::Jetson),
            ("vah265enc", BudgetSource::Drm),
            ("vah264lpenc", BudgetSource::Drm),
            ("vaapih264enc", BudgetSource::Drm),
            ("qsvh265enc", BudgetSource::Drm),
            ("msdkh264dec", BudgetSource::Drm),
            ("v4l2h264enc", BudgetSource::V4l2),
            ("v4l2slh264dec", BudgetSource::V4l2),
            ("v4l2video11h264enc", BudgetSource::V4l2),
            ("x265enc", BudgetSource::Slots),
            ("fakempph265enc", BudgetSource::Slots),
            // nv-prefixed but not a codec element.
            ("nvvideoconvert", BudgetSource::Slots),
            ("", BudgetSource::Slots),
        ] {
            assert_eq!(for_factory(factory), source, "{factory}");
            assert_eq!(BudgetSource::Auto.resolve(false, factory), source);
        }
    }

    #[test]
    fn a_session_file_set_means_the_mpp_listing_with_auto_only() {
        assert_eq!(
            BudgetSource::Auto.resolve(true, "x265enc"),
            BudgetSource::Mpp
        );
        assert_eq!(
            BudgetSource::Auto.resolve(true, "nvh264enc"),
            BudgetSource::Mpp
        );
        assert_eq!(
            BudgetSource::Drm.resolve(true, "mpph265enc"),
            BudgetSource::Drm
        );
        assert_eq!(
            BudgetSource::Slots.resolve(false, "mpph265enc"),
            BudgetSource::Slots
        );
    }
}
