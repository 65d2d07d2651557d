// SPDX-License-Identifier: MPL-2.0
//! The `drm` budget source (Intel VA/QSV, AMD VA): who uses the video
//! engines and how busy they are, from the kernel's DRM usage stats in
//! `/proc/<pid>/fdinfo/<fd>` (Documentation/gpu/drm-usage-stats.rst), under
//! `EDGEGUARD_ROOT`.
//!
//! These engines have no session cap: their limit is engine time. Each open
//! DRM file is a client, `drm-client-id` unique per device (`drm-pdev`), so a
//! client reached through several fds or processes (dup, fork, SCM_RIGHTS)
//! counts once. i915 gives each engine class's busy time in ns
//! (`drm-engine-video`, `drm-engine-video-enhance`), xe busy cycles and the
//! GPU timestamp cycles they are measured against (`drm-cycles-vcs`,
//! `drm-total-cycles-vcs`), amdgpu ns for `dec`/`enc`; `drm-engine-capacity-*`
//! says how many engines of the class there are. Two scans
//! `SAMPLE_INTERVAL` apart give busy over wall time (or cycles over total
//! cycles) over capacity, as intel_gpu_top, nvtop and btop compute it; the
//! busiest engine class of any device is the load.
//!
//! Only fds whose link points into `/dev/dri/` have their fdinfo read.
//! Processes whose fds cannot be read (another user's without
//! CAP_SYS_PTRACE) are skipped: their clients are not seen.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::budget::Held;
use super::listing::{ListingError, SessionKind, SessionLoad, SessionRecord};
use super::source::{self, Listing, SessionSource};

/// How far apart the two scans of one reading are: long enough that a
/// 1 ms busy time is 1%, short enough to hold the decision lock briefly.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// An fdinfo is a few hundred bytes; more is not one.
const MAX_FDINFO_BYTES: u64 = 64 * 1024;

/// The video engine classes, as each driver names them: busy ns keys, and
/// cycle keys with their total.
const NS_ENGINES: [&str; 4] = ["video", "video-enhance", "dec", "enc"];
const CYCLE_ENGINES: [&str; 2] = ["vcs", "vecs"];

/// One engine class's counter of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    /// Busy nanoseconds, measured against wall time.
    Ns(u64),
    /// Busy cycles and the cycles elapsed meanwhile.
    Cycles { busy: u64, total: u64 },
}

/// A DRM client as one fdinfo shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Client {
    pid: u32,
    pdev: String,
    id: u64,
    /// Engine class -> its counter and capacity.
    engines: BTreeMap<String, (Counter, u32)>,
}

impl Client {
    fn uses_video(&self) -> bool {
        self.engines.values().any(|(c, _)| match c {
            Counter::Ns(ns) => *ns > 0,
            Counter::Cycles { busy, .. } => *busy > 0,
        })
    }
}

/// The first number of a `key:\tvalue [unit]` field's value.
fn number(value: &str) -> Option<u64> {
    value.split_whitespace().next()?.parse().ok()
}

/// The client an fdinfo describes; None for a file that is not a DRM client
/// with a video engine counter.
fn parse_fdinfo(pid: u32, text: &str) -> Option<Client> {
    let fields: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let id = number(fields.get("drm-client-id")?)?;
    let pdev = fields.get("drm-pdev").map_or("", |v| v).to_string();
    let capacity = |engine: &str| {
        fields
            .get(format!("drm-engine-capacity-{engine}").as_str())
            .and_then(|v| number(v))
            .map_or(1, |c| c.clamp(1, 64) as u32)
    };
    let mut engines = BTreeMap::new();
    for engine in NS_ENGINES {
        if let Some(ns) = fields
            .get(format!("drm-engine-{engine}").as_str())
            .and_then(|v| number(v))
        {
            engines.insert(engine.to_string(), (Counter::Ns(ns), capacity(engine)));
        }
    }
    for engine in CYCLE_ENGINES {
        let busy = fields.get(format!("drm-cycles-{engine}").as_str());
        let total = fields.get(format!("drm-total-cycles-{engine}").as_str());
        if let (Some(busy), Some(total)) =
            (busy.and_then(|v| number(v)), total.and_then(|v| number(v)))
        {
            engines.insert(
                engine.to_string(),
                (Counter::Cycles { busy, total }, capacity(engine)),
            );
        }
    }
    (!engines.is_empty()).then_some(Client {
        pid,
        pdev,
        id,
        engines,
    })
}

/// The clock and the wait of a reading's two scans. In the plugin, the
/// monotonic clock (the one i915 and amdgpu measure busy time against) and
/// a sleep; a test or a benchmark installs its own with `set_sampler`, so
/// that the fraction it checks does not depend on how promptly threads run.
pub trait Sampler: Send + Sync {
    /// Now, as a time since any fixed point.
    fn now(&self) -> Duration;
    /// Waits `interval` between the two scans.
    fn wait(&self, interval: Duration);
}

