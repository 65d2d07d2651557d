// SPDX-License-Identifier: MPL-2.0
//! The order of what reaches a sink after a flushing seek, as GStreamer's
//! validate checks it (a SEGMENT with the seek's seqnum first, its EOS
//! last), and a machine made busy for the runs that must hold under load.

use gst::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What a sink saw after the last FLUSH_STOP: events and buffers in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Segment(gst::Seqnum),
    Buffer,
    Eos(gst::Seqnum),
}

pub fn watch(sink: &gst::Element) -> Arc<Mutex<Vec<Seen>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER
            | gst::PadProbeType::EVENT_DOWNSTREAM
            | gst::PadProbeType::EVENT_FLUSH,
        move |_, info| {
            let mut s = s.lock().unwrap();
            match &info.data {
                Some(gst::PadProbeData::Buffer(_)) => s.push(Seen::Buffer),
                Some(gst::PadProbeData::Event(e)) => match e.type_() {
                    gst::EventType::FlushStop => s.clear(),
                    gst::EventType::Segment => s.push(Seen::Segment(e.seqnum())),
                    gst::EventType::Eos => s.push(Seen::Eos(e.seqnum())),
                    _ => (),
                },
                _ => (),
            }
            gst::PadProbeReturn::Ok
        },
    );
    seen
}

/// What a flushing seek in PAUSED left: see `seek_in_paused`.
pub struct SeekRun {
    pub seqnum: gst::Seqnum,
    /// What the sink saw since the last FLUSH_STOP.
    pub seen: Vec<Seen>,
    pub log: super::BusLog,
    /// The `stats` of the element named `d`, where there is one.
    pub stats: Option<gst::Structure>,
}

/// Prerolls `description` (its sink named `out`), seeks flushing and
/// accurate to [1 s, `stop`), and sets PLAYING at once, while the seek's
/// preroll may still be under way; plays to EOS or `timeout`.
pub fn seek_in_paused(
    description: &str,
    stop: gst::ClockTime,
    timeout: std::time::Duration,
) -> SeekRun {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let seen = watch(&pipeline.by_name("out").unwrap());
    pipeline.set_state(gst::State::Paused).unwrap();
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(30));
    result.unwrap();
    let seek = gst::event::Seek::new(
        1.0,
        gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
        gst::SeekType::Set,
        gst::ClockTime::SECOND,
        gst::SeekType::Set,
        stop,
    );
    let seqnum = seek.seqnum();
    assert!(pipeline.send_event(seek));
    pipeline.set_state(gst::State::Playing).unwrap();
    let log = super::collect_bus(&pipeline, timeout, |_| false);
    let stats = pipeline
        .by_name("d")
        .map(|d| d.property::<gst::Structure>("stats"));
    pipeline.set_state(gst::State::Null).unwrap();
    let seen = seen.lock().unwrap().clone();
    SeekRun {
        seqnum,
        seen,
        log,
        stats,
    }
}

pub fn assert_segment_first_and_seqnums(
    seqnum: gst::Seqnum,
    seen: &[Seen],
    run: usize,
    what: &str,
) {
    assert_eq!(
        seen.first(),
        Some(&Seen::Segment(seqnum)),
        "{what}, run {run}: {seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&Seen::Eos(seqnum)),
        "{what}, run {run}: {seen:?}"
    );
    assert!(seen.contains(&Seen::Buffer), "{what}, run {run}: no buffer");
}

/// Threads that keep every core busy until dropped, so that the element's
/// threads are preempted at any point, as on a loaded machine.
pub struct BusyCores {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyCores {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        BusyCores { stop, threads }
    }
}

impl Drop for BusyCores {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
