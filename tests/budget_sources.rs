// SPDX-License-Identifier: MPL-2.0
//! The budget sources beside the MPP listing, each read under a fake root
//! (`EDGEGUARD_ROOT`) that stands for the machine's `/`: the guards run in
//! a child process of this test binary, whose environment names the root.

mod common;

use common::fake_mpp::FACTORY_NAME as FAKE_ENC;
use gst::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CHILD_LAUNCH: &str = "EDGEGUARD_SOURCES_LAUNCH";
const TIMEOUT: Duration = Duration::from_secs(60);

/// The entry point of the child processes: runs the launch line it is given
/// to EOS and prints each guard's decision and how many encoder doubles
/// were created.
#[test]
fn child_process_entry() {
    let Ok(launch) = std::env::var(CHILD_LAUNCH) else {
        return;
    };
    common::init();
    register_named_doubles();
    install_stepped_clock();
    let log = common::run_to_eos(&launch, TIMEOUT);
    assert!(log.errors.is_empty(), "{:?}", log.errors);
    for warning in &log.warnings {
        println!("WARNING {}", warning.replace('\n', " "));
    }
    for decision in log
        .element_messages
        .iter()
        .filter(|s| s.name().ends_with("-decision"))
    {
        println!("DECISION {decision}");
    }
    println!(
        "CREATED {}",
        common::fake_mpp::CREATED.load(std::sync::atomic::Ordering::SeqCst)
    );
}

/// Hardware children named as the `va` and `v4l2` plugins name the
/// elements of a machine's second and further devices, each the encoder
/// double under another name: `budget-source=auto` picks their source and
/// device from the name, as it would the real element's.
const NAMED_DOUBLES: [&str; 4] = [
    "varenderD128h264enc",
    "varenderD129h264enc",
    "v4l2video10h264enc",
    "v4l2video11h264enc",
];

fn register_named_doubles() {
    let double = gst::ElementFactory::find(FAKE_ENC)
        .unwrap()
        .load()
        .unwrap()
        .element_type();
    for name in NAMED_DOUBLES {
        gst::Element::register(None, name, gst::Rank::NONE, double).unwrap();
    }
}

/// What a child saw: its decisions and the encoder doubles it created.
struct ChildRun {
    decisions: Vec<gst::Structure>,
    warnings: Vec<String>,
    created: u32,
}

impl ChildRun {
    fn only(&self) -> &gst::Structure {
        assert_eq!(self.decisions.len(), 1, "{:?}", self.decisions);
        &self.decisions[0]
    }

    fn field(&self, name: &str) -> String {
        let value = self.only().value(name).unwrap();
        value
            .get::<String>()
            .or_else(|_| value.serialize().map(|s| s.to_string()))
            .unwrap()
    }
}

/// Runs `launch` in a child process whose `EDGEGUARD_ROOT` is `root`.
fn run_under(root: &Path, launch: &str) -> ChildRun {
    run_under_with(root, launch, &[])
}

/// As `run_under`, with more environment for the child.
fn run_under_with(root: &Path, launch: &str, env: &[(&str, &str)]) -> ChildRun {
    common::init();
    let output = common::child_process()
        .env(CHILD_LAUNCH, launch)
        .env("EDGEGUARD_ROOT", root)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decisions = stdout
        .lines()
        // The harness may print the test's name on the same line.
        .filter_map(|l| Some(&l[l.find("DECISION ")? + "DECISION ".len()..]))
        .map(|s| s.parse().unwrap())
        .collect();
    let warnings = stdout
        .lines()
        .filter_map(|l| Some(l[l.find("WARNING ")? + "WARNING ".len()..].to_string()))
        .collect();
    let created = stdout
        .lines()
        .find_map(|l| Some(&l[l.find("CREATED ")? + "CREATED ".len()..]))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    ChildRun {
        decisions,
        warnings,
        created,
    }
}

