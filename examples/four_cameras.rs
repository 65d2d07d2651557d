// SPDX-License-Identifier: MPL-2.0
//! A 4-camera recorder on a VPU budget: four pipelines start at once, each with
//! a vpuguardenc, sharing one machine-wide budget. Here x265enc stands in for
//! mpph265enc and the budget is `--max-sessions` (default 2), so the first two
//! to negotiate get the "hardware" and the others fall back to x264enc.
//!
//! On an RK3588, drop `hw-encoder`, `session-file` and `lock-dir` to use
//! mpph265enc, the kernel's session listing and /run/lock.

use gst::prelude::*;

fn main() {
    gst::init().unwrap();
    gstedgeguard::plugin_register_static().unwrap();
    let args: Vec<String> = std::env::args().collect();
    let max_sessions: u32 = args
        .iter()
        .position(|a| a == "--max-sessions")
        .and_then(|i| args.get(i + 1))
        .map_or(2, |v| v.parse().expect("--max-sessions: a number"));
    let dir = std::env::temp_dir().join(format!("edgeguard-4cam-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listing = dir.join("sessions-summary");
    std::fs::write(&listing, "").unwrap();

    let cameras: Vec<_> = (0..4)
        .map(|cam| {
            let guard = format!(
                "vpuguardenc name=guard hw-encoder=x265enc max-sessions={max_sessions} \
                 session-file={} lock-dir={} \
                 hw-properties=\"props,speed-preset=ultrafast,tune=zerolatency\" \
                 sw-properties=\"props,speed-preset=ultrafast,tune=zerolatency\"",
                listing.display(),
                dir.join("lock").display()
            );
            let out = dir.join(format!("cam{cam}.mkv"));
            let p = gst::parse::launch(&format!(
                "videotestsrc is-live=true num-buffers=60 pattern={cam} ! \
                 video/x-raw,format=I420,width=640,height=360,framerate=30/1 ! {guard} ! \
                 matroskamux ! filesink location={}",
                out.display()
            ))
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
            std::thread::spawn(move || {
                p.set_state(gst::State::Playing).unwrap();
                let bus = p.bus().unwrap();
                let mut decision = None;
                while let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(30)) {
                    match msg.view() {
                        gst::MessageView::Element(e)
                            if e.structure()
                                .is_some_and(|s| s.name() == "vpuguardenc-decision") =>
                        {
                            decision = e.structure().map(|s| s.to_owned());
                        }
                        gst::MessageView::Eos(_) => break,
                        gst::MessageView::Error(e) => panic!("camera {cam}: {}", e.error()),
                        _ => (),
                    }
                }
                p.set_state(gst::State::Null).unwrap();
                (cam, decision.expect("a decision"), out)
            })
        })
        .collect();

    let mut hardware = 0;
    for handle in cameras {
        let (cam, d, out) = handle.join().unwrap();
        let hw = d.get::<bool>("hardware").unwrap();
        hardware += usize::from(hw);
        println!(
            "camera {cam}: {} ({}), reason {}, sessions seen {} of {} -> {}",
            d.get::<String>("encoder").unwrap(),
            if hw { "hardware" } else { "software" },
            d.get::<String>("reason").unwrap(),
            d.get::<u32>("sessions").unwrap(),
            d.get::<u32>("max-sessions").unwrap(),
            out.display()
        );
    }
    println!("{hardware} of 4 cameras on the VPU (budget {max_sessions})");
    std::fs::remove_dir_all(&dir).unwrap();
}
