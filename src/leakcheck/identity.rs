// SPDX-License-Identifier: MPL-2.0
//! Which object is which, by identity rather than address: every element and
//! pipeline leakcheck sees gets a process-unique serial number kept as qdata
//! on the object itself. An address is reused as soon as an object is freed;
//! a serial never is, so a pending judgement can never reach a newer pipeline
//! allocated where a dead one lived.

use gst::glib;
use gst::prelude::*;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

static QUARK: LazyLock<glib::Quark> =
    LazyLock::new(|| glib::Quark::from_str("edgeguard-leakcheck-serial"));
static NEXT: AtomicU64 = AtomicU64::new(1);
/// Makes "read, and set if missing" atomic. A leaf lock: nothing is called
/// under it but GLib's qdata functions, whose only callback frees a u64.
static ASSIGNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The object's serial, given to it now if it has none yet.
pub fn serial(object: &impl IsA<glib::Object>) -> u64 {
    if let Some(serial) = peek(object) {
        return serial;
    }
    let _guard = ASSIGNING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(serial) = peek(object) {
        return serial;
    }
    let serial = NEXT.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the quark is only ever used with u64 values.
    unsafe { object.as_ref().set_qdata(*QUARK, serial) };
    serial
}

/// The object's serial if leakcheck has seen it before.
pub fn peek(object: &impl IsA<glib::Object>) -> Option<u64> {
    // SAFETY: the quark is only ever used with u64 values, and the value lives
    // as long as the object, which the caller holds.
    unsafe { object.as_ref().qdata::<u64>(*QUARK).map(|p| *p.as_ref()) }
}

static GONE: LazyLock<glib::Quark> =
    LazyLock::new(|| glib::Quark::from_str("edgeguard-leakcheck-gone"));

/// Marks a pipeline being disposed: whatever it still reports while it
/// empties itself (tracer hooks) must not start a new tracker.
pub fn mark_gone(object: &impl IsA<glib::Object>) {
    // SAFETY: the quark is only ever used with bool values.
    unsafe { object.as_ref().set_qdata(*GONE, true) };
}

pub fn is_gone(object: &impl IsA<glib::Object>) -> bool {
    // SAFETY: as above; the value lives as long as the object.
    unsafe { object.as_ref().qdata::<bool>(*GONE).is_some() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_stable_and_never_reused() {
        gst::init().unwrap();
        let a = gst::ElementFactory::make("identity").build().unwrap();
        assert_eq!(peek(&a), None);
        let first = serial(&a);
        assert_eq!(serial(&a), first);
        assert_eq!(peek(&a), Some(first));
        drop(a);
        // A new object, possibly at the same address, is a new identity.
        let b = gst::ElementFactory::make("identity").build().unwrap();
        assert_eq!(peek(&b), None);
        assert!(serial(&b) > first);
    }
}
