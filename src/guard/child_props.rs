// SPDX-License-Identifier: MPL-2.0
//! Properties set on a guard's chosen child: the free-form `hw-properties` /
//! `sw-properties` structures of both guards, and for encoders the portable
//! `bitrate` and `gop` mapped onto each encoder's own names and units.

use gst::glib;
use gst::prelude::*;

/// The unit an encoder's bitrate property takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitrateUnit {
    BitsPerSecond,
    KilobitsPerSecond,
}

/// Which property of an encoder takes the bitrate, and in what unit.
/// MPP encoders call it `bps` (some forks `bitrate`), always in bit/s; NVIDIA's
/// V4L2 encoders take bit/s too; x264enc, x265enc and the VA encoders kbit/s.
pub fn bitrate_property(
    factory: &str,
    has_bps: bool,
    has_bitrate: bool,
) -> Option<(&'static str, BitrateUnit)> {
    if has_bps {
        Some(("bps", BitrateUnit::BitsPerSecond))
    } else if has_bitrate {
        let in_bits = factory.starts_with("mpp") || factory.starts_with("nvv4l2");
        let unit = if in_bits {
            BitrateUnit::BitsPerSecond
        } else {
            BitrateUnit::KilobitsPerSecond
        };
        Some(("bitrate", unit))
    } else {
        None
    }
}

/// The encoder's GOP (keyframe interval) property among those it has.
pub fn gop_property(has: impl Fn(&str) -> bool) -> Option<&'static str> {
    ["gop", "key-int-max", "iframeinterval", "keyframe-max-dist"]
        .into_iter()
        .find(|name| has(name))
}

/// Set on a software encoder whose stream may switch encoders mid-stream,
/// before `failover-properties` / `sw-properties` (which may override them):
/// no B-frames and no lookahead, as hardware encoders make none. Output then
/// leaves in input order, which is how the guard knows which frames a
/// replacement encoder must be sent, and DTS never goes back at a switch. The
/// preset is one fast enough to carry a stream a VPU was encoding.
pub fn switchable_defaults(factory: &str) -> Option<&'static str> {
    match factory {
        "x264enc" => Some("props,tune=zerolatency,speed-preset=superfast"),
        "x265enc" => Some("props,tune=zerolatency,speed-preset=ultrafast"),
        _ => None,
    }
}

/// Parses a `hw-properties` / `sw-properties` value; empty means none.
pub fn parse_structure(property: &str, text: &str) -> Result<Option<gst::Structure>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    // GStreamer's parser prints a critical (fatal under G_DEBUG=fatal_warnings)
    // instead of failing for some invalid names: check the name first.
    let name = text.split(',').next().unwrap_or_default().trim();
    if !is_valid_structure_name(name) {
        return Err(format!(
            "{property}: '{name}' is not a structure name (letters, digits and /-_.:+, starting with a letter), e.g. \"props,key-int-max=30\""
        ));
    }
    parse_whole_structure(text).map(Some).ok_or_else(|| {
        format!("{property}: '{text}' is not a GstStructure string (e.g. \"props,key-int-max=30\")")
    })
}

/// Parses a structure that must fill the whole string. Going through the C
/// parser with an end pointer: without one it prints a warning (fatal under
/// G_DEBUG=fatal_warnings) when text follows the structure, e.g. after a ';'.
fn parse_whole_structure(text: &str) -> Option<gst::Structure> {
    use gst::glib::translate::FromGlibPtrFull;
    let c_text = std::ffi::CString::new(text).ok()?;
    let mut end: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: c_text outlives the call; the returned structure is owned (full).
    let structure = unsafe {
        let ptr = gst::ffi::gst_structure_from_string(c_text.as_ptr(), &mut end);
        if ptr.is_null() {
            return None;
        }
        gst::Structure::from_glib_full(ptr)
    };
    // SAFETY: end points into c_text, at or after its start.
    let consumed = unsafe { end.offset_from(c_text.as_ptr()) } as usize;
    text.get(consumed..)
        .is_some_and(|rest| rest.trim().is_empty())
        .then_some(structure)
}

