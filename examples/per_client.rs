// SPDX-License-Identifier: MPL-2.0
//! A per-client pipeline, as an RTSP server builds one for each client, torn
//! down wrongly and rightly, with leakcheck showing the difference.
//!
//! The "device" is /dev/zero read by filesrc, standing in for the /dev/video or
//! /dev/dri node a hardware encoder keeps open.

use gst::prelude::*;

fn client_pipeline(name: &str) -> (gst::Pipeline, gst::Element) {
    let pipeline = gst::parse::launch(
        "filesrc name=device location=/dev/zero blocksize=4096 ! fakesink \
         leakcheck name=check grace=0 device-patterns=/dev/zero",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_property("name", name);
    let check = pipeline.by_name("check").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let _ = pipeline.state(gst::ClockTime::from_seconds(5));
    (pipeline, check)
}

fn print_report(label: &str, check: &gst::Element) -> u32 {
    let report = check.emit_by_name::<gst::Structure>("get-report", &[]);
    let leaks = report.get::<u32>("leaks").unwrap();
    println!("{label}: {leaks} finding(s)");
    for finding in report.get::<gst::Array>("findings").unwrap().iter() {
        let f = finding.get::<gst::Structure>().unwrap();
        println!("  {}: {}", f.name(), f.get::<&str>("message").unwrap());
    }
    leaks
}

fn main() {
    gst::init().unwrap();
    gstedgeguard::plugin_register_static().unwrap();

    // Wrong: the client went away, the server unlinks the source and keeps it
    // (a callback still holds it), then stops the pipeline.
    let (pipeline, check) = client_pipeline("client-wrong");
    let device = pipeline.by_name("device").unwrap();
    device.set_locked_state(true);
    pipeline.remove(&device).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    let wrong = print_report("wrong teardown", &check);
    // What the server should have done for this element.
    device.set_locked_state(false);
    device.set_state(gst::State::Null).unwrap();
    drop(device);

    // Right: the whole pipeline goes to NULL, and nothing is kept.
    let (pipeline, check) = client_pipeline("client-right");
    pipeline.set_state(gst::State::Null).unwrap();
    let right = print_report("right teardown", &check);

    if wrong == 0 || right != 0 {
        std::process::exit(1);
    }
}