/// A stream of `frames` small frames into `guard`.
fn encode_with(guard: &str) -> String {
    format!(
        "videotestsrc num-buffers=5 ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
         ! {guard} ! fakesink"
    )
}

/// A fresh fake root, with its lock directory and the double's own
/// session file beside it.
struct FakeRoot {
    dir: PathBuf,
}

impl FakeRoot {
    fn new(name: &str) -> Self {
        FakeRoot {
            dir: common::temp_dir(name),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// Writes `text` at `path` (absolute on the machine) under the root.
    fn write(&self, path: &str, text: &str) {
        let file = self.root().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }

    /// A vpuguardenc on the encoder double with `extra` guard properties;
    /// the double's sessions go to a file outside the root.
    fn guard(&self, extra: &str) -> String {
        self.guard_on(FAKE_ENC, extra)
    }

    /// As `guard`, the double registered as factory `hw`.
    fn guard_on(&self, hw: &str, extra: &str) -> String {
        format!(
            "vpuguardenc hw-encoder={hw} lock-dir={ld} \
             hw-properties=\"props,session-file={sf}\" {extra}",
            ld = self.dir.join("lock").display(),
            sf = self.dir.join("double-sessions").display(),
        )
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mpp_records(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "session: pid={} index={i}\n device: fdbd0000.rkvenc-core\n",
                90000 + i
            )
        })
        .collect()
}

#[test]
fn the_mpp_default_listing_is_read_under_the_root() {
    let fake = FakeRoot::new("mpp-root");
    fake.write("/proc/mpp_service/sessions-summary", &mpp_records(6));
    let run = run_under(&fake.root(), &encode_with(&fake.guard("budget-source=mpp")));
    assert_eq!(run.field("reason"), "over-budget");
    assert_eq!(run.field("sessions"), "6");
    assert_eq!(
        run.field("session-file"),
        fake.root()
            .join("proc/mpp_service/sessions-summary")
            .display()
            .to_string()
    );
}

/// The driver's per-core load once `load_interval` is set: an encoder core
/// and a decoder core busy `encoder` and `decoder` percent.
fn mpp_core_load(encoder: u32, decoder: u32) -> String {
    format!(
        "fdbd0000.rkvenc-core      load:  {encoder:3}.00% utilization:  {encoder:3}.00%\n\
         fdbe0000.rkvenc-core      load:    1.00% utilization:    1.00%\n\
         fdc38100.rkvdec-core      load:  {decoder:3}.00% utilization:  {decoder:3}.00%\n"
    )
}

#[test]
fn an_mpp_encoder_core_busy_90_percent_is_over_load() {
    let fake = FakeRoot::new("mpp-load");
    fake.write("/proc/mpp_service/sessions-summary", &mpp_records(1));
    fake.write("/proc/mpp_service/load", &mpp_core_load(90, 10));
    let guard = fake.guard("budget-source=mpp max-load=80");
    let run = run_under(&fake.root(), &encode_with(&guard));
    assert_eq!(run.field("reason"), "over-load", "{:?}", run.decisions);
    assert_eq!(run.field("load"), "90");
    assert_eq!(run.field("hardware"), "false");
    // A busy decoder core leaves an encoder room.
    let fake = FakeRoot::new("mpp-load-dec");
    fake.write("/proc/mpp_service/sessions-summary", &mpp_records(1));
    fake.write("/proc/mpp_service/load", &mpp_core_load(10, 90));
    let guard = fake.guard("budget-source=mpp max-load=80");
    let run = run_under(&fake.root(), &encode_with(&guard));
    assert_eq!(run.field("reason"), "budget", "{:?}", run.decisions);
    assert_eq!(run.field("load"), "10");
}

#[test]
fn an_mpp_load_file_without_load_interval_measures_no_load() {
    let fake = FakeRoot::new("mpp-load-unset");
    fake.write("/proc/mpp_service/sessions-summary", &mpp_records(1));
    fake.write(
        "/proc/mpp_service/load",
        "please set load_interval first!!!\ne.g. set 1000ms to load_interval:\n\
         echo 1000 > /proc/mpp_service/load_interval\n",
    );
    let run = run_under(
        &fake.root(),
        &encode_with(&fake.guard("budget-source=mpp max-load=80")),
    );
    assert_eq!(run.field("reason"), "budget", "{:?}", run.decisions);
    assert_eq!(run.field("load"), "-1");
}

#[test]
fn an_explicit_session_file_means_the_mpp_listing_whatever_the_child_is_called() {
    let fake = FakeRoot::new("explicit-listing");
    let listing = fake.dir.join("listing");
    std::fs::write(&listing, mpp_records(6)).unwrap();
    // The double's name calls for no source: auto alone would count slots.
    let guard = fake.guard(&format!("session-file={}", listing.display()));
    let run = run_under(&fake.root(), &encode_with(&guard));
    assert_eq!(run.field("budget-source"), "mpp");
    assert_eq!(run.field("reason"), "over-budget");
    assert_eq!(run.field("load"), "-1");
    let run = run_under(&fake.root(), &encode_with(&fake.guard("")));
    assert_eq!(run.field("budget-source"), "slots");
    assert_eq!(run.field("reason"), "budget");
}

/// Three guards of one lock directory, in this order: a `slots` one that
/// takes the hardware, then an `mpp` one over an empty listing and a second
/// `slots` one, both with room for one session.
#[test]
fn each_budget_counts_only_its_own_slots() {
    common::init();
    let fake = FakeRoot::new("own-slots");
    let listing = fake.dir.join("listing");
    std::fs::write(&listing, "").unwrap();
    let branch = |name: &str, extra: &str| {
        format!(
            "videotestsrc num-buffers=30 ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
             ! {} name={name} ! fakesink",
            fake.guard(&format!("max-sessions=1 {extra}"))
        )
    };
    let pipeline = gst::Pipeline::new();
    let first =
        gst::parse::bin_from_description(&branch("first", "budget-source=slots"), false).unwrap();
    pipeline.add(&first).unwrap();
    pipeline.set_state(gst::State::Paused).unwrap();
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(60));
    result.unwrap();
    for (name, extra) in [
        ("mpp", format!("session-file={}", listing.display())),
        ("second", "budget-source=slots".to_string()),
    ] {
        let bin = gst::parse::bin_from_description(&branch(name, &extra), false).unwrap();
        pipeline.add(&bin).unwrap();
        bin.sync_state_with_parent().unwrap();
    }
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(60));
    result.unwrap();
    let hardware = |name: &str| pipeline.by_name(name).unwrap().property::<bool>("hardware");
    assert!(hardware("first"));
    assert!(hardware("mpp"), "a slots budget's slot counted against mpp");
    assert!(
        !hardware("second"),
        "the slots budget's own slot not counted"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

/// The fake DRM clients of a child's root, one per line: `pid driver
/// percent`. Set, the child stamps the drm source's scans with a
/// `SteppedClock` over them.
const CHILD_DRM_CLIENTS: &str = "EDGEGUARD_SOURCES_DRM_CLIENTS";
/// Where the stepped clock starts: some engine time before the guard looks.
const CLOCK_START: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Driver {
    I915,
    Xe,
}

/// A DRM client in the fake root: process `pid` holds a render node on fd 5,
/// whose video engine has been busy `percent` of the time up to `at` (i915:
/// ns against the clock; xe: cycles against its total cycles). An i915
/// client is on device A (renderD128, 0000:00:02.0), an xe one on device B
/// (renderD129, 0000:03:00.0).
#[derive(Clone, Copy, Debug)]
struct DrmClient {
    pid: u32,
    driver: Driver,
    percent: u64,
}

impl DrmClient {
    fn parse(line: &str) -> Self {
        let fields: Vec<&str> = line.split_whitespace().collect();
        DrmClient {
            pid: fields[0].parse().unwrap(),
            driver: if fields[1] == "xe" {
                Driver::Xe
            } else {
                Driver::I915
            },
            percent: fields[2].parse().unwrap(),
        }
    }

    fn line(&self) -> String {
        let driver = if self.driver == Driver::Xe {
            "xe"
        } else {
            "i915"
        };
        format!("{} {driver} {}\n", self.pid, self.percent)
    }

    fn create(&self, root: &Path) {
        let dir = root.join(format!("proc/{}", self.pid));
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        std::fs::create_dir_all(dir.join("fdinfo")).unwrap();
        let node = match self.driver {
            Driver::I915 => DEVICE_A.0,
            Driver::Xe => DEVICE_B.0,
        };
        std::os::unix::fs::symlink(node, dir.join("fd/5")).unwrap();
        self.write(root, CLOCK_START);
    }

    /// The client's fdinfo as it reads at `at`.
    fn write(&self, root: &Path, at: Duration) {
        let (pid, elapsed) = (self.pid, at.as_nanos());
        let busy = elapsed * u128::from(self.percent) / 100;
        let text = match self.driver {
            Driver::I915 => format!(
                "pos:\t0\nflags:\t02100002\ndrm-driver:\ti915\ndrm-client-id:\t{pid}\n\
                 drm-pdev:\t0000:00:02.0\ndrm-engine-render:\t0 ns\n\
                 drm-engine-video:\t{busy} ns\ndrm-engine-video-enhance:\t0 ns\n"
            ),
            Driver::Xe => format!(
                "pos:\t0\ndrm-driver:\txe\ndrm-client-id:\t{pid}\ndrm-pdev:\t0000:03:00.0\n\
                 drm-cycles-vcs:\t{busy}\ndrm-total-cycles-vcs:\t{elapsed}\n\
                 drm-engine-capacity-vcs:\t1\n"
            ),
        };
        std::fs::write(root.join(format!("proc/{pid}/fdinfo/5")), text).unwrap();
    }
}

/// How far the stepped clock moves at each look.
const CLOCK_STEP: Duration = Duration::from_millis(100);

/// The drm source's clock in a child: time moves `CLOCK_STEP` each time a
/// scan looks at it (a scan looks once, before it reads), and the clients'
/// engines move with it, so the busy fraction the guard measures between
/// its readings (the scan taken at NULL->READY, then the decision's) is
/// exact however slowly threads run.
struct SteppedClock {
    root: PathBuf,
    clients: Vec<DrmClient>,
    now: std::sync::Mutex<Duration>,
}

impl gstedgeguard::vpu::drm::Sampler for SteppedClock {
    fn now(&self) -> Duration {
        let mut now = self.now.lock().unwrap();
        *now += CLOCK_STEP;
        for client in &self.clients {
            client.write(&self.root, *now);
        }
        *now
    }
}

/// In a child whose parent named fake DRM clients: their stepped clock.
fn install_stepped_clock() {
    let Ok(spec) = std::env::var(CHILD_DRM_CLIENTS) else {
        return;
    };
    let clock = SteppedClock {
        root: PathBuf::from(std::env::var("EDGEGUARD_ROOT").unwrap()),
        clients: spec.lines().map(DrmClient::parse).collect(),
        now: std::sync::Mutex::new(CLOCK_START),
    };
    assert!(gstedgeguard::vpu::drm::set_sampler(std::sync::Arc::new(
        clock
    )));
}

/// The fake root's two render devices: node and PCI slot.
const DEVICE_A: (&str, &str) = ("/dev/dri/renderD128", "0000:00:02.0");
const DEVICE_B: (&str, &str) = ("/dev/dri/renderD129", "0000:03:00.0");

/// The render node `node` of PCI device `pdev`, as /dev and sysfs show it.
fn render_device(fake: &FakeRoot, (node, pdev): (&str, &str)) {
    fake.write(node, "");
    let name = Path::new(node).file_name().unwrap().to_str().unwrap();
    let class = fake.root().join(format!("sys/class/drm/{name}"));
    std::fs::create_dir_all(&class).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../devices/pci0000:00/{pdev}"),
        class.join("device"),
    )
    .unwrap();
}

