// SPDX-License-Identifier: MPL-2.0
//! What the guard bins (vpuguardenc, vpuguarddec) share beside the VPU
//! budget: what arrives on their sink pads, how they follow the child chain
//! working now, and the switch, failover, reclaim, replay, EOS and teardown
//! paths, written once over the `Kind` of guard.

pub mod chain;
pub mod child_props;
pub mod children;
pub mod choice;
pub mod core;
pub mod decide;
pub mod eos;
pub mod failover;
pub mod frame;
pub mod input;
pub mod kind;
pub mod live;
pub mod missing;
pub mod mode;
pub mod pads;
pub mod readout;
pub mod reclaim;
pub mod sink;
pub mod state;
pub mod stream_events;
pub mod switch;
pub mod validate;
pub mod watch;

use gst::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::vpu::budget::CountWarning;
use crate::vpu::decision::GuardKind;

/// Says on the bus what a count met: a decision lock held past
/// `lock-timeout` each time, an unreadable listing once per guard
/// (`warned_unreadable` remembers).
pub fn post_count_warning(
    element: &gst::Element,
    kind: GuardKind,
    warning: &CountWarning,
    warned_unreadable: &AtomicBool,
) {
    match warning {
        CountWarning::LockTimedOut { lock_file, timeout } => {
            gst::element_warning!(
                element,
                gst::ResourceError::Busy,
                (
                    "The VPU decision lock {} was held for all of lock-timeout ({:?}): not using the VPU",
                    lock_file.display(),
                    timeout
                ),
                [
                    "another process may be stuck inside a hardware {}'s start",
                    kind.noun()
                ]
            );
        }
        CountWarning::LockUnusable {
            dir,
            lock_file,
            error,
        } => {
            gst::element_warning!(
                element,
                gst::ResourceError::OpenRead,
                (
                    "lock-dir: the VPU decision lock {} in '{}' cannot be used: not using the VPU",
                    lock_file.display(),
                    dir.display()
                ),
                [
                    "{}; another user may have planted it: remove it (ls -l shows whose it is)",
                    error
                ]
            );
        }
        CountWarning::Unreadable { source, error }
            if !warned_unreadable.swap(true, Ordering::SeqCst) =>
        {
            gst::element_warning!(
                element,
                gst::ResourceError::OpenRead,
                ("{}", CountWarning::unreadable_message(*source, error)),
                ["{}", error]
            );
        }
        CountWarning::Unreadable { .. } => (),
    }
}

/// Whether `object` is `ancestor` or inside it: a child's ERROR may come
/// from an element the child contains.
pub fn is_same_or_inside(object: &gst::Object, ancestor: &gst::Object) -> bool {
    let mut current = Some(object.clone());
    while let Some(o) = current {
        if &o == ancestor {
            return true;
        }
        current = o.parent();
    }
    false
}

/// Factory name prefixes of hardware codecs: a guard never runs one outside
/// the budget (vpuguarddec's `auto`, vpuguardenc's `failover-encoder`).
const HARDWARE_PREFIXES: [&str; 8] = [
    "mpp", "v4l2", "nvv4l2", "nvdec", "va", "vaapi", "omx", "qsv",
];

/// Whether a codec factory runs on dedicated hardware.
pub fn is_hardware(factory: &gst::ElementFactory) -> bool {
    let name = factory.name();
    let klass = factory
        .metadata(gst::ELEMENT_METADATA_KLASS)
        .unwrap_or_default();
    klass.contains("Hardware") || HARDWARE_PREFIXES.iter().any(|p| name.starts_with(p))
}
