// SPDX-License-Identifier: MPL-2.0
//! `EDGEGUARD_ROOT`: the directory standing for `/` in every file the budget
//! sources read (`proc/`, `sys/`, `dev/` and the MPP listing's default
//! paths), as node_exporter's `--path.rootfs`: a container that mounts the
//! host at `/host` sets `EDGEGUARD_ROOT=/host`, and tests point it at a fake
//! tree. A `session-file` the user gives is used as given.

use std::path::{Path, PathBuf};

pub const ROOT_ENV: &str = "EDGEGUARD_ROOT";

/// The root the sources read under: `EDGEGUARD_ROOT`, `/` when unset or empty.
/// Read at each use: it costs a getenv, and a tool may change it.
pub fn root() -> PathBuf {
    match std::env::var_os(ROOT_ENV) {
        Some(root) if !root.is_empty() => PathBuf::from(root),
        _ => PathBuf::from("/"),
    }
}

/// `path`, an absolute path of the machine (`/proc/1/status`), under `root`.
pub fn under(root: &Path, path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// `path` under `EDGEGUARD_ROOT`.
pub fn host_path(path: impl AsRef<Path>) -> PathBuf {
    under(&root(), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_joined_under_the_root() {
        assert_eq!(
            under(Path::new("/host"), "/proc/1/status"),
            Path::new("/host/proc/1/status")
        );
        assert_eq!(under(Path::new("/"), "/dev/dri"), Path::new("/dev/dri"));
        assert_eq!(under(Path::new("/r"), "sys"), Path::new("/r/sys"));
    }
}
