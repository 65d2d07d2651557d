// SPDX-License-Identifier: MPL-2.0
//! The lock directory every guard of a machine shares is a ground no other
//! local user can subvert: a listing snapshot written by another user does not
//! lower the count, nothing planted in the directory is followed or waited
//! on, and a directory another user controls is refused naming `lock-dir`.

mod common;

use common::fake_mpp::{self, FACTORY_NAME as FAKE_ENC};
use common::vpu::Vpu;
use gstedgeguard::vpu::snapshot::{self, Snapshot};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const SPOOF_DIR: &str = "EDGEGUARD_SPOOF_LOCK_DIR";
const SPOOF_KEY: &str = "EDGEGUARD_SPOOF_SESSION_FILE";
const NOBODY: u32 = 65534;
const SOURCE: &str =
    "videotestsrc num-buffers=30 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1";

/// The entry point of the spoofing process (this test binary run again as
/// another user, with SPOOF_DIR set): it does what any local user could do.
#[test]
fn child_process_entry() {
    let (Ok(dir), Ok(key)) = (std::env::var(SPOOF_DIR), std::env::var(SPOOF_KEY)) else {
        return;
    };
    spoof_snapshots(Path::new(&dir), &key);
}

/// Every 10 ms, a fresh snapshot of an empty listing, by every means another
/// user has: its own snapshot file, written by the plugin's own code, and the
/// same bytes written into (or created at) every other snapshot name there.
fn spoof_snapshots(dir: &Path, key: &str) -> ! {
    let mine = snapshot::path_in(dir, key);
    let root = snapshot::path_of_user(dir, key, 0);
    let mut said = false;
    loop {
        let empty = Snapshot {
            read_at: snapshot::boottime(),
            path: PathBuf::from(key),
            text: String::new(),
        };
        snapshot::store(&mine, &empty).unwrap();
        let bytes = std::fs::read(&mine).unwrap();
        let others = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".snapshot") && *p != mine);
        for other in others.chain([root.clone()]) {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&other)
                .and_then(|mut f| {
                    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o666));
                    f.write_all(&bytes)
                });
        }
        if !said {
            println!("SPOOFING");
            std::io::stdout().flush().unwrap();
            said = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// This test binary, copied where `uid` can run it, run as `uid`.
fn as_user(uid: u32, dir: &Path) -> Command {
    let exe = dir.join("vpu-ground-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = Command::new("setpriv");
    command
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "--",
        ])
        .arg(&exe)
        .args(["--exact", "child_process_entry", "--nocapture"])
        .env("HOME", dir);
    command
}

/// The spoofer runs until killed, also when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A lock directory as a distribution would make it: root's, mode 1777.
fn shared_lock_dir(vpu: &Vpu) -> PathBuf {
    let dir = vpu.lock_dir();
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// Runs `description` to EOS (or an error) on another thread; a hang fails
/// the test by the timeout.
fn run_bounded(description: String) -> common::BusLog {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(common::run_to_eos(&description, TIMEOUT));
    });
    rx.recv_timeout(TIMEOUT + Duration::from_secs(30))
        .expect("the pipeline hung (to EOS, or back to NULL)")
}

/// The one decision a guard of `description` posted: (hardware, sessions,
/// reason).
fn decision(description: String) -> (bool, u32, String) {
    let log = run_bounded(description);
    assert!(log.errors.is_empty(), "{log:#?}");
    let decisions = log.named("vpuguardenc-decision");
    assert_eq!(decisions.len(), 1, "{log:#?}");
    let d = decisions[0];
    (
        d.get("hardware").unwrap(),
        d.get("sessions").unwrap(),
        d.get("reason").unwrap(),
    )
}

fn four_foreign_sessions() -> String {
    (0..4)
        .map(|i| fake_mpp::record(9000 + i, u64::from(i) + 1, 1920, 1080, 30, 4_000_000))
        .collect()
}

#[test]
fn a_snapshot_spoofed_by_another_user_does_not_lower_the_count() {
    common::init();
    let vpu = Vpu::new("spoof", &four_foreign_sessions());
    let lock_dir = shared_lock_dir(&vpu);
    let key = vpu.session_file.display().to_string();
    let mut spoofer = KillOnDrop(
        as_user(NOBODY, &vpu.dir)
            .env(SPOOF_DIR, &lock_dir)
            .env(SPOOF_KEY, &key)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut said = String::new();
    let mut out = BufReader::new(spoofer.0.stdout.take().unwrap());
    while !said.contains("SPOOFING") {
        said.clear();
        assert!(out.read_line(&mut said).unwrap() > 0, "the spoofer died");
    }
    // Several decisions while the spoofer keeps its snapshots fresh: the
    // first reads the listing, the later ones may reuse a snapshot.
    for _ in 0..3 {
        let got = decision(format!(
            "{SOURCE} ! {} ! fakesink",
            vpu.guard_on(FAKE_ENC, "", "max-sessions=4")
        ));
        assert_eq!(got, (false, 4, "over-budget".to_string()));
    }
    drop(spoofer);
    // The spoof did land in the directory: another user's snapshot is there.
    let stranger = snapshot::path_of_user(&lock_dir, &key, NOBODY);
    assert!(stranger.exists());
    vpu.remove();
}

/// Plants, at `name` in `dir`, a link to `victim/name` (which does not exist).
fn plant_link(dir: &Path, victim: &Path, name: &str) {
    std::os::unix::fs::symlink(victim.join(name), dir.join(name)).unwrap();
}

fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c_path is a valid NUL-terminated string.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o666) }, 0);
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn a_link_planted_as_the_decision_lock_is_not_followed() {
    common::init();
    let vpu = Vpu::new("planted-lock", "");
    let lock_dir = shared_lock_dir(&vpu);
    let victim = vpu.dir.join("victim");
    std::fs::create_dir(&victim).unwrap();
    plant_link(&lock_dir, &victim, "decision.lock");
    let log = run_bounded(format!(
        "{SOURCE} ! {} ! fakesink",
        vpu.guard_on(FAKE_ENC, "", "")
    ));
    let errors = log.errors.join("\n");
    assert!(
        errors.contains(&format!("lock-dir: cannot use '{}'", lock_dir.display())),
        "{errors}"
    );
    assert!(is_empty_dir(&victim), "the link's target was created");
    vpu.remove();
}

