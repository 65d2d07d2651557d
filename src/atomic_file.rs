// SPDX-License-Identifier: MPL-2.0
//! Files that readers poll while the plugin rewrites them (leakcheck's
//! `report-file`, the metrics textfile), replaced whole or not at all.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `contents` to a temporary file beside `path` (same filesystem, so
/// the rename is atomic), then renames it over `path`: a reader sees the old
/// file or the new one, never a part. The temporary name starts with a dot
/// and ends in `.tmp`, so collectors reading `*.prom` or `*.json` skip it.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    // Unique per write: two writers of one path (two judgements, two
    // tracers, another process) never write into each other's file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let tmp = dir.unwrap_or(Path::new(".")).join(format!(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "edgeguard-atomic-file-{}-{name}",
            std::process::id()
        ));
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
        write(&path, contents(0).as_bytes()).unwrap();
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
            write(&path, contents(i).as_bytes()).unwrap();
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
}