/// The machine's monotonic clock, and a sleep.
#[derive(Debug)]
struct Monotonic;

impl Sampler for Monotonic {
    fn now(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }

    fn wait(&self, interval: Duration) {
        std::thread::sleep(interval);
    }
}

static SAMPLER: OnceLock<Arc<dyn Sampler>> = OnceLock::new();

/// Makes every `drm` source of this process take its two scans through
/// `sampler`: for tests and benchmarks only. The first call wins; false
/// when one was installed before.
pub fn set_sampler(sampler: Arc<dyn Sampler>) -> bool {
    SAMPLER.set(sampler).is_ok()
}

fn installed_sampler() -> Arc<dyn Sampler> {
    SAMPLER
        .get()
        .cloned()
        .unwrap_or_else(|| Arc::new(Monotonic))
}

/// One scan of every process's DRM clients, at `at`.
#[derive(Debug)]
struct Scan {
    at: Duration,
    clients: Vec<Client>,
    /// Processes whose fds could be read.
    readable: usize,
}

fn read_bounded(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_FDINFO_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The DRM clients of process `pid`, None when its fds cannot be read.
fn process_clients(proc_dir: &Path, pid: u32) -> Option<Vec<Client>> {
    let dir = proc_dir.join(pid.to_string());
    let mut clients = Vec::new();
    for entry in std::fs::read_dir(dir.join("fd")).ok()?.flatten() {
        // readlink is cheaper than reading every fd's fdinfo.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.starts_with("/dev/dri/") {
            continue;
        }
        let fdinfo = dir.join("fdinfo").join(entry.file_name());
        if let Some(client) = read_bounded(&fdinfo).and_then(|t| parse_fdinfo(pid, &t)) {
            clients.push(client);
        }
    }
    Some(clients)
}

fn scan(proc_dir: &Path, clock: &dyn Sampler) -> Result<Scan, ListingError> {
    let entries = std::fs::read_dir(proc_dir).map_err(|e| ListingError {
        path: proc_dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    // The lowest pid holding a client is named as its holder.
    pids.sort_unstable();
    let mut seen = std::collections::HashSet::new();
    let mut clients = Vec::new();
    let mut readable = 0;
    for pid in pids {
        let Some(found) = process_clients(proc_dir, pid) else {
            continue;
        };
        readable += 1;
        clients.extend(
            found
                .into_iter()
                .filter(|c| seen.insert((c.pdev.clone(), c.id))),
        );
    }
    Ok(Scan {
        at: clock.now(),
        clients,
        readable,
    })
}

/// The busiest engine class of any device between two scans, in percent
/// (0-100); None when no client was seen in both.
fn busy_percent(first: &Scan, second: &Scan) -> Option<u32> {
    let wall = second.at.saturating_sub(first.at).as_nanos() as f64;
    let earlier: HashMap<(&str, u64), &Client> = first
        .clients
        .iter()
        .map(|c| ((c.pdev.as_str(), c.id), c))
        .collect();
    // (device, engine class) -> fraction of one engine busy.
    let mut busy: HashMap<(&str, &str), f64> = HashMap::new();
    let mut capacity: HashMap<(&str, &str), u32> = HashMap::new();
    for client in &second.clients {
        let Some(before) = earlier.get(&(client.pdev.as_str(), client.id)) else {
            continue;
        };
        for (engine, (now, cap)) in &client.engines {
            let Some((then, _)) = before.engines.get(engine) else {
                continue;
            };
            let fraction = match (then, now) {
                (Counter::Ns(a), Counter::Ns(b)) if wall > 0.0 => {
                    b.saturating_sub(*a) as f64 / wall
                }
                (
                    Counter::Cycles { busy: a, total: ta },
                    Counter::Cycles { busy: b, total: tb },
                ) if tb > ta => b.saturating_sub(*a) as f64 / (tb - ta) as f64,
                _ => 0.0,
            };
            let key = (client.pdev.as_str(), engine.as_str());
            *busy.entry(key).or_default() += fraction;
            capacity.insert(key, *cap);
        }
    }
    busy.iter()
        .map(|(key, fraction)| fraction / f64::from(capacity[key]))
        .fold(None, |max: Option<f64>, f| {
            Some(max.map_or(f, |m| m.max(f)))
        })
        .map(|f| (f * 100.0).round().clamp(0.0, 100.0) as u32)
}

/// A reading as kept in the lock directory's snapshot.
fn encode(load: Option<u32>, clients: &[Client]) -> String {
    let mut text = format!("load={}\n", load.map_or(-1, i64::from));
    for c in clients.iter().filter(|c| c.uses_video()) {
        text.push_str(&format!(
            "client pid={} id={} pdev={}\n",
            c.pid, c.id, c.pdev
        ));
    }
    text
}

fn decode(text: &str) -> (Option<u32>, Vec<SessionLoad>) {
    let mut load = None;
    let mut sessions = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("load=") {
            load = v.parse::<u32>().ok();
        } else if let Some(rest) = line.strip_prefix("client ") {
            let field = |name: &str| {
                rest.split_whitespace()
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            };
            let (Some(pid), Some(id)) = (
                field("pid").and_then(|p| p.parse().ok()),
                field("id").and_then(|i| i.parse().ok()),
            ) else {
                continue;
            };
            sessions.push(SessionLoad {
                record: SessionRecord {
                    tid: pid,
                    index: id,
                    device: field("pdev").unwrap_or("").to_string(),
                },
                kind: SessionKind::Codec,
                pixel_rate: None,
            });
        }
    }
    (load, sessions)
}

/// The video engines' clients and load under a root.
#[derive(Clone)]
pub struct DrmSource {
    root: PathBuf,
    sampler: Arc<dyn Sampler>,
}

impl std::fmt::Debug for DrmSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrmSource")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl DrmSource {
    /// Sampled through the process's sampler (`set_sampler`), by default
    /// the monotonic clock.
    pub fn new(root: PathBuf) -> Self {
        Self::with_sampler(root, installed_sampler())
    }

    pub fn with_sampler(root: PathBuf, sampler: Arc<dyn Sampler>) -> Self {
        DrmSource { root, sampler }
    }

    fn proc_dir(&self) -> PathBuf {
        super::root::under(&self.root, "/proc")
    }

    /// Two scans `SAMPLE_INTERVAL` apart, as the snapshot's text.
    fn sample(&self) -> Result<(PathBuf, String), ListingError> {
        let proc_dir = self.proc_dir();
        let first = scan(&proc_dir, &*self.sampler)?;
        self.sampler.wait(SAMPLE_INTERVAL);
        let second = scan(&proc_dir, &*self.sampler)?;
        if second.readable == 0 {
            return Err(ListingError {
                path: proc_dir,
                reason: "drm: no process's file descriptors are readable (other users' need \
                         CAP_SYS_PTRACE)"
                    .into(),
            });
        }
        let load = busy_percent(&first, &second);
        Ok((proc_dir, encode(load, &second.clients)))
    }
}

