// SPDX-License-Identifier: MPL-2.0
//! Snapshots of this process's open device handles, from /proc/self/fd.

use super::patterns::DevicePatterns;
use std::collections::BTreeMap;

/// Open fds whose target matches the patterns: fd number -> target path.
pub type FdSnapshot = BTreeMap<i32, String>;

pub fn snapshot(patterns: &DevicePatterns) -> FdSnapshot {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return FdSnapshot::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            let target = target.to_string_lossy().into_owned();
            patterns.matches(&target).then_some((fd, target))
        })
        .collect()
}

/// The handles in `after` that were not open (as the same fd and target) in `before`.
pub fn opened_since(before: &FdSnapshot, after: &FdSnapshot) -> FdSnapshot {
    after
        .iter()
        .filter(|(fd, target)| before.get(fd) != Some(target))
        .map(|(fd, target)| (*fd, target.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_an_fd_open_and_closed() {
        let patterns = DevicePatterns::parse("/dev/zero").unwrap();
        let before = snapshot(&patterns);
        let file = std::fs::File::open("/dev/zero").unwrap();
        let during = snapshot(&patterns);
        let new = opened_since(&before, &during);
        assert_eq!(new.len(), 1);
        assert_eq!(new.values().next().unwrap(), "/dev/zero");
        drop(file);
        assert!(opened_since(&before, &snapshot(&patterns)).is_empty());
    }
}