/// The decision of a `drm` guard `guard` (made with `FakeRoot::guard` or
/// `guard_on`, `max-load=80`) with `clients` on the root's two devices.
fn drm_decision(name: &str, clients: &[(Driver, u64)]) -> ChildRun {
    drm_decision_of(name, clients, |fake| {
        fake.guard("budget-source=drm max-load=80")
    })
}

fn drm_decision_of(
    name: &str,
    clients: &[(Driver, u64)],
    guard: impl Fn(&FakeRoot) -> String,
) -> ChildRun {
    let fake = FakeRoot::new(name);
    std::fs::create_dir_all(fake.root().join("proc")).unwrap();
    render_device(&fake, DEVICE_A);
    render_device(&fake, DEVICE_B);
    let clients: Vec<DrmClient> = clients
        .iter()
        .enumerate()
        .map(|(i, &(driver, percent))| DrmClient {
            pid: 7000 + i as u32,
            driver,
            percent,
        })
        .collect();
    for client in &clients {
        client.create(&fake.root());
    }
    let spec: String = clients.iter().map(DrmClient::line).collect();
    run_under_with(
        &fake.root(),
        &encode_with(&guard(&fake)),
        &[(CHILD_DRM_CLIENTS, spec.as_str())],
    )
}

fn load_of(run: &ChildRun) -> i32 {
    run.only().get::<i32>("load").unwrap()
}

