// SPDX-License-Identifier: MPL-2.0
//! The machine-wide ledger of hardware children (encoders and decoders) held
//! by the guards, vpuguardenc and vpuguarddec instances of every process.
//!
//! Two kinds of files live in one lock directory shared by every process:
//! - `decision.lock`: held (flock) by the one guard that is deciding, from
//!   reading the session count until its hardware child has opened its VPU
//!   session, so two guards never both see the last free slot.
//! - `slot-<pid>-<n>.lock`: one per hardware child a guard holds (`<pid>` as
//!   `EDGEGUARD_ROOT`'s `/proc` numbers the process), flock-held
//!   for as long as the child may own a VPU session; it says whether the
//!   child is an encoder or a decoder. The kernel drops a flock
//!   when its process dies, so a slot whose lock can be taken is stale and is
//!   removed: a crashed process never leaves a reservation behind.
//!
//! Slots are only taken and counted with the decision lock held, so a counter
//! can never mistake a slot that is being created for a stale one.
//!
//! Every user's guards share the directory: the decision lock is taken on a
//! read-only open (flock needs no write access) and made world-readable when
//! created, slot files too, whatever the umask. The directory and every file
//! in it follow `ground`'s trust rules: a directory another user controls is
//! refused, files are opened with O_NOFOLLOW and created with O_EXCL, and a
//! link or FIFO planted as a slot is not counted (nor waited on).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::ground;
use super::listing::SessionKind;
use super::load::{BudgetId, SlotLoad};
use super::process;
use super::survey::GuardSlot;

const DECISION_LOCK: &str = "decision.lock";
const SLOT_PREFIX: &str = "slot-";
const SLOT_SUFFIX: &str = ".lock";
/// How often a waiting guard tries the decision lock again: short enough that
/// a state change to NULL is not held up, long enough to cost nothing.
const LOCK_POLL: Duration = Duration::from_millis(10);
/// How many names a slot tries when others' files are in the way.
const SLOT_NAME_TRIES: u32 = 64;

/// The lock directory used when the `lock-dir` property is empty: /run/lock is
/// shared by every user of the machine; the others are for systems without it.
pub fn default_lock_dir() -> PathBuf {
    let run_lock = Path::new("/run/lock");
    if is_writable_dir(run_lock) {
        return run_lock.join("edgeguard");
    }
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(runtime).join("edgeguard");
    }
    std::env::temp_dir().join("edgeguard")
}

fn is_writable_dir(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: c_path is a valid NUL-terminated string.
    path.is_dir() && unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } == 0
}

fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: the fd is owned by `file` and open for the whole call.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A lock directory, created on first use.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    /// The ledger in `dir`, which is created if missing and refused
    /// (PermissionDenied, saying why) when another user controls it.
    pub fn open(dir: &Path) -> io::Result<Self> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)?;
            // Other users' guards share the budget: let them lock here too,
            // sticky so nobody removes another user's slot by hand.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
        }
        ground::check_lock_dir(dir)?;
        Ok(Ledger {
            dir: dir.to_path_buf(),
        })
    }

    /// The ledger `dir` would be, neither created nor checked: for a viewer
    /// of a directory that does not exist, which only reads.
    pub fn unopened(dir: &Path) -> Self {
        Ledger {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn decision_lock_path(&self) -> PathBuf {
        self.dir.join(DECISION_LOCK)
    }

    /// Blocks until this process is the only deciding guard on the machine.
    pub fn lock_decision(&self) -> io::Result<DecisionLock> {
        let file = self.open_decision_lock().map_err(LockWaitError::into_io)?;
        flock(&file, libc::LOCK_EX)?;
        Ok(DecisionLock { _file: file })
    }

    /// Waits at most `timeout` for the decision lock, giving up early once
    /// `stop` says so (the element is shutting down).
    pub fn lock_decision_within(
        &self,
        timeout: Duration,
        stop: impl Fn() -> bool,
    ) -> Result<DecisionLock, LockWaitError> {
        let file = self.open_decision_lock()?;
        let deadline = Instant::now().checked_add(timeout);
        loop {
            match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => return Ok(DecisionLock { _file: file }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => (),
                Err(e) => return Err(LockWaitError::Io(e)),
            }
            if stop() {
                return Err(LockWaitError::Stopped);
            }
            let left = deadline.map_or(LOCK_POLL, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Err(LockWaitError::TimedOut);
            }
            std::thread::sleep(left.min(LOCK_POLL));
        }
    }

    /// Opens the decision lock read-only (flock does not need more), creating
    /// it readable by every user if it is missing. A link planted in its
    /// place is refused, never followed (a root guard would create or lock
    /// its target).
    ///
    /// A name that is there but cannot be opened as a regular file (a link,
    /// FIFO or socket, or a file of mode 000 another user planted) is
    /// `Unusable`: anyone can plant one in a shared directory, so it may
    /// only push guards to software, as holding the lock would. Failing to
    /// create a missing one (a directory this user cannot write) is `Io`.
    fn open_decision_lock(&self) -> Result<File, LockWaitError> {
        let path = self.decision_lock_path();
        let open_existing = || {
            ground::open_existing(&path, OpenOptions::new().read(true))
                .map_err(LockWaitError::Unusable)
        };
        match ground::open_existing(&path, OpenOptions::new().read(true)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match ground::create_new(&path, 0o644) {
                    // Another guard created it first: use theirs.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open_existing(),
                    created => created.map_err(LockWaitError::Io),
                }
            }
            Err(e) => Err(LockWaitError::Unusable(e)),
            Ok(file) => Ok(file),
        }
    }
}

