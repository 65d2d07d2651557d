// SPDX-License-Identifier: MPL-2.0
//! The lock directory every guard of a machine shares is a ground no other
//! local user can subvert: a listing snapshot written by another user does not
//! lower the count, nothing planted in the directory is followed or waited
//! on, and a directory another user controls is refused naming `lock-dir`.

mod common;

use common::fake_mpp::{self, FACTORY_NAME as FAKE_ENC};
use common::vpu::Vpu;
use gstedgeguard::vpu::budget::{self, BudgetSettings, Patience};
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
const COUNT_DIR: &str = "EDGEGUARD_COUNT_LOCK_DIR";
const SQUAT_DIR: &str = "EDGEGUARD_SQUAT_LOCK_DIR";
/// A user whose snapshot names uid 65534 squats.
const VICTIM: u32 = 65533;
const NOBODY: u32 = 65534;
const SOURCE: &str =
    "videotestsrc num-buffers=30 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1";

/// The entry point of the processes run as another user (this test binary
/// run again, with SPOOF_DIR or COUNT_DIR set): the spoofer does what any
/// local user could do; the counter counts as a non-root user's guard does.
#[test]
fn child_process_entry() {
    if let (Ok(dir), Ok(key)) = (std::env::var(COUNT_DIR), std::env::var(SPOOF_KEY)) {
        count_once(dir, key);
        return;
    }
    if let (Ok(dir), Ok(key)) = (std::env::var(SQUAT_DIR), std::env::var(SPOOF_KEY)) {
        squat_snapshot_names(Path::new(&dir), &key, VICTIM);
        return;
    }
    let (Ok(dir), Ok(key)) = (std::env::var(SPOOF_DIR), std::env::var(SPOOF_KEY)) else {
        return;
    };
    spoof_snapshots(Path::new(&dir), &key);
}

/// One count of a guard that waits for the decision lock (a new stream),
/// printed as `COUNTED <view> WARNING <warning>` or `ERROR <error>`.
fn count_once(lock_dir: String, session_file: String) {
    gst::init().unwrap();
    let settings = BudgetSettings {
        lock_dir,
        session_file,
        ..Default::default()
    };
    let dir = settings.lock_dir();
    let key = settings.session_file.clone();
    match budget::count(&settings, FAKE_ENC, Patience::LockTimeout, || false) {
        Ok(count) => println!("COUNTED {:?} WARNING {:?}", count.view, count.warning),
        Err(err) => println!("ERROR {err:?}"),
    }
    let kept = snapshot::load(&snapshot::path_in(&dir, &key)).is_some();
    println!("SNAPSHOT {}", if kept { "kept" } else { "none" });
}

/// Takes, as any user can, the names a victim's snapshot would have if
/// they were predictable: the name standing for it, and the names of the
/// file written before the rename for the first writes of pids 1 to 4096.
fn squat_snapshot_names(dir: &Path, key: &str, victim: u32) {
    let stand_in = snapshot::path_of_user(dir, key, victim);
    std::fs::write(&stand_in, "squatted").unwrap();
    let name = stand_in.file_name().unwrap().to_string_lossy().into_owned();
    for pid in 1..=4096 {
        let _ = std::fs::write(dir.join(format!(".{name}.{pid}-0.tmp")), "squatted");
    }
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
        let written = snapshot::store(&mine, &empty).unwrap();
        let bytes = std::fs::read(&written).unwrap();
        let others = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".snapshot") && *p != written);
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
    assert!(!snapshot_files_named_for(&stranger).is_empty());
    vpu.remove();
}

/// The files named as snapshots of what `stand_in` (a name from
/// `snapshot::path_of_user`) stands for: `<stem>.<token>.snapshot`.
fn snapshot_files_named_for(stand_in: &Path) -> Vec<PathBuf> {
    let name = stand_in.file_name().unwrap().to_string_lossy();
    let stem = format!("{}.", name.strip_suffix(".snapshot").unwrap());
    std::fs::read_dir(stand_in.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix(&stem)
                .and_then(|rest| rest.strip_suffix(".snapshot"))
                .is_some_and(|token| !token.is_empty())
        })
        .map(|e| e.path())
        .collect()
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

/// A socket at `path`: nobody, root included, can open it (ENXIO).
fn plant_socket(path: &Path) -> std::os::unix::net::UnixListener {
    std::os::unix::net::UnixListener::bind(path).unwrap()
}

