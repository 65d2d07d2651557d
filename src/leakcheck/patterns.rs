// SPDX-License-Identifier: MPL-2.0
//! Which open file descriptors count as device handles: shell-style globs over
//! the fd's target path, plus DMABuf fds.

/// The `device-patterns` default: GPU, V4L2, Rockchip MPP and RGA, NVIDIA
/// Tegra and DMA heap nodes; `dmabuf` matches exported DMABuf fds.
pub const DEFAULT_PATTERNS: &str = "/dev/dri/*,/dev/video*,/dev/mpp_service,/dev/rga,/dev/nvhost-*,/dev/nvmap,/dev/dma_heap/*,dmabuf";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePatterns {
    globs: Vec<String>,
    dmabuf: bool,
}

impl Default for DevicePatterns {
    fn default() -> Self {
        DevicePatterns::parse(DEFAULT_PATTERNS).expect("the default patterns parse")
    }
}

impl DevicePatterns {
    /// Parses a comma-separated list. Each entry is an absolute glob (`*` and
    /// `?`) or the word `dmabuf`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut globs = Vec::new();
        let mut dmabuf = false;
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "dmabuf" {
                dmabuf = true;
            } else if entry.starts_with('/') {
                globs.push(entry.to_string());
            } else {
                return Err(format!(
                    "device-patterns: '{entry}' is neither an absolute path glob nor 'dmabuf'"
                ));
            }
        }
        Ok(DevicePatterns { globs, dmabuf })
    }

    /// Whether an fd whose /proc/self/fd link reads `target` is a device handle.
    pub fn matches(&self, target: &str) -> bool {
        if self.dmabuf && (target.starts_with("/dmabuf:") || target == "anon_inode:dmabuf") {
            return true;
        }
        self.globs
            .iter()
            .any(|g| glob_match(g.as_bytes(), target.as_bytes()))
    }
}

/// Shell-style matching of `*` (any run, including `/`) and `?` (one byte).
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative with one backtrack point: linear in practice, no recursion.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"/dev/video*", b"/dev/video0"));
        assert!(glob_match(b"/dev/video*", b"/dev/video"));
        assert!(!glob_match(b"/dev/video*", b"/dev/vide"));
        assert!(glob_match(b"/dev/dri/*", b"/dev/dri/renderD128"));
        assert!(glob_match(b"/dev/nvhost-*", b"/dev/nvhost-ctrl-gpu"));
        assert!(glob_match(b"/dev/?ero", b"/dev/zero"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"/a*b*c", b"/axxbyyc"));
        assert!(!glob_match(b"/a*b*c", b"/axxbyy"));
        assert!(!glob_match(b"/dev/rga", b"/dev/rga0"));
    }

    #[test]
    fn defaults_match_device_nodes_and_dmabuf() {
        let p = DevicePatterns::default();
        for dev in [
            "/dev/dri/card0",
            "/dev/video11",
            "/dev/mpp_service",
            "/dev/rga",
            "/dev/nvmap",
            "/dev/dma_heap/system",
            "/dmabuf:",
            "anon_inode:dmabuf",
        ] {
            assert!(p.matches(dev), "{dev}");
        }
        for other in ["/dev/null", "/tmp/x", "socket:[123]", "pipe:[5]"] {
            assert!(!p.matches(other), "{other}");
        }
    }

    #[test]
    fn random_pattern_lists_parse_or_fail_cleanly() {
        let mut rng = crate::fuzz::Rng::new(0xd1e5);
        let tokens = [
            ",", "/dev/", "*", "?", "dmabuf", " ", "video", "\u{0}", "**",
        ];
        let cases = crate::fuzz::cases(20_000);
        let started = std::time::Instant::now();
        for _ in 0..cases {
            let data = rng.mutate(DEFAULT_PATTERNS.as_bytes(), &tokens);
            let text = String::from_utf8_lossy(&data);
            match DevicePatterns::parse(&text) {
                Ok(p) => {
                    // Matching is total: any target, no panic, no runaway.
                    let target =
                        String::from_utf8_lossy(&rng.mutate(b"/dev/video0", &tokens)).into_owned();
                    let _ = p.matches(&target);
                }
                Err(e) => assert!(e.starts_with("device-patterns: '"), "{e}"),
            }
        }
        crate::fuzz::report("device-patterns", cases, started);
    }

    #[test]
    fn pathological_globs_stay_fast() {
        let pattern = "/*a*a*a*a*a*a*a*a*b".as_bytes();
        let text = format!("/{}", "a".repeat(10_000));
        let started = std::time::Instant::now();
        assert!(!glob_match(pattern, text.as_bytes()));
        // Backtracking to the last star only: linear-ish, never exponential.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn bad_entries_are_errors_naming_them() {
        let err = DevicePatterns::parse("/dev/zero,video*").unwrap_err();
        assert!(err.contains("'video*'"), "{err}");
        assert!(err.starts_with("device-patterns:"));
        let p = DevicePatterns::parse(" /dev/zero , ").unwrap();
        assert!(p.matches("/dev/zero"));
        assert!(!p.matches("anon_inode:dmabuf"));
    }
}
