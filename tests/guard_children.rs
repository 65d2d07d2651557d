// SPDX-License-Identifier: MPL-2.0
//! What the guards accept as their children, through real pipelines: never
//! a guard (an ERROR at NULL->READY naming the property), an element that
//! is no encoder as hw-encoder falls back in mode=auto, and a hardware child
//! that is not installed is said once per process.

mod common;

use gst::prelude::*;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const RAW: &str = "videotestsrc num-buffers=30 ! \
                   video/x-raw,format=I420,width=320,height=240,framerate=30/1";

/// The ERRORs of a pipeline that cannot leave NULL, and the state change's result.
fn start_errors(description: &str) -> (bool, Vec<String>) {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let went_ready = pipeline.set_state(gst::State::Ready).is_ok();
    let log = common::collect_bus(&pipeline, Duration::from_secs(5), |log| {
        !log.errors.is_empty()
    });
    pipeline.set_state(gst::State::Null).unwrap();
    (went_ready, log.errors)
}

#[test]
fn a_guard_named_as_a_child_is_an_error_at_null_to_ready_naming_the_property() {
    common::init();
    let file = common::h264_file(30, 15);
    for (guard, property, value) in [
        ("vpuguarddec", "hw-decoder", "vpuguarddec"),
        ("vpuguarddec", "hw-decoder", "vpuguardenc"),
        ("vpuguarddec", "sw-decoder", "vpuguarddec"),
        ("vpuguardenc", "hw-encoder", "vpuguardenc"),
        ("vpuguardenc", "sw-encoder", "vpuguardenc"),
        ("vpuguardenc", "sw-encoder", "vpuguarddec"),
        ("vpuguardenc", "failover-encoder", "vpuguardenc"),
    ] {
        let description = if guard == "vpuguarddec" {
            common::decode_pipeline(&file, &format!("vpuguarddec {property}={value}"))
        } else {
            format!("{RAW} ! vpuguardenc {property}={value} ! fakesink")
        };
        let (went_ready, errors) = start_errors(&description);
        assert!(!went_ready, "{guard} {property}={value} started");
        let said = format!("{property}: '{value}' is a guard");
        assert!(
            errors.iter().any(|e| e.contains(&said)),
            "{guard} {property}={value}: {errors:?}"
        );
    }
}

#[test]
fn an_installed_element_that_encodes_nothing_as_hw_encoder_falls_back_in_auto() {
    common::init();
    let log = common::run_to_eos(
        &format!("{RAW} ! vpuguardenc hw-encoder=h265parse sw-encoder=x264enc ! fakesink"),
        TIMEOUT,
    );
    assert!(log.eos && log.errors.is_empty(), "{:?}", log.errors);
    let decision = log.named("vpuguardenc-decision");
    assert_eq!(decision[0].get::<String>("encoder").unwrap(), "x264enc");
    assert!(!decision[0].get::<bool>("hardware").unwrap());
    // Forced to the hardware, it is an error naming the property and value.
    let (went_ready, errors) = start_errors(&format!(
        "{RAW} ! vpuguardenc hw-encoder=h265parse mode=hardware ! fakesink"
    ));
    assert!(!went_ready);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("hw-encoder: 'h265parse' is not an encoder")),
        "{errors:?}"
    );
}

/// The WARNINGs naming `property` and `factory` in `log`.
fn missing_warnings(log: &common::BusLog, property: &str, factory: &str) -> usize {
    let said = format!("{property}: no element '{factory}' is installed");
    log.warnings.iter().filter(|w| w.contains(&said)).count()
}

#[test]
fn a_missing_hardware_child_in_auto_is_said_once_per_process() {
    common::init();
    let file = common::h264_file(30, 15);
    let decode = |hw: &str| common::decode_pipeline(&file, &format!("vpuguarddec hw-decoder={hw}"));
    let encode = |hw: &str| format!("{RAW} ! vpuguardenc hw-encoder={hw} ! fakesink");
    // Names no other test of this process uses: the warning is once per process.
    for (property, pipeline, names) in [
        (
            "hw-decoder",
            &decode as &dyn Fn(&str) -> String,
            ["typo-mppvideodec", "typo-rkvdec"],
        ),
        (
            "hw-encoder",
            &encode,
            ["typo-mpph264enc", "typo-mpph265enc"],
        ),
    ] {
        for name in names {
            let first = common::run_to_eos(&pipeline(name), TIMEOUT);
            assert!(first.eos && first.errors.is_empty(), "{:?}", first.errors);
            let told = missing_warnings(&first, property, name);
            assert_eq!(told, 1, "{property}={name}: {:?}", first.warnings);
            let again = common::run_to_eos(&pipeline(name), TIMEOUT);
            let told = missing_warnings(&again, property, name);
            assert_eq!(told, 0, "{property}={name} again: {:?}", again.warnings);
        }
    }
    // Software mode never looks for the hardware child: nothing to say.
    let software = common::run_to_eos(
        &format!("{RAW} ! vpuguardenc hw-encoder=typo-software-only mode=software ! fakesink"),
        TIMEOUT,
    );
    assert_eq!(
        missing_warnings(&software, "hw-encoder", "typo-software-only"),
        0
    );
}
