// SPDX-License-Identifier: MPL-2.0
//! The machine-wide ledger of hardware encoders held by vpuguardenc instances.
//!
//! Two kinds of files live in one lock directory shared by every process:
//! - `decision.lock`: held (flock) by the one guard that is deciding, from
//!   reading the session count until its hardware child has opened its VPU
//!   session, so two guards never both see the last free slot.
//! - `slot-<pid>-<n>.lock`: one per hardware encoder a guard holds, flock-held
//!   for as long as the encoder may own a VPU session. The kernel drops a flock
//!   when its process dies, so a slot whose lock can be taken is stale and is
//!   removed: a crashed process never leaves a reservation behind.
//!
//! Slots are only taken and counted with the decision lock held, so a counter
//! can never mistake a slot that is being created for a stale one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const DECISION_LOCK: &str = "decision.lock";
const SLOT_PREFIX: &str = "slot-";
const SLOT_SUFFIX: &str = ".lock";

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
    pub fn open(dir: &Path) -> io::Result<Self> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)?;
            // Other users' guards share the budget: let them lock here too,
            // sticky so nobody removes another user's slot by hand.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
        }
        Ok(Ledger {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Blocks until this process is the only deciding guard on the machine.
    pub fn lock_decision(&self) -> io::Result<DecisionLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o666)
            .open(self.dir.join(DECISION_LOCK))?;
        flock(&file, libc::LOCK_EX)?;
        Ok(DecisionLock { _file: file })
    }
}

/// Held while a guard decides; released on drop (and by the kernel on exit).
#[derive(Debug)]
pub struct DecisionLock {
    _file: File,
}

impl DecisionLock {
    /// Counts the slots held by live processes, removing stale ones.
    pub fn held_slots(&self, ledger: &Ledger) -> io::Result<u32> {
        let mut held = 0u32;
        for entry in std::fs::read_dir(&ledger.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with(SLOT_PREFIX) && name.ends_with(SLOT_SUFFIX)) {
                continue;
            }
            let file = match File::open(entry.path()) {
                Ok(f) => f,
                // Released between listing and opening.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => {
                    // Nobody holds it: its owner died without releasing it.
                    let _ = std::fs::remove_file(entry.path());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => held += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(held)
    }

    /// Records one hardware encoder held by this process until the slot drops.
    pub fn take_slot(&self, ledger: &Ledger, owner: &str) -> io::Result<Slot> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = ledger.dir.join(format!(
            "{SLOT_PREFIX}{}-{n}{SLOT_SUFFIX}",
            std::process::id()
        ));
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o644)
            .open(&path)?;
        flock(&file, libc::LOCK_EX | libc::LOCK_NB)?;
        // For people looking at the directory: who holds this slot.
        let _ = writeln!(file, "pid={} owner={owner}", std::process::id());
        Ok(Slot { path, _file: file })
    }
}

/// One hardware encoder recorded in the ledger. Dropping it releases the slot.
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
        let a = lock.take_slot(&ledger, "a").unwrap();
        let b = lock.take_slot(&ledger, "b").unwrap();
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
}
