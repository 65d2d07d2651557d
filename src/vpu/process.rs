// SPDX-License-Identifier: MPL-2.0
//! Which process a listed session belongs to. The MPP driver prints the
//! opening *thread's* id as `pid=`; the guards' slots and leakcheck's report
//! are per process. This is the one mapping both use.

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
    process_of_thread(tid) == std::process::id()
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
}