/// What another user plants as `decision.lock` (a link, a socket) only
/// pushes the guard to software, with a WARNING naming `lock-dir` and the
/// file: never an ERROR, and the link is not followed.
#[test]
fn a_link_or_socket_planted_as_the_decision_lock_is_not_followed_and_means_software() {
    common::init();
    let vpu = Vpu::new("planted-lock", "");
    let lock_dir = shared_lock_dir(&vpu);
    let victim = vpu.dir.join("victim");
    std::fs::create_dir(&victim).unwrap();
    let lock_file = lock_dir.join("decision.lock");
    for plant in ["link", "socket"] {
        let _socket = match plant {
            "link" => {
                plant_link(&lock_dir, &victim, "decision.lock");
                None
            }
            _ => Some(plant_socket(&lock_file)),
        };
        let log = run_bounded(format!(
            "{SOURCE} ! {} ! fakesink",
            vpu.guard_on(FAKE_ENC, "", "")
        ));
        assert!(log.errors.is_empty(), "{plant}: {log:#?}");
        let decisions = log.named("vpuguardenc-decision");
        assert_eq!(decisions.len(), 1, "{plant}: {log:#?}");
        assert!(!decisions[0].get::<bool>("hardware").unwrap(), "{plant}");
        let warnings = log.warnings.join("\n");
        assert!(
            warnings.contains(&format!(
                "lock-dir: the VPU decision lock {} in '{}' cannot be used",
                lock_file.display(),
                lock_dir.display()
            )),
            "{plant}: {warnings}"
        );
        std::fs::remove_file(&lock_file).unwrap();
    }
    assert!(is_empty_dir(&victim), "the link's target was created");
    vpu.remove();
}

/// Counts as uid 65534 does, in `vpu`'s lock directory.
fn count_as_nobody(vpu: &Vpu, lock_dir: &Path) -> String {
    count_as(NOBODY, vpu, lock_dir, "COUNTED", "ERROR")
}

/// The line of a count as `uid` in `vpu`'s lock directory that starts with
/// `one` or `other`.
fn count_as(uid: u32, vpu: &Vpu, lock_dir: &Path, one: &str, other: &str) -> String {
    let out = as_user(uid, &vpu.dir)
        .env(COUNT_DIR, lock_dir)
        .env(SPOOF_KEY, &vpu.session_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find(|l| l.starts_with(one) || l.starts_with(other))
        .unwrap_or_else(|| {
            panic!(
                "no count: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

/// Another user who takes first every name a victim's snapshot could have
/// if names were predictable does not stop the victim's guards keeping one
/// (and so opening the kernel's file at most five times a second).
#[test]
fn snapshot_names_squatted_by_another_user_do_not_stop_the_victims_snapshot() {
    common::init();
    if common_euid() != 0 {
        eprintln!("skipped: needs root to run as two other users");
        return;
    }
    let vpu = Vpu::new("squat", &fake_mpp::record(9000, 1, 320, 240, 30, 1));
    let lock_dir = shared_lock_dir(&vpu);
    let key = vpu.session_file.display().to_string();
    let squatted = as_user(NOBODY, &vpu.dir)
        .env(SQUAT_DIR, &lock_dir)
        .env(SPOOF_KEY, &key)
        .status()
        .unwrap();
    assert!(squatted.success());
    let stand_in = snapshot::path_of_user(&lock_dir, &key, VICTIM);
    assert!(stand_in.exists(), "the squatter made nothing");
    let kept = count_as(VICTIM, &vpu, &lock_dir, "SNAPSHOT", "ERROR");
    assert_eq!(kept, "SNAPSHOT kept");
    // The victim's snapshot is the victim's own file.
    let files = snapshot_files_named_for(&stand_in);
    assert_eq!(files.len(), 1, "{files:?}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&files[0]).unwrap().uid(), VICTIM);
    vpu.remove();
}

/// Files of mode 000 another user planted as a slot or as the decision lock
/// (EACCES for a non-root guard) are no ERROR: the slot is not counted, the
/// lock means software with a warning.
#[test]
fn unreadable_files_planted_for_a_non_root_guard_are_no_error() {
    common::init();
    if common_euid() != 0 {
        eprintln!("skipped: needs root to run a guard as another user");
        return;
    }
    let vpu = Vpu::new("unreadable", &fake_mpp::record(9000, 1, 320, 240, 30, 1));
    let lock_dir = shared_lock_dir(&vpu);
    let unreadable = |name: &str| {
        let path = lock_dir.join(name);
        std::fs::write(&path, "pid=1 kind=encoder").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        path
    };
    let slot = unreadable("slot-1-0.lock");
    let counted = count_as_nobody(&vpu, &lock_dir);
    assert!(
        counted.starts_with("COUNTED Counted") && counted.contains("sessions: 1,"),
        "{counted}"
    );
    // Not removed: it is not nobody's to remove.
    assert!(slot.exists());
    std::fs::remove_file(lock_dir.join("decision.lock")).unwrap();
    unreadable("decision.lock");
    let counted = count_as_nobody(&vpu, &lock_dir);
    assert!(
        counted.starts_with("COUNTED LockTimedOut WARNING Some(LockUnusable"),
        "{counted}"
    );
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
    // This user's and root's snapshot: at the names standing for them, and
    // at names shaped as their files (`<stem>.<token>.snapshot`).
    let mut uids = vec![0, common_euid()];
    uids.dedup();
    for uid in uids {
        let snapshot = snapshot::path_of_user(&lock_dir, &key, uid);
        let name = snapshot.file_name().unwrap().to_string_lossy().into_owned();
        plant_link(&lock_dir, &victim, &name);
        let stem = name.strip_suffix(".snapshot").unwrap();
        for digit in ["0", "a"] {
            let token = digit.repeat(16);
            plant_link(&lock_dir, &victim, &format!("{stem}.{token}.snapshot"));
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
    // One that cannot be opened at all (ENXIO).
    let _socket = plant_socket(&lock_dir.join("slot-3-0.lock"));

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
