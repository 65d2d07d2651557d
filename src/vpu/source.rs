// SPDX-License-Identifier: MPL-2.0
//! Where a guard learns which sessions the VPU carries: the seam for budget
//! sources. The MPP kernel listing and the guards' slots alone are here; each
//! other source is a file of its own beside this one (`nvml`, `drm`,
//! `holders` for `v4l2` and `jetson`), and `BudgetSettings::source` picks one.

use std::path::{Path, PathBuf};

use super::budget::Held;
use super::listing::{self, ListingError, SessionKind, SessionLoad};
use super::mpp_load;
use super::snapshot::{self, Snapshot};

/// The sessions a source listed.
#[derive(Debug, Clone)]
pub struct Listing {
    /// What was read, for the decision message's `session-file`.
    pub path: PathBuf,
    pub sessions: Vec<SessionLoad>,
    /// How busy the engine is, in percent; None when the source cannot say.
    pub load: Option<u32>,
}

pub trait SessionSource {
    /// Called without the decision lock, before a count waits for it (and
    /// at NULL->READY): what a reading under the lock will want and must
    /// not wait for there (a first sample to measure against, a library to
    /// initialise) is started here, and waited for at most `patience`
    /// (zero in a state change). `lock_dir` is the guard's lock directory.
    /// By default nothing.
    fn prepare(&self, _lock_dir: &Path, _patience: std::time::Duration) {}

    /// After a failed read: the source is still starting (its first reading
    /// has not completed), so the guard knows nothing of the hardware yet
    /// and takes software, rather than counting slots alone.
    fn starting(&self) -> bool {
        false
    }

    /// The sessions on the hardware now. Called with the decision lock held,
    /// so that a source may share one read among all guards of the machine.
    fn read(&self, held: &Held) -> Result<Listing, ListingError>;

    /// The budget this source counts, `<source>:<device>`: recorded in the
    /// guards' slots so that each budget counts only its own.
    fn budget_name(&self) -> String;
}

/// No source but the guards' own slots (`budget-source=slots`, and `auto`
/// for a hardware child no source knows).
#[derive(Debug, Clone, Copy)]
pub struct SlotsOnly;

impl SessionSource for SlotsOnly {
    fn read(&self, _held: &Held) -> Result<Listing, ListingError> {
        Ok(Listing {
            path: PathBuf::new(),
            sessions: Vec::new(),
            load: None,
        })
    }

    fn budget_name(&self) -> String {
        "slots:".into()
    }
}

/// The MPP driver's session listing: the `session-file` property, or the
/// first default path that can be read. Read through the lock directory's
/// snapshot (see `snapshot`): the kernel file is opened at most five times a
/// second machine-wide. The driver's per-core load (`mpp_load`), where it
/// can be read, is the load, read the same way.
#[derive(Debug, Clone)]
pub struct MppListing {
    configured: Option<PathBuf>,
    /// Whose cores' load counts: an encoder's or a decoder's.
    kind: SessionKind,
}

impl MppListing {
    /// The listing, with the encoder cores' load.
    pub fn new(configured: Option<&Path>) -> Self {
        MppListing {
            configured: configured.map(Path::to_path_buf),
            kind: SessionKind::Encoder,
        }
    }

    /// The load of the cores that carry sessions of `kind`.
    pub fn for_kind(self, kind: SessionKind) -> Self {
        MppListing { kind, ..self }
    }

    /// The busiest core of this kind, through its own snapshot; None where
    /// the driver lists no load (no `load_interval` set, an older kernel,
    /// not an MPP machine).
    fn load(&self, held: &Held) -> Option<u32> {
        let file = mpp_load::load_file();
        let key = format!("mpp-load:{}", file.display());
        let snapshot = through_snapshot(held, &key, || {
            listing::read_text(&file).map(|text| (file.clone(), text))
        })
        .ok()?;
        mpp_load::busiest(&mpp_load::parse(&snapshot.text), self.kind)
    }

    /// One snapshot per file: the configured path, or the first default one
    /// that exists (stat does not open it), so that guards naming the default
    /// and guards leaving it empty share one.
    fn snapshot_file(&self, held: &Held) -> PathBuf {
        snapshot::path_in(held.dir(), &self.key())
    }

