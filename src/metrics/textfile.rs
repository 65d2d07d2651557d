// SPDX-License-Identifier: MPL-2.0
//! The textfile for node_exporter's textfile collector, replaced atomically
//! (`atomic_file`): a reader sees the old file or the new one, never a part,
//! and the temporary name does not end in `.prom`, so the collector never
//! reads it.

use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use super::CAT;
use crate::atomic_file;

/// One textfile target: writes are serialized, none follows the last one
/// (the exit handler's), and the first failure is warned.
#[derive(Debug)]
pub struct Textfile {
    path: PathBuf,
    /// True once the last write is done.
    closed: Mutex<bool>,
    warned: AtomicBool,
}

impl Textfile {
    pub fn new(path: PathBuf) -> Self {
        Textfile {
            path,
            closed: Mutex::new(false),
            warned: AtomicBool::new(false),
        }
    }

    /// Writes `contents`; a failure is one WARNING for the life of the
    /// target (a full disk must not flood the log every interval).
    pub fn write(&self, contents: &str) -> bool {
        self.write_unless_closed(contents, false)
    }

    /// Writes `contents` as the last time: a write the process's end cut
    /// short would leave its temporary file behind.
    pub fn write_last(&self, contents: &str) -> bool {
        self.write_unless_closed(contents, true)
    }

    fn write_unless_closed(&self, contents: &str, close: bool) -> bool {
        let result = {
            let mut closed = self.closed.lock();
            if *closed {
                return false;
            }
            *closed = close;
            atomic_file::write(&self.path, contents.as_bytes())
        };
        if close {
            // At exit GStreamer may be deinitialized already (gst-launch-1.0
            // calls gst_deinit()), its debug categories freed with it: the
            // last write logs nothing.
            return result.is_ok();
        }
        match result {
            Ok(()) => true,
            Err(err) if !self.warned.swap(true, Ordering::Relaxed) => {
                gst::warning!(
                    CAT,
                    "cannot write textfile {}: {err} (metrics go on being served, further \
                     failures are logged at DEBUG)",
                    self.path.display()
                );
                false
            }
            Err(err) => {
                gst::debug!(CAT, "cannot write textfile {}: {err}", self.path.display());
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("edgeguard-textfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn nothing_is_written_after_the_last_write() {
        let dir = temp_dir("last");
        let target = Textfile::new(dir.join("x.prom"));
        assert!(target.write("a 1\n"));
        assert!(target.write_last("a 2\n"));
        assert!(!target.write("a 3\n"));
        assert_eq!(
            std::fs::read_to_string(dir.join("x.prom")).unwrap(),
            "a 2\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_target_fails_and_warns_once() {
        gst::init().unwrap();
        let target = Textfile::new(PathBuf::from("/proc/edgeguard-test/x.prom"));
        assert!(!target.write("x 1\n"));
        assert!(!target.write("x 1\n"));
        assert!(target.warned.load(Ordering::Relaxed));
    }
}