/// The rule GStreamer applies to structure names.
fn is_valid_structure_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "/-_.:+".contains(c))
}

/// Sets a number on a property of whatever integer type it has, refusing values
/// out of the property's range.
pub fn set_number(element: &gst::Element, name: &str, number: i64) -> Result<(), String> {
    let pspec = element
        .find_property(name)
        .ok_or_else(|| format!("{} has no property '{name}'", factory_name(element)))?;
    let out_of_range = || format!("{number} does not fit {}'s '{name}'", factory_name(element));
    let value = match pspec.value_type() {
        t if t == glib::Type::U32 => u32::try_from(number)
            .map_err(|_| out_of_range())?
            .to_value(),
        t if t == glib::Type::I32 => i32::try_from(number)
            .map_err(|_| out_of_range())?
            .to_value(),
        t if t == glib::Type::U64 => u64::try_from(number)
            .map_err(|_| out_of_range())?
            .to_value(),
        t if t == glib::Type::I64 => number.to_value(),
        t if t == glib::Type::U_LONG => glib::ffi::gulong::try_from(number)
            .map_err(|_| out_of_range())?
            .to_value(),
        t if t == glib::Type::I_LONG => glib::ffi::glong::try_from(number)
            .map_err(|_| out_of_range())?
            .to_value(),
        other => {
            return Err(format!(
                "{}'s '{name}' is a {other}, not a number",
                factory_name(element)
            ));
        }
    };
    set_checked(element, &pspec, value)
}

/// Applies every field of `props` to `element`, by the property's own type.
/// `origin` names the guard property the fields came from, for errors.
pub fn apply_structure(
    element: &gst::Element,
    origin: &str,
    props: &gst::Structure,
) -> Result<(), String> {
    for (field, value) in props.iter() {
        let pspec = element.find_property(field).ok_or_else(|| {
            format!(
                "{origin}: {} has no property '{field}'",
                factory_name(element)
            )
        })?;
        if !pspec.flags().contains(glib::ParamFlags::WRITABLE) {
            return Err(format!(
                "{origin}: '{field}' of {} is read-only",
                factory_name(element)
            ));
        }
        let converted = if value.type_() == pspec.value_type() {
            Ok::<_, String>((**value).clone())
        } else {
            // The structure parser guessed a type (int, string...): go through
            // the text form so enums, flags and unsigned types all work.
            let text = match value.get::<&str>() {
                Ok(s) => s.to_string(),
                Err(_) => value
                    .serialize()
                    .map(|s| s.to_string())
                    .map_err(|_| format!("{origin}: value of '{field}' cannot be read"))?,
            };
            glib::Value::deserialize_with_pspec(&text, &pspec).map_err(|_| {
                format!(
                    "{origin}: '{text}' is not a valid value for '{field}' of {} ({})",
                    factory_name(element),
                    pspec.value_type()
                )
            })
        }?;
        set_checked(element, &pspec, converted).map_err(|e| format!("{origin}: {e}"))?;
    }
    Ok(())
}

fn set_checked(
    element: &gst::Element,
    pspec: &glib::ParamSpec,
    value: glib::Value,
) -> Result<(), String> {
    // GObject would clamp silently and print a critical; refuse it instead.
    if !pspec.value_is_valid(&value) {
        return Err(format!(
            "{:?} is out of range for '{}' of {}",
            value,
            pspec.name(),
            factory_name(element)
        ));
    }
    element.set_property_from_value(pspec.name(), &value);
    Ok(())
}