#[test]
fn an_i915_video_engine_busy_90_percent_of_the_time_is_over_load() {
    let run = drm_decision("drm-i915-busy", &[(Driver::I915, 90)]);
    assert_eq!(run.field("budget-source"), "drm");
    assert_eq!(run.field("reason"), "over-load", "{:?}", run.decisions);
    assert_eq!(load_of(&run), 90, "{:?}", run.decisions);
}

#[test]
fn an_xe_video_engine_busy_90_percent_of_its_cycles_is_over_load() {
    let run = drm_decision_of("drm-xe-busy", &[(Driver::Xe, 90)], |fake| {
        fake.guard_on("varenderD129h264enc", "max-load=80")
    });
    assert_eq!(run.field("reason"), "over-load", "{:?}", run.decisions);
    assert_eq!(load_of(&run), 90);
}

#[test]
fn video_engines_busy_10_percent_of_the_time_leave_room_for_hardware() {
    let run = drm_decision("drm-idle", &[(Driver::I915, 10), (Driver::Xe, 10)]);
    assert_eq!(run.field("reason"), "budget", "{:?}", run.decisions);
    assert_eq!(run.field("hardware"), "true");
    // A child whose device is not known counts the first render device.
    assert_eq!(run.field("sessions"), "1");
    assert_eq!(load_of(&run), 10, "{:?}", run.decisions);
}

