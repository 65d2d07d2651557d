// SPDX-License-Identifier: MPL-2.0
//! The textfile for node_exporter's textfile collector, replaced atomically:
//! written to a temporary file in the same directory (same filesystem, so the
//! rename is atomic), then renamed over the target. A reader sees the old
//! file or the new one, never a part. The temporary name does not end in
//! `.prom`, so the collector never reads it.

use parking_lot::Mutex;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::CAT;

pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    // Unique per write: two tracers given the same path (or another
    // process) never write into each other's temporary file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(contents))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

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
            write_atomically(&self.path, contents.as_bytes())
        };
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
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("edgeguard-textfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Contents of very different sizes, each ending in a marker line that
    /// names its size: a partial file lacks or contradicts it.
    fn contents(i: usize) -> String {
        let lines = 1 + (i * 7919) % 400;
        let body = "edgeguard_test{pipeline=\"p\",element=\"e\"} 1\n".repeat(lines);
        format!("{body}# END {}\n", body.len())
    }

    fn is_whole(text: &str) -> bool {
        let Some(body) = text.strip_suffix('\n') else {
            return false;
        };
        let Some((body, marker)) = body.rsplit_once("# END ") else {
            return false;
        };
        marker.parse::<usize>() == Ok(body.len())
    }

    #[test]
    fn a_reader_racing_10000_writes_never_sees_a_partial_file() {
        let dir = temp_dir("race");
        let path = dir.join("edgeguard.prom");
        write_atomically(&path, contents(0).as_bytes()).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let reader = {
            let (path, done, reads) = (path.clone(), done.clone(), reads.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert!(is_whole(&text), "partial file of {} bytes", text.len());
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        for i in 0..10_000 {
            write_atomically(&path, contents(i).as_bytes()).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        assert!(reads.load(Ordering::Relaxed) > 0);
        // Only the target is left: no temporary file behind.
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_marker_check_sees_a_torn_file() {
        let whole = contents(3);
        assert!(is_whole(&whole));
        assert!(!is_whole(&whole[..whole.len() / 2]));
        assert!(!is_whole(""));
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
    fn an_unwritable_target_fails_and_leaves_nothing() {
        gst::init().unwrap();
        let target = Textfile::new(PathBuf::from("/proc/edgeguard-test/x.prom"));
        assert!(!target.write("x 1\n"));
        assert!(!target.write("x 1\n"));
        assert!(target.warned.load(Ordering::Relaxed));
    }
}