fn factory_name(element: &gst::Element) -> String {
    element
        .factory()
        .map(|f| f.name().to_string())
        .unwrap_or_else(|| element.name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switchable_defaults_apply_to_the_installed_software_encoders() {
        gst::init().unwrap();
        for factory in ["x264enc", "x265enc"] {
            let encoder = gst::ElementFactory::make(factory).build().unwrap();
            let text = switchable_defaults(factory).unwrap();
            let props = parse_structure("failover-properties", text)
                .unwrap()
                .unwrap();
            apply_structure(&encoder, "failover-properties", &props).unwrap();
            let pspec = encoder.find_property("tune").unwrap();
            let zerolatency = glib::Value::deserialize_with_pspec("zerolatency", &pspec).unwrap();
            let tune = encoder.property_value("tune");
            assert_eq!(tune.serialize().unwrap(), zerolatency.serialize().unwrap());
        }
        assert_eq!(switchable_defaults("openh264enc"), None);
    }

    #[test]
    fn mpp_uses_bps_in_bits() {
        assert_eq!(
            bitrate_property("mpph265enc", true, false),
            Some(("bps", BitrateUnit::BitsPerSecond))
        );
        // A fork that renamed bps keeps the unit.
        assert_eq!(
            bitrate_property("mpph265enc", false, true),
            Some(("bitrate", BitrateUnit::BitsPerSecond))
        );
        assert_eq!(
            bitrate_property("nvv4l2h265enc", false, true),
            Some(("bitrate", BitrateUnit::BitsPerSecond))
        );
    }

    #[test]
    fn software_and_va_use_kbits() {
        for f in ["x264enc", "x265enc", "vah265enc"] {
            assert_eq!(
                bitrate_property(f, false, true),
                Some(("bitrate", BitrateUnit::KilobitsPerSecond))
            );
        }
        assert_eq!(bitrate_property("jpegenc", false, false), None);
    }

    #[test]
    fn gop_names() {
        assert_eq!(gop_property(|n| n == "gop"), Some("gop"));
        assert_eq!(gop_property(|n| n == "key-int-max"), Some("key-int-max"));
        assert_eq!(
            gop_property(|n| n == "iframeinterval"),
            Some("iframeinterval")
        );
        assert_eq!(gop_property(|_| false), None);
    }

    #[test]
    fn random_property_strings_apply_or_fail_cleanly() {
        gst::init().unwrap();
        let encoder = gst::ElementFactory::make("x264enc").build().unwrap();
        let mut rng = crate::fuzz::Rng::new(0xc0de);
        let tokens = [
            ",",
            "=",
            "bitrate",
            "speed-preset",
            "tune",
            "key-int-max",
            "\"",
            "(int)",
            "-1",
            "99999999999",
            "zerolatency",
            ";",
            "{",
            "<",
        ];
        let base = b"props,speed-preset=superfast,tune=zerolatency,bitrate=2000,key-int-max=30";
        let cases = crate::fuzz::cases(5_000);
        let started = std::time::Instant::now();
        for _ in 0..cases {
            let text = String::from_utf8_lossy(&rng.mutate(base, &tokens)).into_owned();
            match parse_structure("sw-properties", &text) {
                Ok(Some(props)) => {
                    if let Err(e) = apply_structure(&encoder, "sw-properties", &props) {
                        assert!(e.starts_with("sw-properties: "), "{e}");
                    }
                }
                Ok(None) => assert!(text.trim().is_empty()),
                Err(e) => assert!(e.starts_with("sw-properties: "), "{e}"),
            }
        }
        crate::fuzz::report("sw-properties", cases, started);
    }

    #[test]
    fn structure_strings() {
        gst::init().unwrap();
        assert!(parse_structure("sw-properties", "").unwrap().is_none());
        let s = parse_structure("sw-properties", "props,speed-preset=superfast")
            .unwrap()
            .unwrap();
        assert_eq!(s.get::<&str>("speed-preset").unwrap(), "superfast");
        let err = parse_structure("sw-properties", "props,=,,").unwrap_err();
        assert!(err.starts_with("sw-properties:"), "{err}");
    }
}
