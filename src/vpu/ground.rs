// SPDX-License-Identifier: MPL-2.0
//! The trust rules of the lock directory every guard of the machine shares:
//! which directory may hold a budget, which file in it may lower a count, and
//! how a file in it is opened without following what another user planted.
//!
//! Any local user can create files in a shared (sticky, world-writable) lock
//! directory. What they plant may only ever make guards count more (a slot
//! they hold makes guards choose software); it must never make guards count
//! less, block a guard, or make a root guard create or write another file.
//! So, as ssh's StrictModes does for `~/.ssh`:
//! - the directory and each directory above it is owned by root or by the
//!   user running the guard, and is not writable by group or others unless
//!   sticky (else its owner, or anyone, could remove or rename other users'
//!   slots and snapshots);
//! - a file whose content lowers a count (the listing snapshot) is trusted
//!   only when it is owned by root or by the reading user and nobody else
//!   can write it;
//! - every file is opened with O_NOFOLLOW and O_NONBLOCK and must be a
//!   regular file; every file is created with O_EXCL.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// The effective user id files are created as and checked against.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Why a directory cannot hold a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirDistrust {
    /// Owned by a user who is neither root nor the guard's: they could remove
    /// the guards' slots and snapshots.
    ForeignOwner { owner: u32 },
    /// Writable by group or others without the sticky bit: anyone could
    /// remove or replace the guards' files.
    WritableWithoutSticky { mode: u32 },
    /// Not a directory.
    NotADirectory,
}