/// Why the decision lock was not taken.
#[derive(Debug)]
pub enum LockWaitError {
    /// Another guard held it for the whole timeout.
    TimedOut,
    /// The caller asked to stop waiting.
    Stopped,
    /// `decision.lock` is there but is no lock a guard made: a link, FIFO,
    /// socket or unreadable file planted in its place.
    Unusable(io::Error),
    Io(io::Error),
}

impl LockWaitError {
    /// As an io::Error, for callers that tell no case apart.
    pub fn into_io(self) -> io::Error {
        match self {
            LockWaitError::Io(e) | LockWaitError::Unusable(e) => e,
            LockWaitError::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "timed out"),
            LockWaitError::Stopped => io::Error::new(io::ErrorKind::Interrupted, "stopped"),
        }
    }
}

/// Held while a guard decides; released on drop (and by the kernel on exit).
#[derive(Debug)]
pub struct DecisionLock {
    _file: File,
}

impl DecisionLock {
    /// The slots held by live processes; stale ones are removed.
    pub fn live_slots(&self, ledger: &Ledger) -> io::Result<Vec<SlotLoad>> {
        let mut held = Vec::new();
        for entry in std::fs::read_dir(&ledger.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(pid) = slot_pid(&name.to_string_lossy()) else {
                continue;
            };
            // A name that cannot be opened read-only as a regular file is
            // no guard's slot: guards create regular files of mode 0644,
            // which every user can open, and nobody but their owner can
            // change or replace them in the sticky directory. So one that
            // was released between listing and opening (NotFound), a link,
            // FIFO or socket (ELOOP, not regular, ENXIO) and a file another
            // user made unreadable (EACCES) are skipped: not counted, not
            // removed, not waited on, and never an error, which any user
            // could otherwise turn every guard's decision into.
            let Ok(mut file) = ground::open_existing(&entry.path(), OpenOptions::new().read(true))
            else {
                continue;
            };
            match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => {
                    // Nobody holds it: its owner died without releasing it.
                    // (The sticky directory keeps another user's stale slot;
                    // it is skipped again at each count.)
                    let _ = std::fs::remove_file(entry.path());
                }
                // Held, or a lock that cannot be tried (a file system
                // without flock): counted, the side that never overloads.
                Err(_) => held.push(slot_load(pid, &mut file)),
            }
        }
        Ok(held)
    }

    /// How many slots live processes hold.
    pub fn held_slots(&self, ledger: &Ledger) -> io::Result<u32> {
        self.live_slots(ledger).map(|slots| slots.len() as u32)
    }

    /// Records one hardware child of `kind` held by this process until the
    /// slot drops. `pixel_rate` is the load of the stream an encoder encodes,
    /// for other guards' pixel budget while its session is not listed yet.
    pub fn take_slot(
        &self,
        ledger: &Ledger,
        owner: &str,
        budget: &str,
        kind: SessionKind,
        pixel_rate: u64,
    ) -> io::Result<Slot> {
        // Readable by all: other users' guards must be able to count it.
        let (path, mut file) = create_slot_file(ledger)?;
        flock(&file, libc::LOCK_EX | libc::LOCK_NB)?;
        // The load for other guards, and who holds it for people looking.
        writeln!(
            file,
            "pid={} kind={} pixel-rate={pixel_rate} budget={} owner={owner}",
            process::own_pid(),
            kind_name(kind),
            budget.replace(char::is_whitespace, "_")
        )?;
        Ok(Slot { path, _file: file })
    }
}

/// A new slot file of this process, named by its pid as `EDGEGUARD_ROOT`'s
/// `/proc` numbers it (the host's, in a container that reads the host's
/// `/proc`): the pid the sources' sessions map to, which also keeps the
/// names of guards in different containers apart. Names are predictable, so another user
/// may have put something at the next one: that name is skipped, never
/// opened through.
fn create_slot_file(ledger: &Ledger) -> io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut tries = 0;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = ledger.dir.join(format!(
            "{SLOT_PREFIX}{}-{n}{SLOT_SUFFIX}",
            process::own_pid()
        ));
        match ground::create_new(&path, 0o644) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < SLOT_NAME_TRIES => {
                tries += 1;
            }
            created => return created.map(|file| (path, file)),
        }
    }
}