impl SessionSource for DrmSource {
    fn read(&self, held: &Held) -> Result<Listing, ListingError> {
        let key = format!("drm:{}", self.root.display());
        let snapshot = source::through_snapshot(held, &key, || self.sample())?;
        let (load, sessions) = decode(&snapshot.text);
        Ok(Listing {
            path: snapshot.path,
            sessions,
            load,
        })
    }

    fn budget_name(&self) -> String {
        "drm:".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I915: &str = "pos:\t0\nflags:\t02100002\nmnt_id:\t26\nino:\t1037\n\
        drm-driver:\ti915\ndrm-client-id:\t7\ndrm-pdev:\t0000:00:02.0\n\
        drm-engine-render:\t25662044495 ns\ndrm-engine-copy:\t0 ns\n\
        drm-engine-video:\t9000000 ns\ndrm-engine-capacity-video:\t2\n\
        drm-engine-video-enhance:\t0 ns\n";
    const XE: &str = "drm-driver:\txe\ndrm-client-id:\t42\ndrm-pdev:\t0000:03:00.0\n\
        drm-cycles-rcs:\t28257900\ndrm-total-cycles-rcs:\t7655183225\n\
        drm-cycles-vcs:\t900\ndrm-total-cycles-vcs:\t1000\ndrm-engine-capacity-vcs:\t2\n";

    #[test]
    fn i915_and_xe_fdinfo_give_video_engine_counters() {
        let i915 = parse_fdinfo(10, I915).unwrap();
        assert_eq!((i915.id, i915.pdev.as_str()), (7, "0000:00:02.0"));
        assert_eq!(i915.engines["video"], (Counter::Ns(9_000_000), 2));
        assert_eq!(i915.engines["video-enhance"], (Counter::Ns(0), 1));
        assert!(!i915.engines.contains_key("render"));
        let xe = parse_fdinfo(11, XE).unwrap();
        assert_eq!(
            xe.engines["vcs"],
            (
                Counter::Cycles {
                    busy: 900,
                    total: 1000
                },
                2
            )
        );
        assert!(parse_fdinfo(12, "pos:\t0\nflags:\t0\n").is_none());
    }

    fn client(id: u64, pdev: &str, engine: &str, counter: Counter, cap: u32) -> Client {
        Client {
            pid: 1,
            pdev: pdev.into(),
            id,
            engines: [(engine.to_string(), (counter, cap))].into(),
        }
    }

    #[test]
    fn the_busiest_engine_class_over_its_capacity_is_the_load() {
        let t0 = Duration::from_secs(5);
        let at = |ms| t0 + Duration::from_millis(ms);
        let first = Scan {
            at: at(0),
            clients: vec![
                client(1, "a", "video", Counter::Ns(0), 1),
                client(2, "b", "vcs", Counter::Cycles { busy: 0, total: 0 }, 2),
            ],
            readable: 1,
        };
        let second = Scan {
            at: at(100),
            clients: vec![
                // 90 ms busy of 100 ms.
                client(1, "a", "video", Counter::Ns(90_000_000), 1),
                // 1000 cycles busy of 1000, over two engines: 50%.
                client(
                    2,
                    "b",
                    "vcs",
                    Counter::Cycles {
                        busy: 1000,
                        total: 1000,
                    },
                    2,
                ),
            ],
            readable: 1,
        };
        assert_eq!(busy_percent(&first, &second), Some(90));
        // A client new in the second scan has no rate yet.
        let empty = Scan {
            at: at(0),
            clients: vec![],
            readable: 1,
        };
        assert_eq!(busy_percent(&empty, &second), None);
    }

    #[test]
    fn a_reading_round_trips_through_its_snapshot_text() {
        let clients = [
            parse_fdinfo(10, I915).unwrap(),
            client(3, "b", "vcs", Counter::Cycles { busy: 0, total: 5 }, 1),
        ];
        let (load, sessions) = decode(&encode(Some(42), &clients));
        assert_eq!(load, Some(42));
        // The idle client never used the video engine.
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].record.tid, 10);
        assert_eq!(sessions[0].kind, SessionKind::Codec);
        assert_eq!(decode(&encode(None, &[])).0, None);
    }

    #[test]
    fn one_client_reached_through_two_processes_counts_once() {
        let root =
            std::env::temp_dir().join(format!("edgeguard-drm-dedupe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for pid in [100, 200] {
            let dir = root.join(format!("proc/{pid}"));
            std::fs::create_dir_all(dir.join("fd")).unwrap();
            std::fs::create_dir_all(dir.join("fdinfo")).unwrap();
            std::os::unix::fs::symlink("/dev/dri/renderD128", dir.join("fd/5")).unwrap();
            std::fs::write(dir.join("fdinfo/5"), I915).unwrap();
            // Not a DRM file: its fdinfo is never read.
            std::os::unix::fs::symlink("/dev/null", dir.join("fd/6")).unwrap();
            std::fs::write(dir.join("fdinfo/6"), I915.replace("7", "8")).unwrap();
        }
        let found = scan(&root.join("proc"), &Monotonic).unwrap();
        assert_eq!(found.readable, 2);
        assert_eq!(found.clients.len(), 1);
        assert_eq!(found.clients[0].pid, 100);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A clock that moves only when the source waits, and an i915 client
    /// whose video engine was busy `percent` of each wait.
    struct SteppedClock {
        fdinfo: PathBuf,
        percent: u64,
        now: std::sync::Mutex<Duration>,
    }

    impl SteppedClock {
        fn write(&self, at: Duration) {
            let busy = at.as_nanos() as u64 * self.percent / 100;
            let text = I915.replace("9000000 ns", &format!("{busy} ns"));
            std::fs::write(&self.fdinfo, text).unwrap();
        }
    }

    impl Sampler for SteppedClock {
        fn now(&self) -> Duration {
            *self.now.lock().unwrap()
        }

        fn wait(&self, interval: Duration) {
            let mut now = self.now.lock().unwrap();
            *now += interval;
            self.write(*now);
        }
    }

    #[test]
    fn the_load_is_busy_time_over_the_sampler_s_time_between_the_scans() {
        let root = std::env::temp_dir().join(format!("edgeguard-drm-clock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("proc/300");
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        std::fs::create_dir_all(dir.join("fdinfo")).unwrap();
        std::os::unix::fs::symlink("/dev/dri/renderD128", dir.join("fd/5")).unwrap();
        let clock = Arc::new(SteppedClock {
            fdinfo: dir.join("fdinfo/5"),
            percent: 90,
            now: std::sync::Mutex::new(Duration::from_secs(7)),
        });
        clock.write(Duration::from_secs(7));
        let source = DrmSource::with_sampler(root.clone(), clock.clone());
        let (_, text) = source.sample().unwrap();
        // 90% of one of the two video engines the fdinfo says there are.
        assert_eq!(decode(&text).0, Some(45));
        assert_eq!(
            *clock.now.lock().unwrap(),
            Duration::from_secs(7) + SAMPLE_INTERVAL
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
