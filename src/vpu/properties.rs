// SPDX-License-Identifier: MPL-2.0
//! The properties every guard has for its budget, with one meaning for
//! vpuguardenc and vpuguarddec: `budget-source`, `max-sessions`, `max-load`,
//! `lock-timeout`, `session-file`, `lock-dir`, `reclaim-interval` (and, for
//! encoders, the pixel budget `max-pixel-rate`).

use gst::glib;
use gst::prelude::*;

use super::budget::{
    BudgetSettings, DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_LOAD, DEFAULT_MAX_PIXEL_RATE,
    DEFAULT_MAX_SESSIONS,
};
use super::budget_source::BudgetSource;
use super::decision::GuardKind;

/// The specs of the budget properties of a guard of `kind`.
pub fn budget_param_specs(kind: GuardKind) -> Vec<glib::ParamSpec> {
    let noun = kind.noun();
    let hw = kind.hw_property();
    let mut specs = vec![
        glib::ParamSpecEnum::builder_with_default("budget-source", BudgetSource::Auto)
            .nick("Budget source")
            .blurb(&format!(
                "What counts the hardware's sessions and load: auto picks from {hw}'s \
                 factory (mpp* mpp, nv*enc/nv*dec and nvautogpu* nvml, nvv4l2* jetson, \
                 va*/qsv*/msdk* drm, other v4l2* v4l2, else slots); with auto, a session-file \
                 set means mpp. Files are read under EDGEGUARD_ROOT (default /)"
            ))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("max-sessions")
            .nick("Maximum VPU sessions")
            .blurb(
                "VPU session budget of the whole machine, encoders and decoders \
                 together (RK3588: 6 is safe, 8 is the practical limit)",
            )
            .maximum(1024)
            .default_value(DEFAULT_MAX_SESSIONS)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("max-load")
            .nick("Maximum load")
            .blurb(&format!(
                "Percent of the engine that may be busy for a new stream to take the \
                 hardware {noun}, where the budget source measures it (drm); 100 = no \
                 load limit"
            ))
            .minimum(1)
            .maximum(100)
            .default_value(DEFAULT_MAX_LOAD)
            .mutable_ready()
            .build(),
    ];
    if kind == GuardKind::Encoder {
        specs.push(
            glib::ParamSpecUInt64::builder("max-pixel-rate")
                .nick("Maximum pixel rate")
                .blurb(
                    "Encoder load the VPU may carry, in pixels per second (width x height x \
                     fps of every encoder session); 0 = no pixel budget. Default: RK3588 \
                     HEVC, 3840x2160 at 120 fps; halve it for H.264",
                )
                .default_value(DEFAULT_MAX_PIXEL_RATE)
                .mutable_ready()
                .build(),
        );
    }
    specs.extend([
        glib::ParamSpecUInt64::builder("lock-timeout")
            .nick("Lock timeout")
            .blurb(&format!(
                "Longest wait for the machine-wide decision lock, in nanoseconds; past \
                 it the software {noun} is chosen (reason lock-timeout)"
            ))
            .default_value(DEFAULT_LOCK_TIMEOUT.nseconds())
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("session-file")
            .nick("Session file")
            .blurb(
                "Kernel listing of VPU sessions, a regular file or procfs/debugfs entry; \
                 empty = /proc/mpp_service/sessions-summary, then \
                 /proc/mpp_service/session_summary, then /sys/kernel/debug/mpp_service/session. \
                 Read at most 5 times a second machine-wide (a snapshot in lock-dir)",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("lock-dir")
            .nick("Lock directory")
            .blurb(
                "Absolute directory of the machine-wide decision lock, hardware slots and \
                 listing snapshots; every guard sharing a budget, encoders and decoders, must \
                 use the same one (empty = /run/lock/edgeguard). It must be owned by root or \
                 the guard's user, and not writable by others unless sticky (mode 1777, as \
                 the Debian package makes it); otherwise it is refused with an error",
            )
            .mutable_ready()
            .build(),
    ]);
    specs
}

/// Sets a budget property; false when `name` is not one.
pub fn set_budget_property(settings: &mut BudgetSettings, name: &str, value: &glib::Value) -> bool {
    let string = || value.get::<Option<String>>().unwrap().unwrap_or_default();
    match name {
        "budget-source" => settings.source = value.get().unwrap(),
        "max-sessions" => settings.max_sessions = value.get().unwrap(),
        "max-load" => settings.max_load = value.get().unwrap(),
        "max-pixel-rate" => settings.max_pixel_rate = value.get().unwrap(),
        "lock-timeout" => {
            settings.lock_timeout = gst::ClockTime::from_nseconds(value.get().unwrap())
        }
        "session-file" => settings.session_file = string(),
        "lock-dir" => settings.lock_dir = string(),
        _ => return false,
    }
    true
}

/// A budget property's value; None when `name` is not one.
pub fn budget_property(settings: &BudgetSettings, name: &str) -> Option<glib::Value> {
    Some(match name {
        "budget-source" => settings.source.to_value(),
        "max-sessions" => settings.max_sessions.to_value(),
        "max-load" => settings.max_load.to_value(),
        "max-pixel-rate" => settings.max_pixel_rate.to_value(),
        "lock-timeout" => settings.lock_timeout.nseconds().to_value(),
        "session-file" => settings.session_file.to_value(),
        "lock-dir" => settings.lock_dir.to_value(),
        _ => return None,
    })
}

/// `reclaim-interval`, for a guard of `kind` whose hardware child may be taken
/// back after software took over.
pub fn reclaim_interval_spec(kind: GuardKind) -> glib::ParamSpec {
    let noun = kind.noun();
    glib::ParamSpecUInt64::builder("reclaim-interval")
        .nick("Reclaim interval")
        .blurb(&format!(
            "While on a software {noun} of the hardware {noun}'s codec, count the VPU at most \
             this often (ns) and switch back to hardware when the budget has room; 4x \
             longer after a hardware failure, doubling up to 64x (0 = never)"
        ))
        .default_value(0)
        .mutable_ready()
        .build()
}

/// The read-only `stats` structure: every decision since the guard was created.
pub fn stats_spec(kind: GuardKind) -> glib::ParamSpec {
    let noun = kind.noun();
    glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
        .nick("Statistics")
        .blurb(&format!(
            "What the last decision saw and counts since the element was created: decisions, \
             {noun} switches, frames replayed to and lost at them (the metrics' values)"
        ))
        .read_only()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_budget_spec_round_trips_through_the_settings() {
        let mut settings = BudgetSettings::default();
        for spec in budget_param_specs(GuardKind::Encoder) {
            let value = budget_property(&settings, spec.name()).unwrap();
            assert!(set_budget_property(&mut settings, spec.name(), &value));
            assert_eq!(spec.value_type(), value.type_(), "{}", spec.name());
        }
        assert!(!set_budget_property(
            &mut settings,
            "mode",
            &1u32.to_value()
        ));
        assert!(budget_property(&settings, "mode").is_none());
    }

    #[test]
    fn only_encoders_have_a_pixel_budget() {
        let names = |kind| -> Vec<_> {
            budget_param_specs(kind)
                .iter()
                .map(|s| s.name().to_string())
                .collect()
        };
        assert!(names(GuardKind::Encoder).contains(&"max-pixel-rate".to_string()));
        assert!(!names(GuardKind::Decoder).contains(&"max-pixel-rate".to_string()));
    }
}
