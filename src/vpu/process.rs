// SPDX-License-Identifier: MPL-2.0
//! Which process a listed session belongs to. The MPP driver prints the
//! opening *thread's* id as `pid=`; the guards' slots and leakcheck's report
//! are per process. This is the one mapping both use.

use std::path::{Path, PathBuf};

/// The process a thread belongs to, from `/proc/<tid>/status` under
/// `EDGEGUARD_ROOT`; the thread id itself when it cannot be read (a thread
/// that is gone, another namespace).
pub fn process_of_thread(tid: u32) -> u32 {
    std::fs::read_to_string(super::root::host_path(format!("/proc/{tid}/status")))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(tid)
}

/// Whether a thread id belongs to this process.
pub fn is_this_process(tid: u32) -> bool {
    process_of_thread(tid) == own_pid()
}

/// This process's id as `EDGEGUARD_ROOT`'s `/proc` numbers it: what the
/// sources' pids are (a listed thread is mapped through
/// `$EDGEGUARD_ROOT/proc/<tid>/status`), and so what a guard's slot must
/// record to be matched to its own session. In a container whose
/// `EDGEGUARD_ROOT` holds the host's `/proc`, that is the host's pid, not
/// the container's `std::process::id()`. Found once per root and process.
pub fn own_pid() -> u32 {
    use std::sync::Mutex;
    static FOUND: Mutex<Option<(PathBuf, u32, u32)>> = Mutex::new(None);
    let root = super::root::root();
    let local = std::process::id();
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    match &*found {
        // A fork has another pid, so the local one is part of the key.
        Some((r, l, pid)) if *r == root && *l == local => *pid,
        _ => {
            let pid = own_pid_under(&root, local);
            *found = Some((root, local, pid));
            pid
        }
    }
}

/// The pid under `root` of this process, whose own pid is `local`:
/// `local` when `root` is `/`; else where `root/proc/self` points (procfs
/// resolves it in the pid namespace it was mounted for: the host's); else
/// the process under `root/proc` whose `NSpid:` ends in `local` and whose
/// pid namespace is ours (a `proc` that is a copy, without `self`); else
/// `local`, as without a root.
fn own_pid_under(root: &Path, local: u32) -> u32 {
    if root == Path::new("/") {
        return local;
    }
    let proc = super::root::under(root, "/proc");
    let via_self = std::fs::read_link(proc.join("self"))
        .ok()
        .and_then(|target| target.to_str()?.parse().ok());
    via_self
        .or_else(|| scan_nspid(&proc, local))
        .unwrap_or(local)
}

/// The process ids listed in a `/proc` (its numeric entries), lowest first.
pub fn pids_in(proc_dir: &Path) -> std::io::Result<Vec<u32>> {
    let mut pids: Vec<u32> = std::fs::read_dir(proc_dir)?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// The process under `proc` that is this one: its innermost pid (last
/// `NSpid:` field) is `local` and its pid namespace is ours.
fn scan_nspid(proc: &Path, local: u32) -> Option<u32> {
    let ours = std::fs::read_link("/proc/self/ns/pid").ok()?;
    pids_in(proc).ok()?.into_iter().find(|pid| {
        let dir = proc.join(pid.to_string());
        innermost_pid(&dir) == Some(local)
            && std::fs::read_link(dir.join("ns/pid")).ok().as_ref() == Some(&ours)
    })
}

/// The last field of a `/proc/<pid>/status`'s `NSpid:` line: the pid in
/// the process's own namespace.
fn innermost_pid(dir: &Path) -> Option<u32> {
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_threads_process_is_found() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        assert_eq!(process_of_thread(tid), std::process::id());
        assert!(is_this_process(tid));
        assert_eq!(process_of_thread(u32::MAX), u32::MAX);
        assert!(!is_this_process(u32::MAX));
    }

    fn fake_proc(name: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("edgeguard-own-pid-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("proc")).unwrap();
        root
    }

    /// A process in the fake root's proc: its status says `nspid`, its pid
    /// namespace link says `ns`.
    fn fake_process(root: &Path, pid: u32, nspid: &str, ns: &Path) {
        let dir = root.join(format!("proc/{pid}"));
        std::fs::create_dir_all(dir.join("ns")).unwrap();
        std::fs::write(
            dir.join("status"),
            format!("Tgid:\t{pid}\nNSpid:\t{nspid}\n"),
        )
        .unwrap();
        std::os::unix::fs::symlink(ns, dir.join("ns/pid")).unwrap();
    }

    #[test]
    fn without_a_root_our_pid_is_our_own() {
        assert_eq!(own_pid_under(Path::new("/"), 77), 77);
    }

    #[test]
    fn under_a_hosts_proc_our_pid_is_the_hosts() {
        // The host's procfs resolves `self` to our pid in its namespace.
        let root = fake_proc("self");
        std::os::unix::fs::symlink("4242", root.join("proc/self")).unwrap();
        assert_eq!(own_pid_under(&root, 7), 4242);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn without_self_our_pid_is_the_one_whose_nspid_and_namespace_are_ours() {
        let root = fake_proc("nspid");
        let ours = std::fs::read_link("/proc/self/ns/pid").unwrap();
        let local = 7;
        // Pid 7 of another container: same innermost pid, other namespace.
        fake_process(&root, 5000, "5000\t7", Path::new("pid:[1]"));
        fake_process(&root, 6000, "6000\t7", &ours);
        assert_eq!(own_pid_under(&root, local), 6000);
        // Nothing that is us: the local pid, as without a root.
        std::fs::remove_dir_all(root.join("proc/6000")).unwrap();
        assert_eq!(own_pid_under(&root, local), local);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_real_proc_is_scanned_to_this_process() {
        // The real status and namespace link formats.
        let pid = std::process::id();
        assert_eq!(scan_nspid(Path::new("/proc"), pid), Some(pid));
    }
}
