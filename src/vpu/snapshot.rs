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
//! Another user must not be able to make a guard count less, so each user's
//! guards keep their own snapshot, `listing-<key>.uid-<uid>.<token>.snapshot`,
//! mode 0644, replaced whole by a rename. A guard believes only its own
//! user's snapshot and root's (root's guards serve every user), and only when
//! the file is owned by that user, writable by nobody else and has no second
//! name; anything else is ignored and the guard reads the listing itself.
//! So the kernel's file is read at most five times a second by root's guards
//! and by each other user's guards whenever root's snapshot is not fresh.
//!
//! `<token>` is random, and so is the name of the file written before the
//! rename: in a directory every user can create files in, a predictable name
//! could be taken first by another user (a file the victim may not replace
//! in the sticky directory), and the victim's guards would then keep no
//! snapshot and open the kernel's file at every decision. A guard finds the
//! snapshots by listing the directory (which it does at every count for the
//! slots anyway) and opens only those of its user and root.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::ground;

/// How long a snapshot is reused: at most five kernel reads a second.
pub const MAX_AGE: Duration = Duration::from_millis(200);

const MAGIC: &str = "edgeguard-listing-snapshot 2";
const UID_TAG: &str = ".uid-";
const SUFFIX: &str = ".snapshot";
/// Hex digits of the random part of a snapshot's and a temporary file's name.
const TOKEN_LEN: usize = 16;
/// How many random names a temporary file tries.
const TEMP_TRIES: u32 = 8;
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
    /// `listing` names the listing it stands for (`listing-<hash>`), so a
    /// snapshot of one listing is never taken for another's.
    fn encode(&self, listing: &str) -> String {
        format!(
            "{MAGIC}\nlisting={listing}\nread-at-ns={}\npath={}\n{}{END}",
            self.read_at.as_nanos(),
            self.path.display(),
            self.text
        )
    }

    fn decode(data: &str, listing: &str) -> Option<Snapshot> {
        let rest = data.strip_prefix(MAGIC)?.strip_prefix('\n')?;
        let (named, rest) = rest.strip_prefix("listing=")?.split_once('\n')?;
        if named != listing {
            return None;
        }
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

/// The name standing for this user's snapshot of the listing `key` (the
/// configured path, or "" for the defaults) in `dir`, for `load` and `store`.
pub fn path_in(dir: &Path, key: &str) -> PathBuf {
    path_of_user(dir, key, ground::euid())
}

/// The name standing for the snapshot `uid`'s guards keep of the listing
/// `key`: `listing-<hash>.uid-<uid>.snapshot`. The file itself is
/// `listing-<hash>.uid-<uid>.<token>.snapshot`, `<token>` random, so that
/// nobody else can take its name first.
pub fn path_of_user(dir: &Path, key: &str, uid: u32) -> PathBuf {
    // FNV-1a: a stable name for any path, without a hashing dependency.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    dir.join(format!("listing-{hash:016x}{UID_TAG}{uid}{SUFFIX}"))
}

/// The listing (`listing-<hash>`) and user a name from `path_of_user` is for.
fn parse_name(file: &Path) -> Option<(&str, u32)> {
    let name = file.file_name()?.to_str()?.strip_suffix(SUFFIX)?;
    let (listing, uid) = name.rsplit_once(UID_TAG)?;
    Some((listing, uid.parse().ok()?))
}

/// The snapshot files of `uid` for `listing` in `dir` by their names
/// (`<listing>.uid-<uid>.<token>.snapshot`), whoever made them: anyone can
/// make a file of any name there, so only `load_trusted` says which is one.
fn files_named_for(dir: &Path, listing: &str, uid: u32) -> Vec<PathBuf> {
    let stem = format!("{listing}{UID_TAG}{uid}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let Some(token) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&stem)?.strip_suffix(SUFFIX))
            else {
                return false;
            };
            token.len() == TOKEN_LEN && token.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|entry| entry.path())
        .collect()
}

/// The trusted snapshots of `uid` for `listing` in `dir`, with their files.
fn trusted_of(dir: &Path, listing: &str, uid: u32) -> Vec<(PathBuf, Snapshot)> {
    files_named_for(dir, listing, uid)
        .into_iter()
        .filter_map(|file| Some((file.clone(), load_trusted(&file, listing, uid)?)))
        .collect()
}

/// The snapshot that `file` (a name from `path_in`) stands for, or root's
/// of the same listing, whichever is the later read: only files `ground`
/// trusts for their user, complete and of this listing.
pub fn load(file: &Path) -> Option<Snapshot> {
    let (listing, uid) = parse_name(file)?;
    let dir = file.parent()?;
    let mut candidates = trusted_of(dir, listing, uid);
    if uid != 0 {
        candidates.extend(trusted_of(dir, listing, 0));
    }
    // One from the future (another boot) loses to one of this boot.
    let now = boottime();
    candidates
        .into_iter()
        .map(|(_, snapshot)| snapshot)
        .max_by_key(|s| (s.read_at <= now, s.read_at))
}

/// The snapshot in `file`, if `uid` (root or this user) owns it alone.
fn load_trusted(file: &Path, listing: &str, uid: u32) -> Option<Snapshot> {
    if uid != 0 && uid != ground::euid() {
        return None;
    }
    let opened = ground::open_existing(file, OpenOptions::new().read(true)).ok()?;
    if !ground::is_trusted(&opened.metadata().ok()?, uid) {
        return None;
    }
    let mut data = String::new();
    opened
        .take(MAX_SNAPSHOT_BYTES)
        .read_to_string(&mut data)
        .ok()?;
    Snapshot::decode(&data, listing)
}

/// A random token for a file name no other user can guess and take first.
fn token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 8];
    // SAFETY: bytes is a valid buffer of its length to write to.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let value = if got == bytes.len() as isize {
        u64::from_ne_bytes(bytes)
    } else {
        // No getrandom (a kernel before 3.17): the clock's nanoseconds, the
        // pid and a counter, still nothing another user can name ahead.
        let nanos = boottime().as_nanos() as u64;
        nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed)
    };
    format!("{value:0width$x}", width = TOKEN_LEN)
}

