// SPDX-License-Identifier: MPL-2.0
//! Holding a thread at one of an element's debug lines, to make a race
//! happen on purpose: the thread stops inside the log call, where the
//! element is between two steps, until the test lets it go.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Holds the thread named `thread` at the first line of debug category
/// `category` (its threshold raised to DEBUG) for which `line` is true.
/// Returns (held, release): `held` receives once the thread stops there; a
/// send on `release` lets it go on (at the latest after `hang`).
pub fn hold_thread_at_line(
    category: &'static str,
    thread: &'static str,
    line: impl Fn(&str) -> bool + Send + Sync + 'static,
    hang: Duration,
) -> (Receiver<()>, Sender<()>) {
    gst::log::set_threshold_for_name(category, gst::DebugLevel::Debug);
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let held_tx = Mutex::new(held_tx);
    let release_rx = Arc::new(Mutex::new(release_rx));
    gst::log::add_log_function(move |cat, _, _, _, _, _, message| {
        let ours = cat.name() == category
            && std::thread::current().name() == Some(thread)
            && message.get().is_some_and(|m| line(m.as_str()));
        if ours {
            let _ = held_tx.lock().unwrap().send(());
            let _ = release_rx.lock().unwrap().recv_timeout(hang);
        }
    });
    (held_rx, release_tx)
}
