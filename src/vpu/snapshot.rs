// SPDX-License-Identifier: MPL-2.0
//! A snapshot of the kernel listing in the lock directory, so that all guards
//! of a machine together open the kernel's file at most `1 / MAX_AGE` times a
//! second, whatever their number, processes and `reclaim-interval`s.
//!
//! Reading `/proc/mpp_service/sessions-summary` while sessions open and close
//! has been reported to Oops a kernel when sampled every 50 ms; 16 guards
//! reclaiming every 100 ms would open it about 50 times a second.
//!
//! The rule: the listing is read only with the decision lock held (one reader
//! machine-wide at a time), and each read is kept as
//! `listing-<key>.snapshot` in the lock directory with the CLOCK_BOOTTIME
//! instant it was read at. A reader holding the lock reuses a snapshot younger
//! than `MAX_AGE` instead of opening the listing. Slot files are not part of
//! the snapshot and stay exact, so a guard's own sessions are never stale; a
//! session of another program that opened within `MAX_AGE` may be missed, as
//! one that opens right after any read is.
//!
//! The snapshot is written in place (not renamed over) so that guards of every
//! user can rewrite it in the sticky lock directory; only holders of the
//! decision lock read or write it, and its last line marks it complete.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a snapshot is reused: at most five kernel reads a second.
pub const MAX_AGE: Duration = Duration::from_millis(200);

const MAGIC: &str = "edgeguard-listing-snapshot 1";
const END: &str = "\nedgeguard-listing-snapshot-end\n";
/// A snapshot larger than this is not one of ours.
const MAX_SNAPSHOT_BYTES: u64 = super::listing::MAX_LISTING_BYTES + 4096;

/// The machine's CLOCK_BOOTTIME: one clock for every process, never set back,
/// counting suspend too.
pub fn boottime() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A listing's text as read from `path` at `read_at` (CLOCK_BOOTTIME).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub read_at: Duration,
    pub path: PathBuf,
    pub text: String,
}

impl Snapshot {
    fn encode(&self) -> String {
        format!(
            "{MAGIC}\nread-at-ns={}\npath={}\n{}{END}",
            self.read_at.as_nanos(),
            self.path.display(),
            self.text
        )
    }

    fn decode(data: &str) -> Option<Snapshot> {
        let rest = data.strip_prefix(MAGIC)?.strip_prefix('\n')?;
        let (read_at, rest) = rest.strip_prefix("read-at-ns=")?.split_once('\n')?;
        let (path, rest) = rest.strip_prefix("path=")?.split_once('\n')?;
        let text = rest.strip_suffix(END)?;
        Some(Snapshot {
            read_at: Duration::from_nanos(read_at.parse().ok()?),
            path: PathBuf::from(path),
            text: text.to_string(),
        })
    }

    /// Whether it may stand for the listing at `now`: younger than `MAX_AGE`
    /// and not from the future (a snapshot of another boot).
    pub fn fresh_at(&self, now: Duration) -> bool {
        now >= self.read_at && now - self.read_at < MAX_AGE
    }
}

/// The snapshot file of the listing `key` (the configured path, or "" for the
/// defaults) in `dir`.
pub fn path_in(dir: &Path, key: &str) -> PathBuf {
    // FNV-1a: a stable name for any path, without a hashing dependency.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    dir.join(format!("listing-{hash:016x}.snapshot"))
}

/// Opens the snapshot file as the lock directory is everyone's: without
/// blocking (a FIFO put there must not hang the guard holding the decision
/// lock) or following a link (a root guard must not truncate a link's target),
/// and only a regular file.
fn open(file: &Path, options: &mut OpenOptions) -> std::io::Result<File> {
    let opened = options
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(file)?;
    if !opened.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(opened)
}

/// The snapshot in `file`, if it is complete and ours.
pub fn load(file: &Path) -> Option<Snapshot> {
    let mut data = String::new();
    open(file, OpenOptions::new().read(true))
        .ok()?
        .take(MAX_SNAPSHOT_BYTES)
        .read_to_string(&mut data)
        .ok()?;
    Snapshot::decode(&data)
}

/// Writes `snapshot` to `file`, readable and writable by every user's guards.
/// The caller holds the decision lock. An existing file is opened without
/// O_CREAT: with fs.protected_regular, creating-or-opening another user's
/// file in a sticky directory is refused even though its mode allows writing.
pub fn store(file: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let mut out = match open(file, OpenOptions::new().write(true)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let created = open(
                file,
                OpenOptions::new().write(true).create_new(true).mode(0o666),
            )?;
            // Whoever created it lets everyone rewrite it, whatever the umask.
            let _ = created.set_permissions(std::fs::Permissions::from_mode(0o666));
            created
        }
        other => other?,
    };
    out.set_len(0)?;
    out.rewind()?;
    out.write_all(snapshot.encode().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(read_at: Duration) -> Snapshot {
        Snapshot {
            read_at,
            path: PathBuf::from("/proc/mpp_service/sessions-summary"),
            text: "session: pid=1 index=1\n device: a.rkvenc\n".into(),
        }
    }

    #[test]
    fn a_snapshot_round_trips_through_its_file() {
        let dir = std::env::temp_dir().join(format!("edgeguard-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = path_in(&dir, "");
        let s = snapshot(boottime());
        store(&file, &s).unwrap();
        assert_eq!(load(&file), Some(s.clone()));
        // A shorter one written over it leaves nothing of the first behind.
        let shorter = Snapshot {
            text: String::new(),
            ..s
        };
        store(&file, &shorter).unwrap();
        assert_eq!(load(&file), Some(shorter));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cut_or_foreign_file_is_no_snapshot() {
        let encoded = snapshot(Duration::from_secs(5)).encode();
        assert!(Snapshot::decode(&encoded[..encoded.len() - 3]).is_none());
        assert!(Snapshot::decode("session: pid=1 index=1\n").is_none());
        assert!(Snapshot::decode("").is_none());
    }

    #[test]
    fn fresh_for_max_age_and_never_from_the_future() {
        let s = snapshot(Duration::from_secs(10));
        assert!(s.fresh_at(Duration::from_secs(10)));
        assert!(s.fresh_at(Duration::from_secs(10) + MAX_AGE - Duration::from_nanos(1)));
        assert!(!s.fresh_at(Duration::from_secs(10) + MAX_AGE));
        assert!(!s.fresh_at(Duration::from_secs(9)));
    }

    #[test]
    fn a_fifo_or_a_link_in_the_lock_dir_is_no_snapshot_and_not_written_through() {
        let dir =
            std::env::temp_dir().join(format!("edgeguard-snap-hostile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = path_in(&dir, "fifo");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c_path is a valid NUL-terminated string.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let f = fifo.clone();
        std::thread::spawn(move || {
            let loaded = load(&f);
            let stored = store(&f, &snapshot(boottime()));
            tx.send((loaded, stored.is_err())).unwrap();
        });
        let (loaded, refused) = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a FIFO in the lock dir hung the snapshot");
        assert!(loaded.is_none() && refused);
        // A link is not followed: its target stays as it was.
        let target = dir.join("precious");
        std::fs::write(&target, "keep").unwrap();
        let link = path_in(&dir, "link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(store(&link, &snapshot(boottime())).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_listing_has_its_own_file() {
        let dir = Path::new("/run/lock/edgeguard");
        assert_ne!(path_in(dir, ""), path_in(dir, "/tmp/a"));
        assert_eq!(path_in(dir, "/tmp/a"), path_in(dir, "/tmp/a"));
    }
}
