// SPDX-License-Identifier: MPL-2.0
//! Snapshots of this process's open device handles, from /proc/self/fd, each
//! with what /proc/self/fdinfo says of its driver.

use super::fdinfo;
use super::patterns::DevicePatterns;
use std::collections::BTreeMap;

/// An open device handle: its target path and, for DMABufs and DRM nodes,
/// the driver behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handle {
    pub target: String,
    pub driver: Option<String>,
}

/// Open fds whose target matches the patterns, by fd number.
pub type FdSnapshot = BTreeMap<i32, Handle>;

pub fn snapshot(patterns: &DevicePatterns) -> FdSnapshot {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return FdSnapshot::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            let target = target.to_string_lossy().into_owned();
            // fdinfo is read only for the few fds that match.
            patterns.matches(&target).then(|| {
                let driver = fdinfo::classify_fd(fd);
                (fd, Handle { target, driver })
            })
        })
        .collect()
}

/// The handles in `after` that were not open (as the same fd and target) in `before`.
pub fn opened_since(before: &FdSnapshot, after: &FdSnapshot) -> FdSnapshot {
    after
        .iter()
        .filter(|(fd, handle)| before.get(fd).map(|b| &b.target) != Some(&handle.target))
        .map(|(fd, handle)| (*fd, handle.clone()))
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
        assert_eq!(new.values().next().unwrap().target, "/dev/zero");
        assert_eq!(new.values().next().unwrap().driver, None);
        drop(file);
        assert!(opened_since(&before, &snapshot(&patterns)).is_empty());
    }
}