/// Device B's engine is 90% busy, device A's 10%: a guard whose hardware
/// child is on A has room, one on B has none.
#[test]
fn a_drm_budget_counts_only_the_clients_and_load_of_its_render_device() {
    let clients = [(Driver::I915, 10), (Driver::Xe, 90)];
    let on = |hw: &'static str| move |fake: &FakeRoot| fake.guard_on(hw, "max-load=80");
    let a = drm_decision_of("drm-device-a", &clients, on("varenderD128h264enc"));
    assert_eq!(a.field("budget-source"), "drm");
    assert_eq!(a.field("reason"), "budget", "{:?}", a.decisions);
    assert_eq!(a.field("hardware"), "true");
    assert_eq!((a.field("sessions").as_str(), load_of(&a)), ("1", 10));
    let b = drm_decision_of("drm-device-b", &clients, on("varenderD129h264enc"));
    assert_eq!(b.field("reason"), "over-load", "{:?}", b.decisions);
    assert_eq!(b.field("hardware"), "false");
    assert_eq!((b.field("sessions").as_str(), load_of(&b)), ("1", 90));
}

/// Two guards on device A and one on device B, one session each: A's
/// second guard finds A's slot taken, B's guard does not count it.
#[test]
fn a_slot_on_one_render_device_does_not_count_against_another() {
    let fake = FakeRoot::new("drm-slots-per-device");
    std::fs::create_dir_all(fake.root().join("proc")).unwrap();
    render_device(&fake, DEVICE_A);
    render_device(&fake, DEVICE_B);
    let branch = |hw: &str| {
        format!(
            "videotestsrc num-buffers=5 ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
             ! {} ! fakesink",
            fake.guard_on(hw, "max-sessions=1")
        )
    };
    let launch = [
        "varenderD128h264enc",
        "varenderD129h264enc",
        "varenderD128h264enc",
    ]
    .map(branch)
    .join(" ");
    let run = run_under(&fake.root(), &launch);
    let on = |factory: &str| {
        run.decisions
            .iter()
            .filter(|d| d.get::<String>("encoder").unwrap() == factory)
            .count()
    };
    assert_eq!(run.decisions.len(), 3, "{:?}", run.decisions);
    assert_eq!(on("varenderD129h264enc"), 1, "{:?}", run.decisions);
    assert_eq!(on("varenderD128h264enc"), 1, "{:?}", run.decisions);
    let refused: Vec<_> = run
        .decisions
        .iter()
        .filter(|d| !d.get::<bool>("hardware").unwrap())
        .map(|d| d.get::<String>("reason").unwrap())
        .collect();
    assert_eq!(refused, ["over-budget"], "{:?}", run.decisions);
}