/// The rule for one directory on the way to the lock directory (the lock
/// directory included): owned by root or `euid`, and not writable by group
/// or others unless sticky.
pub fn check_dir(owner: u32, mode: u32, is_dir: bool, euid: u32) -> Result<(), DirDistrust> {
    if !is_dir {
        return Err(DirDistrust::NotADirectory);
    }
    if owner != 0 && owner != euid {
        return Err(DirDistrust::ForeignOwner { owner });
    }
    if mode & GROUP_OR_OTHER_WRITE != 0 && mode & STICKY == 0 {
        return Err(DirDistrust::WritableWithoutSticky {
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

impl DirDistrust {
    fn explain(&self, dir: &Path, euid: u32) -> String {
        let dir = dir.display();
        match self {
            DirDistrust::ForeignOwner { owner } => format!(
                "'{dir}' is owned by uid {owner}, neither root nor this user (uid {euid}), \
                 who could remove the guards' slots"
            ),
            DirDistrust::WritableWithoutSticky { mode } => format!(
                "'{dir}' (mode {mode:o}) is writable by other users without the sticky bit, \
                 who could remove the guards' slots"
            ),
            DirDistrust::NotADirectory => format!("'{dir}' is not a directory"),
        }
    }
}

/// Checks `dir` and every directory above it (as resolved: links are
/// followed, but a link on the way must itself be root's or this user's).
/// The error is PermissionDenied and says which directory and why.
pub fn check_lock_dir(dir: &Path) -> io::Result<()> {
    let euid = euid();
    refuse_foreign_links(dir, euid)?;
    let real = std::fs::canonicalize(dir)?;
    for ancestor in real.ancestors() {
        let meta = std::fs::metadata(ancestor)?;
        check_dir(meta.uid(), meta.mode(), meta.is_dir(), euid).map_err(|why| {
            io::Error::new(io::ErrorKind::PermissionDenied, why.explain(ancestor, euid))
        })?;
    }
    Ok(())
}

/// A symbolic link on the way to `dir` that another user owns could be
/// pointed elsewhere at any moment.
fn refuse_foreign_links(dir: &Path, euid: u32) -> io::Result<()> {
    let mut prefix = PathBuf::new();
    for component in dir.components() {
        prefix.push(component);
        let Ok(meta) = std::fs::symlink_metadata(&prefix) else {
            continue;
        };
        if meta.file_type().is_symlink() && meta.uid() != 0 && meta.uid() != euid {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "'{}' is a symbolic link of uid {}, neither root nor this user (uid {euid})",
                    prefix.display(),
                    meta.uid()
                ),
            ));
        }
    }
    Ok(())
}

/// Whether a file whose content lowers a count may be believed: owned by
/// `trusted` (root or the reader), writable by nobody else, and with no
/// second name (a hard link of one of `trusted`'s files elsewhere).
pub fn check_trusted_file(owner: u32, mode: u32, nlink: u64, trusted: u32) -> bool {
    owner == trusted && mode & GROUP_OR_OTHER_WRITE == 0 && nlink == 1
}

/// Whether `meta` passes `check_trusted_file` for `trusted`.
pub fn is_trusted(meta: &Metadata, trusted: u32) -> bool {
    check_trusted_file(meta.uid(), meta.mode(), meta.nlink(), trusted)
}

/// Opens an existing file in the lock directory: never through a link
/// (ELOOP), never blocking (a FIFO planted there must not hang a guard that
/// holds the machine-wide decision lock), and only a regular file.
pub fn open_existing(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// Creates a new file in the lock directory with O_EXCL (which never
/// follows a link, dangling or not), open for writing, with `mode` whatever
/// the umask.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    // The umask may have removed the read bits other users' guards need.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
}

/// Whether `err` says the name is something a guard never put there: a
/// link (refused by O_NOFOLLOW) or not a regular file.
pub fn is_planted(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ELOOP) || err.kind() == io::ErrorKind::InvalidInput
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_of_root_or_the_user_not_writable_by_others_is_trusted() {
        assert_eq!(check_dir(0, 0o755, true, 1000), Ok(()));
        assert_eq!(check_dir(1000, 0o700, true, 1000), Ok(()));
        // World-writable is fine when sticky: /tmp, /run/lock.
        assert_eq!(check_dir(0, 0o1777, true, 1000), Ok(()));
        assert_eq!(check_dir(1000, 0o1777, true, 1000), Ok(()));
    }

    #[test]
    fn a_directory_of_another_user_is_refused_even_sticky() {
        assert_eq!(
            check_dir(1001, 0o1777, true, 1000),
            Err(DirDistrust::ForeignOwner { owner: 1001 })
        );
        // Root trusts only its own directories too.
        assert_eq!(
            check_dir(65534, 0o755, true, 0),
            Err(DirDistrust::ForeignOwner { owner: 65534 })
        );
    }

    #[test]
    fn a_directory_writable_by_group_or_others_without_sticky_is_refused() {
        for mode in [0o777, 0o775, 0o757, 0o40777] {
            assert_eq!(
                check_dir(0, mode, true, 0),
                Err(DirDistrust::WritableWithoutSticky {
                    mode: mode & 0o7777
                }),
                "{mode:o}"
            );
        }
        assert_eq!(
            check_dir(0, 0o644, false, 0),
            Err(DirDistrust::NotADirectory)
        );
    }

    #[test]
    fn a_count_lowering_file_is_believed_only_from_its_owner_and_unshared() {
        assert!(check_trusted_file(0, 0o644, 1, 0));
        assert!(check_trusted_file(1000, 0o600, 1, 1000));
        // Another user's file, even a well-formed one.
        assert!(!check_trusted_file(65534, 0o644, 1, 0));
        // Writable by others: anyone may have written it.
        assert!(!check_trusted_file(0, 0o666, 1, 0));
        assert!(!check_trusted_file(0, 0o664, 1, 0));
        // A second name: a hard link of the owner's file made by someone else.
        assert!(!check_trusted_file(0, 0o644, 2, 0));
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("edgeguard-ground-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn links_and_fifos_are_neither_followed_nor_waited_on() {
        let dir = temp_dir("open");
        let target = dir.join("target");
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // A dangling link is not created through.
        let err = create_new(&link, 0o644).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(!target.exists());
        std::fs::write(&target, "keep").unwrap();
        let err = open_existing(&link, OpenOptions::new().read(true)).unwrap_err();
        assert!(is_planted(&err), "{err}");
        let fifo = dir.join("fifo");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c_path is a valid NUL-terminated string.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let err = open_existing(&fifo, OpenOptions::new().read(true)).unwrap_err();
        assert!(is_planted(&err), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn created_files_have_their_mode_whatever_the_umask() {
        let dir = temp_dir("mode");
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o077) };
        let created = create_new(&dir.join("f"), 0o644);
        unsafe { libc::umask(old) };
        let mode = created.unwrap().metadata().unwrap().mode() & 0o777;
        assert_eq!(mode, 0o644);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_lock_dir_and_its_parents_are_checked() {
        let dir = temp_dir("dir");
        assert!(check_lock_dir(&dir).is_ok());
        let lock = dir.join("lock");
        std::fs::create_dir(&lock).unwrap();
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check_lock_dir(&lock).is_ok());
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_lock_dir(&lock).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("sticky"), "{err}");
        // A parent anyone can write: the lock dir could be renamed away.
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_lock_dir(&lock).is_err());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
