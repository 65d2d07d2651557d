// SPDX-License-Identifier: MPL-2.0
//! What kind of driver object an fd is, from `/proc/self/fdinfo/<fd>`: a
//! DMABuf names its exporter (`exp_name:`), a DRM node its driver
//! (`drm-driver:`, kernel doc drm-usage-stats). A bare fd number and a
//! `/dmabuf:` target say neither.

/// One line describing the driver behind an fd, or None for a plain file or
/// device node whose fdinfo says nothing more.
pub fn classify(fdinfo: &str) -> Option<String> {
    let field = |name: &str| {
        fdinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    if let Some(exporter) = field("exp_name") {
        let size = field("size").and_then(|s| s.parse::<u64>().ok());
        return Some(match size {
            Some(size) => format!("DMABuf exported by {exporter}, {size} bytes"),
            None => format!("DMABuf exported by {exporter}"),
        });
    }
    let driver = field("drm-driver")?;
    Some(match field("drm-client-id") {
        Some(client) => format!("DRM driver {driver}, client {client}"),
        None => format!("DRM driver {driver}"),
    })
}

/// The classification of one of this process's fds, read now.
pub fn classify_fd(fd: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    classify(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dmabuf_names_its_exporter_and_size() {
        let info = "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1234\nsize:\t4147200\n\
                    count:\t3\nexp_name:\tmpp\n";
        assert_eq!(
            classify(info).as_deref(),
            Some("DMABuf exported by mpp, 4147200 bytes")
        );
        assert_eq!(
            classify("exp_name: udmabuf\n").as_deref(),
            Some("DMABuf exported by udmabuf")
        );
    }

    #[test]
    fn drm_node_names_its_driver_and_client() {
        let info = "pos:\t0\nflags:\t02100002\nmnt_id:\t26\ndrm-driver:\ti915\n\
                    drm-pdev:\t0000:00:02.0\ndrm-client-id:\t7\ndrm-engine-render:\t9288864 ns\n";
        assert_eq!(classify(info).as_deref(), Some("DRM driver i915, client 7"));
        assert_eq!(
            classify("drm-driver: rknpu\n").as_deref(),
            Some("DRM driver rknpu")
        );
    }

    #[test]
    fn plain_files_say_nothing() {
        assert_eq!(
            classify("pos:\t0\nflags:\t0100000\nmnt_id:\t22\nino:\t9\n"),
            None
        );
        assert_eq!(classify(""), None);
        // A value-less or malformed line is not a field.
        assert_eq!(classify("exp_name\ndrm-driver\n"), None);
    }

    #[test]
    fn a_real_fd_of_this_process_is_read() {
        let file = std::fs::File::open("/dev/zero").unwrap();
        use std::os::fd::AsRawFd;
        // /dev/zero is neither a DMABuf nor a DRM node, but its fdinfo exists.
        assert!(std::path::Path::new(&format!("/proc/self/fdinfo/{}", file.as_raw_fd())).exists());
        assert_eq!(classify_fd(file.as_raw_fd()), None);
        assert_eq!(classify_fd(-1), None);
    }
}