#[test]
fn a_drm_source_that_can_read_no_process_is_said_in_the_decision() {
    let fake = FakeRoot::new("drm-nothing");
    std::fs::create_dir_all(fake.root().join("proc")).unwrap();
    let run = run_under(
        &fake.root(),
        &encode_with(&fake.guard("budget-source=drm max-load=80")),
    );
    assert_eq!(run.field("budget-source"), "drm");
    assert_eq!(run.field("reason"), "session-file-unreadable");
    assert_eq!(run.field("load"), "-1");
    // The WARNING names the source and what it tried to read.
    let said = format!(
        "budget-source=drm: No process's DRM usage stats (fdinfo) under '{}' are readable",
        fake.root().join("proc").display()
    );
    assert!(
        run.warnings.iter().any(|w| w.contains(&said)),
        "{:?}",
        run.warnings
    );
}

#[test]
fn a_v4l2_source_without_a_codec_node_says_so_naming_the_source() {
    let fake = FakeRoot::new("v4l2-nothing");
    fake.write("/sys/class/video4linux/video0/name", "HD Pro Webcam C920\n");
    let run = run_under(
        &fake.root(),
        &encode_with(&fake.guard("budget-source=v4l2")),
    );
    assert_eq!(run.field("reason"), "session-file-unreadable");
    let said = format!(
        "budget-source=v4l2: No V4L2 codec device or its holders are readable under '{}'",
        fake.root().join("sys/class/video4linux").display()
    );
    assert!(
        run.warnings.iter().any(|w| w.contains(&said)),
        "{:?}",
        run.warnings
    );
    assert!(
        run.warnings.iter().all(|w| !w.contains("MPP")),
        "{:?}",
        run.warnings
    );
}