#[test]
fn links_and_fifos_planted_as_slots_and_snapshots_are_not_followed_nor_counted() {
    common::init();
    let vpu = Vpu::new("planted-files", &fake_mpp::record(9000, 1, 320, 240, 30, 1));
    let lock_dir = shared_lock_dir(&vpu);
    let victim = vpu.dir.join("victim");
    std::fs::create_dir(&victim).unwrap();
    let key = vpu.session_file.display().to_string();
    // This user's and root's snapshot, and the file written before the
    // rename, at the names this process gives them first.
    let mut uids = vec![0, common_euid()];
    uids.dedup();
    for uid in uids {
        let snapshot = snapshot::path_of_user(&lock_dir, &key, uid);
        let name = snapshot.file_name().unwrap().to_string_lossy().into_owned();
        plant_link(&lock_dir, &victim, &name);
        for n in 0..16 {
            plant_link(
                &lock_dir,
                &victim,
                &format!(".{name}.{}-{n}.tmp", std::process::id()),
            );
        }
    }
    // The slots this process takes first.
    for n in 0..16 {
        plant_link(
            &lock_dir,
            &victim,
            &format!("slot-{}-{n}.lock", std::process::id()),
        );
    }
    // Other processes' "slots" a counter would block on.
    let fifo = victim.join("fifo");
    mkfifo(&fifo);
    std::os::unix::fs::symlink(&fifo, lock_dir.join("slot-1-0.lock")).unwrap();
    mkfifo(&lock_dir.join("slot-2-0.lock"));

    let got = decision(format!(
        "{SOURCE} ! {} ! fakesink",
        vpu.guard_on(FAKE_ENC, "", "max-sessions=4")
    ));
    // The one listed session; nothing planted counts.
    assert_eq!(got, (true, 1, "budget".to_string()));
    let in_victim: Vec<_> = std::fs::read_dir(&victim)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(in_victim, vec![std::ffi::OsString::from("fifo")]);
    vpu.remove();
}

fn common_euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The error a guard of each kind posts for `lock_dir`.
fn lock_dir_errors(vpu: &Vpu) -> Vec<String> {
    [
        format!("{SOURCE} ! {} ! fakesink", vpu.guard_on(FAKE_ENC, "", "")),
        format!(
            "{SOURCE} ! x264enc speed-preset=ultrafast tune=zerolatency ! h264parse ! {} ! fakesink",
            vpu.decoder_guard("", "")
        ),
    ]
    .into_iter()
    .map(|description| run_bounded(description).errors.join("\n"))
    .collect()
}

#[test]
fn a_lock_dir_owned_by_another_user_is_refused_naming_it() {
    common::init();
    if common_euid() != 0 {
        eprintln!("skipped: only root can give a directory away");
        return;
    }
    let vpu = Vpu::new("foreign-lock-dir", "");
    let lock_dir = shared_lock_dir(&vpu);
    std::os::unix::fs::chown(&lock_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    for errors in lock_dir_errors(&vpu) {
        assert!(
            errors.contains(&format!("lock-dir: cannot use '{}'", lock_dir.display()))
                && errors.contains(&format!("owned by uid {NOBODY}")),
            "{errors}"
        );
    }
    // Nothing was created in it.
    assert!(is_empty_dir(&lock_dir));
    vpu.remove();
}

#[test]
fn a_lock_dir_anyone_can_write_without_the_sticky_bit_is_refused_naming_it() {
    common::init();
    let vpu = Vpu::new("open-lock-dir", "");
    let lock_dir = shared_lock_dir(&vpu);
    std::fs::set_permissions(&lock_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    for errors in lock_dir_errors(&vpu) {
        assert!(
            errors.contains(&format!("lock-dir: cannot use '{}'", lock_dir.display()))
                && errors.contains("without the sticky bit"),
            "{errors}"
        );
    }
    assert!(is_empty_dir(&lock_dir));
    // With the sticky bit, as /run/lock and /tmp have it, it is shared.
    std::fs::set_permissions(&lock_dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (hardware, _, _) = decision(format!(
        "{SOURCE} ! {} ! fakesink",
        vpu.guard_on(FAKE_ENC, "", "")
    ));
    assert!(hardware);
    vpu.remove();
}