    /// The listing this source reads: the configured path, or the first
    /// default one that exists.
    fn key(&self) -> String {
        self.configured
            .clone()
            .or_else(|| {
                listing::default_session_files()
                    .into_iter()
                    .find(|p| p.metadata().is_ok())
            })
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

impl SessionSource for MppListing {
    fn read(&self, held: &Held) -> Result<Listing, ListingError> {
        self.read_as_of(held, snapshot::boottime())
    }

    fn budget_name(&self) -> String {
        format!("mpp:{}", self.key())
    }
}

impl MppListing {
    /// The listing as a read at `now` (CLOCK_BOOTTIME) sees it.
    fn read_as_of(&self, held: &Held, now: std::time::Duration) -> Result<Listing, ListingError> {
        let file = self.snapshot_file(held);
        let snapshot = match snapshot::load(&file).filter(|s| s.fresh_at(now)) {
            Some(fresh) => fresh,
            None => {
                let reading = std::time::Instant::now();
                let (path, text) = listing::read_first_text(self.configured.as_deref())?;
                // Stamped when the read is over: the next open is at least
                // MAX_AGE after this one ended.
                let read = Snapshot {
                    read_at: now + reading.elapsed(),
                    path,
                    text,
                };
                // A lock directory that takes slots takes this too; if not,
                // the next guard reads the kernel's file again.
                let _ = snapshot::store(&file, &read);
                read
            }
        };
        Ok(Listing {
            sessions: listing::parse_loads(&snapshot.text),
            path: snapshot.path,
            load: self.load(held),
        })
    }
}

/// Why a source's read failed, and whether the failure is kept.
#[derive(Debug)]
pub struct Failure {
    pub error: ListingError,
    /// Kept in the snapshot for `MAX_AGE`, as a reading is (a missing
    /// library, nothing readable). Not kept: a failure of this process only
    /// (NVML still starting here), which another process's guard may not
    /// share.
    pub keep: bool,
}

impl From<ListingError> for Failure {
    fn from(error: ListingError) -> Self {
        Failure { error, keep: true }
    }
}

/// What a failed reading's snapshot text begins with: no source's text
/// (ours, or a kernel file's) holds a NUL.
const UNREADABLE: &str = "\0edgeguard-unreadable\0";

/// A source's reading at most once per `snapshot::MAX_AGE` machine-wide:
/// the snapshot of `key` in the lock directory when it is fresh, else
/// `read()` (what was read, and the reading as text), kept for the next
/// guard. A failed read is kept too, so that a source that cannot be read
/// (no NVIDIA driver, no readable DRM client) is tried at most as often as
/// one that can. Called with the decision lock held.
pub fn through_snapshot(
    held: &Held,
    key: &str,
    read: impl FnOnce() -> Result<(PathBuf, String), ListingError>,
) -> Result<Snapshot, ListingError> {
    through_snapshot_after(held, key, |_| read().map_err(Failure::from))
}

/// As `through_snapshot`, `read` given the snapshot that was not fresh
/// (None when there was none, or it kept a failure): a source that
/// measures a rate keeps its last counters there and measures against
/// them. A failure `read` says not to keep is not.
pub fn through_snapshot_after(
    held: &Held,
    key: &str,
    read: impl FnOnce(Option<&Snapshot>) -> Result<(PathBuf, String), Failure>,
) -> Result<Snapshot, ListingError> {
    through_snapshot_at(held, key, snapshot::boottime(), read)
}

/// As `through_snapshot_after`, at `now` (CLOCK_BOOTTIME).
fn through_snapshot_at(
    held: &Held,
    key: &str,
    now: std::time::Duration,
    read: impl FnOnce(Option<&Snapshot>) -> Result<(PathBuf, String), Failure>,
) -> Result<Snapshot, ListingError> {
    let file = snapshot::path_in(held.dir(), key);
    let kept = snapshot::load(&file);
    if let Some(fresh) = kept.as_ref().filter(|s| s.fresh_at(now)) {
        return match fresh.text.strip_prefix(UNREADABLE) {
            Some(reason) => Err(ListingError {
                path: fresh.path.clone(),
                reason: reason.to_string(),
            }),
            None => Ok(fresh.clone()),
        };
    }
    let reading = std::time::Instant::now();
    let earlier = kept.filter(|s| !s.text.starts_with(UNREADABLE));
    let (path, text, failed) = match read(earlier.as_ref()) {
        Ok((path, text)) => (path, text, None),
        Err(Failure { error, keep: false }) => return Err(error),
        Err(Failure { error, keep: true }) => (
            error.path.clone(),
            format!("{UNREADABLE}{}", error.reason),
            Some(error),
        ),
    };
    // Stamped when the read is over: the next read is at least MAX_AGE
    // after this one ended.
    let read = Snapshot {
        read_at: now + reading.elapsed(),
        path,
        text,
    };
    // A lock directory that takes slots takes this too; if not, the next
    // guard reads the source again.
    let _ = snapshot::store(&file, &read);
    match failed {
        Some(error) => Err(error),
        None => Ok(read),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_kernel_file_is_read_once_per_max_age() {
        let dir = std::env::temp_dir().join(format!("edgeguard-source-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sessions-summary");
        let one = "session: pid=1 index=1\n device: a.rkvenc\n";
        std::fs::write(&path, one).unwrap();
        let held = Held::lock(&dir.join("lock")).unwrap();
        let source = MppListing::new(Some(&path));
        let t0 = Duration::from_secs(1000);
        let read = |now| source.read_as_of(&held, now).unwrap().sessions.len();
        assert_eq!(read(t0), 1);
        // Changed, but a snapshot younger than MAX_AGE stands for it.
        std::fs::write(&path, format!("{one}{one}")).unwrap();
        assert_eq!(read(t0 + snapshot::MAX_AGE - Duration::from_millis(1)), 1);
        assert_eq!(read(t0 + snapshot::MAX_AGE + Duration::from_millis(50)), 2);
        // A snapshot from the future (another boot) is not trusted.
        std::fs::write(&path, "").unwrap();
        assert_eq!(read(t0), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_source_is_read_once_per_max_age_and_its_failure_said_meanwhile() {
        let dir =
            std::env::temp_dir().join(format!("edgeguard-source-fail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let held = Held::lock(&dir).unwrap();
        let reads = std::cell::Cell::new(0);
        let t0 = snapshot::boottime();
        let read_at = |now, keep| {
            through_snapshot_at(&held, "failing", now, |_| {
                reads.set(reads.get() + 1);
                Err(Failure {
                    error: ListingError {
                        path: PathBuf::from("/nowhere"),
                        reason: format!("gone {}", reads.get()),
                    },
                    keep,
                })
            })
        };
        for ms in [0, 1, 100, 199] {
            let err = read_at(t0 + Duration::from_millis(ms), true).unwrap_err();
            // The first read's failure, said again without reading.
            assert_eq!(
                (err.path.to_str(), err.reason.as_str()),
                (Some("/nowhere"), "gone 1")
            );
        }
        assert_eq!(reads.get(), 1);
        let later = t0 + snapshot::MAX_AGE + Duration::from_millis(50);
        assert_eq!(read_at(later, true).unwrap_err().reason, "gone 2");
        // A failure not to be kept (this process's own) leaves the last
        // kept one to stand, and is read again each time once that is old.
        let old = later + snapshot::MAX_AGE + Duration::from_millis(50);
        assert_eq!(read_at(old, false).unwrap_err().reason, "gone 3");
        assert_eq!(read_at(old, false).unwrap_err().reason, "gone 4");
        // A failure is no earlier reading to measure against.
        let seen = std::cell::Cell::new(true);
        let _ = through_snapshot_at(&held, "failing", old + snapshot::MAX_AGE * 2, |earlier| {
            seen.set(earlier.is_some());
            Ok((PathBuf::from("/x"), "ok".into()))
        });
        assert!(!seen.get());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unreadable_listing_leaves_no_snapshot() {
        let dir =
            std::env::temp_dir().join(format!("edgeguard-source-none-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let held = Held::lock(&dir).unwrap();
        let source = MppListing::new(Some(&dir.join("missing")));
        assert!(source.read(&held).is_err());
        assert!(snapshot::load(&source.snapshot_file(&held)).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
