// SPDX-License-Identifier: MPL-2.0
//! Settings as users get them wrong: a FIFO as session-file, a relative
//! lock-dir, a hardware failover encoder, an element that is no encoder.
//! Each is a clear error or WARNING naming the property, never a hang.

mod common;

use common::fake_mpp::FACTORY_NAME as FAKE_ENC;
use common::vpu::Vpu;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const SOURCE: &str =
    "videotestsrc num-buffers=30 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1";

fn fifo_in(dir: &Path) -> PathBuf {
    let path = dir.join("sessions-fifo");
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c_path is a valid NUL-terminated string.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    path
}

/// Runs `description` to EOS and back to NULL on another thread; a hang
/// fails the test by the timeout.
fn run_bounded(description: String) -> common::BusLog {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(common::run_to_eos(&description, TIMEOUT));
    });
    rx.recv_timeout(TIMEOUT + Duration::from_secs(30))
        .expect("the pipeline hung (to EOS, or back to NULL)")
}

#[test]
fn a_fifo_as_session_file_is_unreadable_for_both_guards_not_a_hang() {
    common::init();
    let vpu = Vpu::new("fifo", "");
    let fifo = fifo_in(&vpu.dir);
    for guard in [
        format!(
            "vpuguardenc name=guard hw-encoder={FAKE_ENC} session-file={} lock-dir={}",
            fifo.display(),
            vpu.lock_dir().display()
        ),
        format!(
            "x264enc speed-preset=ultrafast tune=zerolatency ! h264parse ! vpuguarddec name=guard \
             hw-decoder={} session-file={} lock-dir={}",
            common::fake_mpp_dec::FACTORY_NAME,
            fifo.display(),
            vpu.lock_dir().display()
        ),
    ] {
        let log = run_bounded(format!("{SOURCE} ! {guard} ! fakesink"));
        assert!(log.eos && log.errors.is_empty(), "{guard}: {log:#?}");
        let decision = log
            .element_messages
            .iter()
            .find(|s| s.name().ends_with("-decision"))
            .expect("a decision");
        assert_eq!(
            decision.get::<String>("reason").unwrap(),
            "session-file-unreadable"
        );
        assert!(
            log.warnings
                .iter()
                .any(|w| w.contains("FIFO") && w.contains("sessions-fifo")),
            "{guard}: {:#?}",
            log.warnings
        );
    }
    vpu.remove();
}

#[test]
fn leakcheck_with_a_fifo_as_session_file_runs_and_returns_to_null() {
    common::init();
    let dir = common::temp_dir("leakcheck-fifo");
    let fifo = fifo_in(&dir);
    let log = run_bounded(format!(
        "{SOURCE} ! fakesink leakcheck name=check grace=0 session-file={}",
        fifo.display()
    ));
    assert!(log.eos && log.errors.is_empty(), "{log:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_relative_lock_dir_is_refused_naming_it() {
    common::init();
    let log = run_bounded(format!(
        "{SOURCE} ! vpuguardenc lock-dir=run/locks ! fakesink"
    ));
    let errors = log.errors.join("\n");
    assert!(
        errors.contains("lock-dir: 'run/locks' is a relative path"),
        "{errors}"
    );
}

#[test]
fn a_hardware_failover_encoder_is_refused_naming_it() {
    common::init();
    let vpu = Vpu::new("hw-failover", "");
    let log = run_bounded(format!(
        "{SOURCE} ! {} ! fakesink",
        vpu.guard_on(FAKE_ENC, "", &format!("failover-encoder={FAKE_ENC}"))
    ));
    let errors = log.errors.join("\n");
    assert!(
        errors.contains(&format!(
            "failover-encoder: '{FAKE_ENC}' is a hardware encoder"
        )),
        "{errors}"
    );
    vpu.remove();
}

#[test]
fn an_element_that_is_no_encoder_is_an_error_naming_the_property_and_the_element() {
    common::init();
    for (props, named) in [
        (
            "hw-encoder=identity mode=hardware",
            "hw-encoder: 'identity' is not an encoder",
        ),
        (
            "sw-encoder=identity",
            "sw-encoder: 'identity' is not an encoder",
        ),
        (
            "sw-encoder=jpegenc",
            "sw-encoder: 'jpegenc' outputs neither H.264 nor H.265",
        ),
    ] {
        let log = run_bounded(format!(
            "{SOURCE} ! vpuguardenc name=cam {props} ! fakesink"
        ));
        let errors = log.errors.join("\n");
        assert!(
            errors.contains(named) && errors.contains("cam"),
            "{props}: {errors}"
        );
    }
}