/// The slots live processes hold in `dir`, with their owners, for people
/// looking (`edgeguard-vpu`): read without the decision lock and without
/// removing stale slots, which only a deciding guard may do. A slot whose
/// lock can be taken is stale and left out; links and other files that are
/// not plain slot files are skipped.
pub fn guard_slots(dir: &Path) -> io::Result<Vec<GuardSlot>> {
    let mut slots = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(pid) = slot_pid(&entry.file_name().to_string_lossy()) else {
            continue;
        };
        let Ok(mut file) = ground::open_existing(&entry.path(), OpenOptions::new().read(true))
        else {
            continue;
        };
        match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let load = slot_load(pid, &mut file);
                let _ = file.seek(io::SeekFrom::Start(0));
                slots.push(GuardSlot {
                    pid,
                    kind: load.kind,
                    budget: load.budget,
                    owner: slot_field(&mut file, "owner").unwrap_or_default(),
                });
            }
            // Taken: nobody holds it. Released when `file` closes.
            _ => continue,
        }
    }
    Ok(slots)
}

/// One `name=value` field of a slot file.
fn slot_field(file: &mut File, name: &str) -> Option<String> {
    let mut text = String::new();
    let _ = file.take(4096).read_to_string(&mut text);
    text.split_whitespace()
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_string)
}

/// The process id in a slot file's name, `slot-<pid>-<n>.lock`.
fn slot_pid(name: &str) -> Option<u32> {
    let inner = name.strip_prefix(SLOT_PREFIX)?.strip_suffix(SLOT_SUFFIX)?;
    inner.split_once('-')?.0.parse().ok()
}

/// What a slot file records: its `kind=` (encoder when missing: guards
/// before decoders had slots wrote none) and `pixel-rate=` (0 when it has none
/// yet: its owner is between creating and writing it, which it only does
/// holding the decision lock, so a counter never sees that).
fn slot_load(pid: u32, file: &mut File) -> SlotLoad {
    let mut text = String::new();
    let _ = file.take(4096).read_to_string(&mut text);
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
    };
    SlotLoad {
        pid,
        kind: match field("kind") {
            Some("decoder") => SessionKind::Decoder,
            _ => SessionKind::Encoder,
        },
        pixel_rate: field("pixel-rate")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        budget: field("budget").map_or(BudgetId::UNNAMED, BudgetId::of),
    }
}

fn kind_name(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::Decoder => "decoder",
        _ => "encoder",
    }
}

/// One hardware child recorded in the ledger. Dropping it releases the slot.
#[derive(Debug)]
pub struct Slot {
    path: PathBuf,
    _file: File,
}