/// Replaces the snapshot `file` (a name from `path_in`) stands for with
/// `snapshot`, readable by every user and writable only by this one: written
/// to a new file of a random name created exclusively beside it, then
/// renamed over this user's snapshot of the listing, or to a new random
/// name when there is none yet. Nothing planted at any name is followed or
/// written through, and no name another user can make first is needed.
/// Returns the snapshot's file. The caller holds the decision lock.
pub fn store(file: &Path, snapshot: &Snapshot) -> std::io::Result<PathBuf> {
    let (listing, uid) = parse_name(file).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a snapshot's name")
    })?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let (tmp, mut out) = create_temp(dir, listing, uid)?;
    let mine = trusted_of(dir, listing, uid);
    let target = mine.first().map_or_else(
        || dir.join(format!("{listing}{UID_TAG}{uid}.{}{SUFFIX}", token())),
        |(path, _)| path.clone(),
    );
    let written = out
        .write_all(snapshot.encode(listing).as_bytes())
        .and_then(|()| std::fs::rename(&tmp, &target));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // More than one (two guards of this user that stored at once): keep one.
    for (extra, _) in mine.iter().skip(1) {
        let _ = std::fs::remove_file(extra);
    }
    Ok(target)
}

/// A new file `.<listing>.uid-<uid>.<token>.tmp` in `dir`, created
/// exclusively; another name is tried should one be taken.
fn create_temp(dir: &Path, listing: &str, uid: u32) -> std::io::Result<(PathBuf, File)> {
    let mut tries = 0;
    loop {
        let tmp = dir.join(format!(".{listing}{UID_TAG}{uid}.{}.tmp", token()));
        match ground::create_new(&tmp, 0o644) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < TEMP_TRIES => {
                tries += 1;
            }
            created => return created.map(|file| (tmp, file)),
        }
    }
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
        let dir = temp_dir("round-trip");
        let file = path_in(&dir, "");
        let s = snapshot(boottime());
        store(&file, &s).unwrap();
        assert_eq!(load(&file), Some(s.clone()));
        // A shorter one written over it leaves nothing of the first behind.
        let shorter = Snapshot {
            text: String::new(),
            ..s
        };
        let written = store(&file, &shorter).unwrap();
        assert_eq!(load(&file), Some(shorter));
        // Renamed over the first: one snapshot, no temporary file left.
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(names[0].path(), written);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cut_or_foreign_file_is_no_snapshot() {
        let encoded = snapshot(Duration::from_secs(5)).encode("listing-1");
        assert!(Snapshot::decode(&encoded, "listing-1").is_some());
        assert!(Snapshot::decode(&encoded[..encoded.len() - 3], "listing-1").is_none());
        // Another listing's snapshot under this listing's name.
        assert!(Snapshot::decode(&encoded, "listing-2").is_none());
        assert!(Snapshot::decode("session: pid=1 index=1\n", "listing-1").is_none());
        assert!(Snapshot::decode("", "listing-1").is_none());
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("edgeguard-snap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn only_a_snapshot_its_user_alone_can_write_is_believed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("trust");
        let file = path_in(&dir, "");
        let s = snapshot(boottime());
        let written = store(&file, &s).unwrap();
        assert_eq!(load(&file), Some(s.clone()));
        let mode = |m| std::fs::set_permissions(&written, std::fs::Permissions::from_mode(m));
        // Writable by others: anyone may have written it.
        mode(0o666).unwrap();
        assert_eq!(load(&file), None);
        mode(0o644).unwrap();
        // A second name: someone linked it from elsewhere.
        let other = dir.join("other-name");
        std::fs::hard_link(&written, &other).unwrap();
        assert_eq!(load(&file), None);
        std::fs::remove_file(&other).unwrap();
        assert_eq!(load(&file), Some(s.clone()));
        // Another listing's snapshot renamed to this one's name.
        let elsewhere = store(&path_in(&dir, "/tmp/empty-listing"), &s).unwrap();
        std::fs::rename(&elsewhere, &written).unwrap();
        assert_eq!(load(&file), None);
        // Another user's snapshot (a user who is neither root nor this one).
        let stranger = path_of_user(&dir, "", ground::euid() + 1);
        store(&stranger, &s).unwrap();
        assert_eq!(load(&stranger), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_of_another_user_under_this_users_name_is_not_believed() {
        if ground::euid() != 0 {
            // Only root can give a file away.
            return;
        }
        let dir = temp_dir("owner");
        let file = path_in(&dir, "");
        let written = store(&file, &snapshot(boottime())).unwrap();
        std::os::unix::fs::chown(&written, Some(65534), Some(65534)).unwrap();
        assert_eq!(load(&file), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fresh_for_max_age_and_never_from_the_future() {
        let s = snapshot(Duration::from_secs(10));
        assert!(s.fresh_at(Duration::from_secs(10)));
        assert!(s.fresh_at(Duration::from_secs(10) + MAX_AGE - Duration::from_nanos(1)));
        assert!(!s.fresh_at(Duration::from_secs(10) + MAX_AGE));
        assert!(!s.fresh_at(Duration::from_secs(9)));
    }

    /// A name shaped as one of `file`'s snapshots, as another user guesses.
    fn guessed_name(file: &Path, token: &str) -> PathBuf {
        let stand_in = file.file_name().unwrap().to_str().unwrap();
        let stem = stand_in.strip_suffix(SUFFIX).unwrap();
        file.with_file_name(format!("{stem}.{token}{SUFFIX}"))
    }

    #[test]
    fn a_fifo_or_a_link_in_the_lock_dir_is_no_snapshot_and_not_written_through() {
        let dir = temp_dir("hostile");
        let file = path_in(&dir, "");
        let fifo = guessed_name(&file, &"0".repeat(TOKEN_LEN));
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c_path is a valid NUL-terminated string.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let f = file.clone();
        std::thread::spawn(move || {
            let loaded = load(&f);
            tx.send(loaded).unwrap();
        });
        let loaded = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a FIFO in the lock dir hung the snapshot");
        assert!(loaded.is_none());
        // A link is not followed: its target stays as it was, and a dangling
        // one's target is not created.
        let target = dir.join("precious");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, guessed_name(&file, &"1".repeat(TOKEN_LEN))).unwrap();
        let missing = dir.join("missing");
        std::os::unix::fs::symlink(&missing, &file).unwrap();
        assert_eq!(load(&file), None);
        let s = snapshot(boottime());
        let written = store(&file, &s).unwrap();
        assert_eq!(load(&file), Some(s));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(!missing.exists());
        assert!(std::fs::symlink_metadata(&written).unwrap().is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_snapshot_needs_no_name_anyone_can_take_first() {
        let dir = temp_dir("squat");
        let file = path_in(&dir, "");
        // What another user can make before this user's first snapshot: a
        // file at the name standing for it, and at every name that does not
        // have a random part.
        std::fs::write(&file, "squatted").unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for n in 0..64 {
            std::fs::write(
                dir.join(format!(".{name}.{}-{n}.tmp", std::process::id())),
                "squatted",
            )
            .unwrap();
        }
        // Made read-only, as another user's files are to this one.
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        let s = snapshot(boottime());
        let written = store(&file, &s).unwrap();
        assert_ne!(written, file);
        assert_eq!(load(&file), Some(s));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "squatted");
        // The random names differ from one file to the next.
        assert_ne!(token(), token());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_listing_has_its_own_file() {
        let dir = Path::new("/run/lock/edgeguard");
        assert_ne!(path_in(dir, ""), path_in(dir, "/tmp/a"));
        assert_eq!(path_in(dir, "/tmp/a"), path_in(dir, "/tmp/a"));
    }
}
