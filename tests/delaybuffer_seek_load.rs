// SPDX-License-Identifier: MPL-2.0
//! The flushing seek of tests/delaybuffer_seek.rs run 50 times while every
//! core is busy. A test binary of its own: its busy threads would starve the
//! other tests of a binary they share (cargo runs a binary's tests in
//! parallel, binaries one after the other).

mod common;

use common::stream_order::{BusyCores, Seen, assert_segment_first_and_seqnums, seek_in_paused};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const SECOND: gst::ClockTime = gst::ClockTime::SECOND;

/// Prerolls, seeks flushing to [1 s, 3 s) and plays, 50 times while every
/// core is busy: the seek's SEGMENT reaches the sink first and its EOS last,
/// both with the seek's seqnum, and every frame of the seeked segment in
/// between, each time. (videotestsrc's num-buffers counts from the start,
/// seeks included: a delaybuffer that read all 150 frames in PAUSED left
/// none for the seek, and videotestsrc then sends its EOS without a SEGMENT.)
#[test]
fn a_flushing_seek_under_load_is_followed_by_its_segment_and_eos_every_time() {
    common::init();
    let _busy = BusyCores::start();
    for run in 0..50 {
        let seek = seek_in_paused(
            "videotestsrc num-buffers=150 ! video/x-raw,width=64,height=48,framerate=30/1 ! \
             delaybuffer name=d delay=500000000 ! fakesink name=out sync=true",
            SECOND * 3,
            TIMEOUT,
        );
        let stats = seek.stats.unwrap();
        assert!(
            seek.log.eos && seek.log.errors.is_empty(),
            "run {run}: {:?}",
            seek.log.errors
        );
        assert_segment_first_and_seqnums(seek.seqnum, &seek.seen, run, "under load");
        let buffers = seek.seen.iter().filter(|s| **s == Seen::Buffer).count();
        assert_eq!(buffers, 60, "run {run}: {stats}");
    }
}