/// Process `pid` of the fake root holds `target` on fd `fd`.
fn hold(root: &Path, pid: u32, fd: u32, target: &str) {
    let dir = root.join(format!("proc/{pid}/fd"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(target, dir.join(fd.to_string())).unwrap();
}

#[test]
fn a_jetson_without_nvenc_is_software_without_the_encoder_ever_created() {
    let fake = FakeRoot::new("jetson-nano");
    fake.write("/dev/v4l2-nvdec", "");
    std::fs::create_dir_all(fake.root().join("proc")).unwrap();
    let run = run_under(
        &fake.root(),
        &encode_with(&fake.guard("budget-source=jetson")),
    );
    assert_eq!(run.field("reason"), "no-hw-encoder", "{:?}", run.decisions);
    assert_eq!(run.field("hardware"), "false");
    assert_eq!(run.created, 0, "the hardware encoder was created");
}

#[test]
fn a_jetson_counts_the_holders_of_its_encoder_node() {
    let fake = FakeRoot::new("jetson-nx");
    fake.write("/dev/v4l2-nvenc", "");
    fake.write("/dev/v4l2-nvdec", "");
    hold(&fake.root(), 9001, 7, "/dev/v4l2-nvenc");
    hold(&fake.root(), 9002, 7, "/dev/v4l2-nvdec");
    let run = run_under(
        &fake.root(),
        &encode_with(&fake.guard("budget-source=jetson max-sessions=2")),
    );
    assert_eq!(run.field("budget-source"), "jetson");
    assert_eq!(run.field("sessions"), "2");
    assert_eq!(run.field("reason"), "over-budget", "{:?}", run.decisions);
    let run = run_under(
        &fake.root(),
        &encode_with(&fake.guard("budget-source=jetson max-sessions=3")),
    );
    assert_eq!(run.field("reason"), "budget", "{:?}", run.decisions);
}

#[test]
fn v4l2_holders_of_the_codec_node_are_counted_from_their_fd_links() {
    let fake = FakeRoot::new("v4l2-holders");
    fake.write(
        "/sys/class/video4linux/video10/name",
        "bcm2835-codec-decode\n",
    );
    fake.write("/sys/class/video4linux/video0/name", "HD Pro Webcam C920\n");
    hold(&fake.root(), 9001, 3, "/dev/video10");
    hold(&fake.root(), 9002, 4, "/dev/video10");
    // A camera's holder is not a codec session.
    hold(&fake.root(), 9003, 3, "/dev/video0");
    let run = run_under(
        &fake.root(),
        &encode_with(&fake.guard("budget-source=v4l2 max-sessions=2")),
    );
    assert_eq!(run.field("budget-source"), "v4l2");
    assert_eq!(run.field("sessions"), "2");
    assert_eq!(run.field("reason"), "over-budget", "{:?}", run.decisions);
    let run = run_under(
        &fake.root(),
        &encode_with(&fake.guard("budget-source=v4l2 max-sessions=3")),
    );
    assert_eq!(
        (run.field("reason").as_str(), run.field("sessions").as_str()),
        ("budget", "2")
    );
}

/// Two codec nodes: a guard counts the holders of its codec's node only.
#[test]
fn v4l2_holders_of_another_codec_node_do_not_count() {
    let fake = FakeRoot::new("v4l2-per-node");
    fake.write("/sys/class/video4linux/video10/name", "hantro-vpu-enc\n");
    fake.write("/sys/class/video4linux/video11/name", "hantro-vpu-enc\n");
    hold(&fake.root(), 9001, 3, "/dev/video11");
    hold(&fake.root(), 9002, 3, "/dev/video11");
    hold(&fake.root(), 9003, 3, "/dev/video10");
    let run = run_under(
        &fake.root(),
        &encode_with(&fake.guard_on("v4l2video10h264enc", "max-sessions=2")),
    );
    assert_eq!(run.field("budget-source"), "v4l2");
    assert_eq!(run.field("reason"), "budget", "{:?}", run.decisions);
    assert_eq!(run.field("sessions"), "1");
    let run = run_under(
        &fake.root(),
        &encode_with(&fake.guard_on("v4l2video11h264enc", "max-sessions=2")),
    );
    assert_eq!(run.field("reason"), "over-budget", "{:?}", run.decisions);
    assert_eq!(run.field("sessions"), "2");
}