impl Slot {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Unlink first: a counter that opened it just before sees it unlocked
        // once the file closes, and its removal then finds nothing.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_ledger(name: &str) -> Ledger {
        let dir =
            std::env::temp_dir().join(format!("edgeguard-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Ledger::open(&dir).unwrap()
    }

    #[test]
    fn slots_count_while_held() {
        let ledger = temp_ledger("held");
        let lock = ledger.lock_decision().unwrap();
        assert_eq!(lock.held_slots(&ledger).unwrap(), 0);
        let a = lock
            .take_slot(&ledger, "a", "mpp:", SessionKind::Encoder, 10)
            .unwrap();
        let b = lock
            .take_slot(&ledger, "b", "mpp:", SessionKind::Decoder, 20)
            .unwrap();
        assert_eq!(lock.held_slots(&ledger).unwrap(), 2);
        assert!(a.path().exists());
        drop(a);
        assert_eq!(lock.held_slots(&ledger).unwrap(), 1);
        drop(b);
        assert_eq!(lock.held_slots(&ledger).unwrap(), 0);
        std::fs::remove_dir_all(ledger.dir()).unwrap();
    }

    #[test]
    fn unlocked_slot_file_is_stale_and_removed() {
        let ledger = temp_ledger("stale");
        // What a killed process leaves: the file, with no lock on it.
        let stale = ledger.dir().join("slot-999999-0.lock");
        std::fs::write(&stale, "pid=999999").unwrap();
        let lock = ledger.lock_decision().unwrap();
        assert_eq!(lock.held_slots(&ledger).unwrap(), 0);
        assert!(!stale.exists());
        std::fs::remove_dir_all(ledger.dir()).unwrap();
    }

    /// A socket: no user, root included, can open it (ENXIO).
    fn plant_socket(path: &Path) -> std::os::unix::net::UnixListener {
        std::os::unix::net::UnixListener::bind(path).unwrap()
    }

    #[test]
    fn a_slot_name_that_cannot_be_opened_is_skipped_never_an_error() {
        let ledger = temp_ledger("unopenable");
        let _socket = plant_socket(&ledger.dir().join("slot-1-0.lock"));
        // Unreadable: EACCES for any user but root (who opens it, finds it
        // unlocked and removes it as stale).
        let unreadable = ledger.dir().join("slot-2-0.lock");
        std::fs::write(&unreadable, "pid=2").unwrap();
        std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
        let lock = ledger.lock_decision().unwrap();
        let _ours = lock
            .take_slot(&ledger, "a", "mpp:", SessionKind::Encoder, 0)
            .unwrap();
        assert_eq!(lock.held_slots(&ledger).unwrap(), 1);
        assert_eq!(guard_slots(ledger.dir()).unwrap().len(), 1);
        std::fs::remove_dir_all(ledger.dir()).unwrap();
    }

    #[test]
    fn a_decision_lock_that_cannot_be_opened_is_unusable_not_an_io_error() {
        let ledger = temp_ledger("planted-lock");
        let _socket = plant_socket(&ledger.decision_lock_path());
        assert!(matches!(
            ledger.lock_decision_within(Duration::ZERO, || false),
            Err(LockWaitError::Unusable(_))
        ));
        std::fs::remove_file(ledger.decision_lock_path()).unwrap();
        std::os::unix::fs::symlink("/nonexistent", ledger.decision_lock_path()).unwrap();
        assert!(matches!(
            ledger.lock_decision_within(Duration::ZERO, || false),
            Err(LockWaitError::Unusable(_))
        ));
        // A directory this user cannot create it in is the directory's fault.
        std::fs::remove_dir_all(ledger.dir()).unwrap();
        assert!(matches!(
            ledger.lock_decision_within(Duration::ZERO, || false),
            Err(LockWaitError::Io(_))
        ));
    }

    #[test]
    fn a_slot_without_a_kind_is_an_encoders() {
        let dir = std::env::temp_dir().join(format!("edgeguard-slot-kind-{}", std::process::id()));
        std::fs::write(&dir, "pid=7 pixel-rate=99 owner=/pipeline0/guard\n").unwrap();
        let load = slot_load(7, &mut File::open(&dir).unwrap());
        assert_eq!((load.kind, load.pixel_rate), (SessionKind::Encoder, 99));
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn decision_lock_excludes_a_second_holder() {
        let ledger = temp_ledger("exclusive");
        let first = ledger.lock_decision().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let ledger2 = ledger.clone();
        let waiter = std::thread::spawn(move || {
            let _second = ledger2.lock_decision().unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err()
        );
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
        std::fs::remove_dir_all(ledger.dir()).unwrap();
    }

    #[test]
    fn slots_carry_their_process_and_pixel_rate() {
        let ledger = temp_ledger("loads");
        let lock = ledger.lock_decision().unwrap();
        let _a = lock
            .take_slot(&ledger, "a", "mpp:", SessionKind::Decoder, 1234)
            .unwrap();
        assert_eq!(
            lock.live_slots(&ledger).unwrap(),
            vec![SlotLoad {
                pid: std::process::id(),
                kind: SessionKind::Decoder,
                pixel_rate: 1234,
                budget: BudgetId::of("mpp:"),
            }]
        );
        std::fs::remove_dir_all(ledger.dir()).unwrap();
    }

    #[test]
    fn files_are_readable_by_every_user_whatever_the_umask() {
        let ledger = temp_ledger("umask");
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o077) };
        let lock = ledger.lock_decision();
        let slot = lock
            .as_ref()
            .map(|l| l.take_slot(&ledger, "a", "mpp:", SessionKind::Encoder, 0));
        unsafe { libc::umask(old) };
        let slot = slot.unwrap().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ledger.decision_lock_path()), 0o644);
        assert_eq!(mode(slot.path()), 0o644);
        drop((slot, lock));
        std::fs::remove_dir_all(ledger.dir()).unwrap();
    }

    #[test]
    fn waiting_for_the_lock_times_out_or_stops() {
        let ledger = temp_ledger("timeout");
        let _held = ledger.lock_decision().unwrap();
        // flock locks belong to the open file: a second open in this process
        // waits as another process would.
        assert!(matches!(
            ledger.lock_decision_within(Duration::from_millis(30), || false),
            Err(LockWaitError::TimedOut)
        ));
        assert!(matches!(
            ledger.lock_decision_within(Duration::from_secs(3600), || true),
            Err(LockWaitError::Stopped)
        ));
        drop(_held);
        assert!(
            ledger
                .lock_decision_within(Duration::from_secs(3600), || false)
                .is_ok()
        );
        std::fs::remove_dir_all(ledger.dir()).unwrap();
    }
}
