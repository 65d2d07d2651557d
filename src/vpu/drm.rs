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
//! says how many engines of the class there are. Two scans give busy over
//! wall time (or cycles over total cycles) over capacity, as intel_gpu_top,
//! nvtop and btop compute it; the busiest engine class of the guard's device
//! is the load.
//!
//! A budget is one render device (`devices::RenderDevice`): only the
//! clients of its PCI slot (`drm-pdev`), or where that is not known of its
//! node, are counted, and each device keeps its own snapshot and baseline.
//!
//! A reading is taken with the machine-wide decision lock held, so it never
//! waits: it scans once and measures against the previous reading, whose
//! counters and instant the lock directory's snapshot keeps. Where there is
//! none between `MIN_INTERVAL` and `MAX_INTERVAL` old, against a scan this
//! process took outside the lock (`prepare`: at NULL->READY, and before each
//! count waits for the lock); with neither, the load is not known (-1).
//!
//! Only fds whose link points into `/dev/dri/` have their fdinfo read.
//! Processes whose fds cannot be read (another user's without
//! CAP_SYS_PTRACE) are skipped: their clients are not seen.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::budget::Held;
use super::devices::RenderDevice;
use super::listing::{ListingError, SessionKind, SessionLoad, SessionRecord};
use super::source::{self, Listing, SessionSource};

/// The youngest earlier scan a reading measures against: over a shorter
/// time a driver's busy counters (updated in steps) say little.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// The oldest: a rate over longer says little of the load now.
pub const MAX_INTERVAL: Duration = Duration::from_secs(2);
/// A scan `prepare` keeps stands as the baseline this long before it is
/// taken again: with `MAX_INTERVAL`, a count that waited up to a second for
/// the lock still finds one.
const BASELINE_REFRESH: Duration = Duration::from_secs(1);
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
    /// The node the fd is linked to: `/dev/dri/renderD128`.
    node: String,
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
fn parse_fdinfo(pid: u32, node: &str, text: &str) -> Option<Client> {
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
        node: node.to_string(),
        id,
        engines,
    })
}

/// The clock a scan is stamped with. In the plugin, CLOCK_MONOTONIC (the
/// clock i915 and amdgpu measure busy time against, one for every process
/// of the machine, so a scan kept in the snapshot can be measured against
/// by another process); a test or a benchmark installs its own with
/// `set_sampler`, so that the fraction it checks does not depend on how
/// promptly threads run. Each scan asks `now()` once, before it reads.
pub trait Sampler: Send + Sync {
    /// Now, as a time since the clock's fixed point.
    fn now(&self) -> Duration;
}

/// The machine's monotonic clock.
#[derive(Debug)]
struct Monotonic;

impl Sampler for Monotonic {
    fn now(&self) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec to write to.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

static SAMPLER: OnceLock<Arc<dyn Sampler>> = OnceLock::new();

/// Makes every `drm` source of this process stamp its scans through
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

/// One scan of every process's DRM clients of one device, at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The DRM clients of process `pid` on `device`, None when its fds cannot
/// be read.
fn process_clients(proc_dir: &Path, pid: u32, device: &RenderDevice) -> Option<Vec<Client>> {
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
        let node = target.to_string_lossy();
        if let Some(client) = read_bounded(&fdinfo).and_then(|t| parse_fdinfo(pid, &node, &t))
            && device.has_client(&client.pdev, &client.node)
        {
            clients.push(client);
        }
    }
    Some(clients)
}

fn scan(proc_dir: &Path, device: &RenderDevice, clock: &dyn Sampler) -> Result<Scan, ListingError> {
    // Lowest first: the lowest pid holding a client is named as its holder.
    let pids = super::process::pids_in(proc_dir).map_err(|e| ListingError {
        path: proc_dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    // Stamped before the reads: a counter read later has counted at least
    // up to this instant.
    let at = clock.now();
    let mut seen = std::collections::HashSet::new();
    let mut clients = Vec::new();
    let mut readable = 0;
    for pid in pids {
        let Some(found) = process_clients(proc_dir, pid, device) else {
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
        at,
        clients,
        readable,
    })
}

/// The busiest engine class between two scans (of one device), in percent
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

/// A reading as kept in the lock directory's snapshot: the load, then the
/// scan itself (its instant, each client and its counters), which the next
/// reading measures against.
fn encode(load: Option<u32>, scan: &Scan) -> String {
    let mut text = format!(
        "load={}\nat-ns={}\n",
        load.map_or(-1, i64::from),
        scan.at.as_nanos()
    );
    for c in &scan.clients {
        text.push_str(&format!(
            "client pid={} id={} pdev={} node={}\n",
            c.pid, c.id, c.pdev, c.node
        ));
        for (engine, (counter, cap)) in &c.engines {
            let value = match counter {
                Counter::Ns(ns) => format!("ns={ns}"),
                Counter::Cycles { busy, total } => format!("busy={busy} total={total}"),
            };
            text.push_str(&format!("engine name={engine} {value} cap={cap}\n"));
        }
    }
    text
}

/// The value of `name=` among a line's space-separated fields.
fn field<'a>(rest: &'a str, name: &str) -> Option<&'a str> {
    rest.split_whitespace()
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
}

fn parse_field<T: std::str::FromStr>(rest: &str, name: &str) -> Option<T> {
    field(rest, name)?.parse().ok()
}

/// The engine counter an `engine` line of a snapshot gives.
fn decode_engine(rest: &str) -> Option<(String, (Counter, u32))> {
    let counter = match parse_field(rest, "ns") {
        Some(ns) => Counter::Ns(ns),
        None => Counter::Cycles {
            busy: parse_field(rest, "busy")?,
            total: parse_field(rest, "total")?,
        },
    };
    let cap = parse_field(rest, "cap").unwrap_or(1u32).clamp(1, 64);
    Some((field(rest, "name")?.to_string(), (counter, cap)))
}

/// The load and the scan a snapshot's text keeps; the scan is None in a
/// text without its instant.
fn decode(text: &str) -> (Option<u32>, Option<Scan>) {
    let mut load = None;
    let mut at = None;
    let mut clients: Vec<Client> = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("load=") {
            load = v.parse::<u32>().ok();
        } else if let Some(v) = line.strip_prefix("at-ns=") {
            at = v.parse().ok().map(Duration::from_nanos);
        } else if let Some(rest) = line.strip_prefix("client ") {
            let (Some(pid), Some(id)) = (parse_field(rest, "pid"), parse_field(rest, "id")) else {
                continue;
            };
            clients.push(Client {
                pid,
                id,
                pdev: field(rest, "pdev").unwrap_or("").to_string(),
                node: field(rest, "node").unwrap_or("").to_string(),
                engines: BTreeMap::new(),
            });
        } else if let Some(rest) = line.strip_prefix("engine ")
            && let (Some(client), Some((name, counter))) = (clients.last_mut(), decode_engine(rest))
        {
            client.engines.insert(name, counter);
        }
    }
    let scan = at.map(|at| Scan {
        at,
        clients,
        readable: 0,
    });
    (load, scan)
}

/// The clients that used a video engine, as sessions.
fn sessions(scan: &Scan) -> Vec<SessionLoad> {
    scan.clients
        .iter()
        .filter(|c| c.uses_video())
        .map(|c| SessionLoad {
            record: SessionRecord {
                tid: c.pid,
                index: c.id,
                device: c.pdev.clone(),
            },
            kind: SessionKind::Codec,
            pixel_rate: None,
        })
        .collect()
}

/// Of the earlier scans, the latest that a scan at `now` may be measured
/// against: between `MIN_INTERVAL` and `MAX_INTERVAL` before it.
fn baseline<'a>(now: Duration, earlier: impl IntoIterator<Item = &'a Scan>) -> Option<&'a Scan> {
    earlier
        .into_iter()
        .filter(|s| {
            now.checked_sub(s.at)
                .is_some_and(|age| (MIN_INTERVAL..=MAX_INTERVAL).contains(&age))
        })
        .max_by_key(|s| s.at)
}

/// Which `/proc` a scan read, and of which device.
type ScanKey = (PathBuf, RenderDevice);

/// The scans this process took outside the decision lock (`prepare`), per
/// `/proc` directory and device: the baseline of a reading with no usable
/// earlier one in the snapshot.
static PREPARED: Mutex<Option<HashMap<ScanKey, Scan>>> = Mutex::new(None);

fn prepared(key: &ScanKey) -> Option<Scan> {
    let prepared = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
    prepared.as_ref()?.get(key).cloned()
}

fn keep_prepared(key: ScanKey, scan: Scan) {
    let mut prepared = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
    prepared.get_or_insert_with(HashMap::new).insert(key, scan);
}

/// The video engines' clients and load of one render device under a root.
#[derive(Clone)]
pub struct DrmSource {
    root: PathBuf,
    device: RenderDevice,
    sampler: Arc<dyn Sampler>,
}

impl std::fmt::Debug for DrmSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrmSource")
            .field("root", &self.root)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl DrmSource {
    /// The first render node's (`devices::first_render_node`), sampled
    /// through the process's sampler (`set_sampler`), by default the
    /// monotonic clock.
    pub fn new(root: PathBuf) -> Self {
        let node = super::devices::first_render_node(&root);
        Self::on_node(root, &node)
    }

    /// The device of render node `node` (a path on the machine).
    pub fn on_node(root: PathBuf, node: &Path) -> Self {
        Self::with_sampler(root, node, installed_sampler())
    }

    pub fn with_sampler(root: PathBuf, node: &Path, sampler: Arc<dyn Sampler>) -> Self {
        DrmSource {
            device: RenderDevice::of_node(&root, node),
            root,
            sampler,
        }
    }

    /// The device counted.
    pub fn device(&self) -> &RenderDevice {
        &self.device
    }

    fn proc_dir(&self) -> PathBuf {
        super::root::under(&self.root, "/proc")
    }

    fn scan_key(&self) -> ScanKey {
        (self.proc_dir(), self.device.clone())
    }

    fn snapshot_key(&self) -> String {
        format!("drm:{}:{}", self.root.display(), self.device.name())
    }

    /// One scan, measured against the latest usable of `previous` (the
    /// snapshot's last reading) and this process's prepared scan: the
    /// snapshot's text for it.
    fn sample(&self, previous: Option<&Scan>) -> Result<(PathBuf, String), ListingError> {
        let proc_dir = self.proc_dir();
        let scan = scan(&proc_dir, &self.device, &*self.sampler)?;
        if scan.readable == 0 {
            return Err(ListingError {
                path: proc_dir,
                reason: "drm: no process's file descriptors are readable (other users' need \
                         CAP_SYS_PTRACE)"
                    .into(),
            });
        }
        let prepared = prepared(&self.scan_key());
        let load = baseline(scan.at, previous.into_iter().chain(prepared.as_ref()))
            .and_then(|earlier| busy_percent(earlier, &scan));
        Ok((proc_dir, encode(load, &scan)))
    }
}

impl SessionSource for DrmSource {
    /// Outside the decision lock: a scan for the next reading to measure
    /// against, unless this process kept one within `BASELINE_REFRESH`.
    fn prepare(&self, _lock_dir: &Path, _patience: Duration) {
        let key = self.scan_key();
        let now = self.sampler.now();
        let recent = prepared(&key).is_some_and(|s| {
            now.checked_sub(s.at)
                .is_some_and(|age| age < BASELINE_REFRESH)
        });
        if recent {
            return;
        }
        if let Ok(scan) = scan(&key.0, &self.device, &*self.sampler) {
            keep_prepared(key, scan);
        }
    }

    fn read(&self, held: &Held) -> Result<Listing, ListingError> {
        let snapshot = source::through_snapshot_after(held, &self.snapshot_key(), |earlier| {
            let previous = earlier.and_then(|s| decode(&s.text).1);
            Ok(self.sample(previous.as_ref())?)
        })?;
        let (load, scan) = decode(&snapshot.text);
        Ok(Listing {
            path: snapshot.path,
            sessions: scan.as_ref().map(sessions).unwrap_or_default(),
            load,
        })
    }

    /// `drm:<PCI slot>`, or `drm:<render node>` where the slot is not known.
    fn budget_name(&self) -> String {
        format!("drm:{}", self.device.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R128: &str = "/dev/dri/renderD128";
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
        let i915 = parse_fdinfo(10, R128, I915).unwrap();
        assert_eq!((i915.id, i915.pdev.as_str()), (7, "0000:00:02.0"));
        assert_eq!(i915.engines["video"], (Counter::Ns(9_000_000), 2));
        assert_eq!(i915.engines["video-enhance"], (Counter::Ns(0), 1));
        assert!(!i915.engines.contains_key("render"));
        let xe = parse_fdinfo(11, R128, XE).unwrap();
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
        assert!(parse_fdinfo(12, R128, "pos:\t0\nflags:\t0\n").is_none());
    }

    fn client(id: u64, pdev: &str, engine: &str, counter: Counter, cap: u32) -> Client {
        Client {
            pid: 1,
            pdev: pdev.into(),
            node: R128.into(),
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
        let scan = Scan {
            at: Duration::from_nanos(123_456_789_012),
            clients: vec![
                parse_fdinfo(10, R128, I915).unwrap(),
                client(3, "b", "vcs", Counter::Cycles { busy: 0, total: 5 }, 1),
            ],
            readable: 0,
        };
        let (load, kept) = decode(&encode(Some(42), &scan));
        assert_eq!(load, Some(42));
        // Every counter is kept for the next reading to measure against.
        assert_eq!(kept.as_ref(), Some(&scan));
        // The idle client never used the video engine: no session.
        let sessions = sessions(&scan);
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].record.tid, 10);
        assert_eq!(sessions[0].kind, SessionKind::Codec);
        assert_eq!(decode(&encode(None, &scan)).0, None);
        // A snapshot of the format before the counters were kept.
        assert_eq!(decode("load=3\nclient pid=1 id=2 pdev=a\n").1, None);
    }

    #[test]
    fn a_reading_measures_only_against_a_scan_between_min_and_max_interval_old() {
        let scan_at = |secs: f64| Scan {
            at: Duration::from_secs_f64(secs),
            clients: vec![],
            readable: 1,
        };
        let now = Duration::from_secs(100);
        let (young, good, better, old) = (
            scan_at(100.0 - MIN_INTERVAL.as_secs_f64() / 2.0),
            scan_at(99.0),
            scan_at(99.5),
            scan_at(100.0 - MAX_INTERVAL.as_secs_f64() - 0.5),
        );
        assert_eq!(baseline(now, [&good, &better, &young, &old]), Some(&better));
        assert_eq!(baseline(now, [&young, &old]), None);
        // From the future (another clock): not measured against.
        assert_eq!(baseline(now, [&scan_at(101.0)]), None);
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
        let device = RenderDevice::of_node(&root, Path::new(R128));
        let found = scan(&root.join("proc"), &device, &Monotonic).unwrap();
        assert_eq!(found.readable, 2);
        assert_eq!(found.clients.len(), 1);
        assert_eq!(found.clients[0].pid, 100);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_scan_sees_only_the_clients_of_its_device() {
        let root =
            std::env::temp_dir().join(format!("edgeguard-drm-devices-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // renderD128 is the iGPU (0000:00:02.0); renderD129 the xe card.
        for (n, pdev) in [(128, "0000:00:02.0"), (129, "0000:03:00.0")] {
            let class = root.join(format!("sys/class/drm/renderD{n}"));
            std::fs::create_dir_all(&class).unwrap();
            std::os::unix::fs::symlink(format!("../../../{pdev}"), class.join("device")).unwrap();
        }
        let client = |pid: u32, node: &str, text: &str| {
            let dir = root.join(format!("proc/{pid}"));
            std::fs::create_dir_all(dir.join("fd")).unwrap();
            std::fs::create_dir_all(dir.join("fdinfo")).unwrap();
            std::os::unix::fs::symlink(node, dir.join("fd/5")).unwrap();
            std::fs::write(dir.join("fdinfo/5"), text).unwrap();
        };
        client(100, R128, I915);
        client(200, "/dev/dri/renderD129", XE);
        // The xe card's card node: its pdev says whose client it is.
        client(300, "/dev/dri/card1", &XE.replace("\t42", "\t43"));
        let on = |node: &str| {
            let source =
                DrmSource::with_sampler(root.clone(), Path::new(node), Arc::new(Monotonic));
            let found = scan(&root.join("proc"), &source.device, &Monotonic).unwrap();
            let pids: Vec<u32> = found.clients.iter().map(|c| c.pid).collect();
            (source.budget_name(), pids)
        };
        assert_eq!(on(R128), ("drm:0000:00:02.0".to_string(), vec![100]));
        assert_eq!(
            on("/dev/dri/renderD129"),
            ("drm:0000:03:00.0".to_string(), vec![200, 300])
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A clock that moves `STEP` at each look, and an i915 client whose
    /// video engine has been busy `percent` of the time up to the latest.
    struct SteppedClock {
        fdinfo: PathBuf,
        percent: u64,
        now: std::sync::Mutex<Duration>,
    }

    const STEP: Duration = Duration::from_millis(100);

    impl SteppedClock {
        fn write(&self, at: Duration) {
            let busy = at.as_nanos() as u64 * self.percent / 100;
            let text = I915.replace("9000000 ns", &format!("{busy} ns"));
            std::fs::write(&self.fdinfo, text).unwrap();
        }
    }

    impl Sampler for SteppedClock {
        fn now(&self) -> Duration {
            let mut now = self.now.lock().unwrap();
            *now += STEP;
            self.write(*now);
            *now
        }
    }

    #[test]
    fn a_reading_scans_once_against_the_previous_reading_and_never_waits() {
        let root = std::env::temp_dir().join(format!("edgeguard-drm-clock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("proc/300");
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        std::fs::create_dir_all(dir.join("fdinfo")).unwrap();
        std::os::unix::fs::symlink("/dev/dri/renderD128", dir.join("fd/5")).unwrap();
        let start = Duration::from_secs(7);
        let clock = Arc::new(SteppedClock {
            fdinfo: dir.join("fdinfo/5"),
            percent: 90,
            now: std::sync::Mutex::new(start),
        });
        clock.write(start);
        let source = DrmSource::with_sampler(root.clone(), Path::new(R128), clock.clone());
        // The first reading ever has nothing to measure against.
        let (_, first) = source.sample(None).unwrap();
        let (load, previous) = decode(&first);
        assert_eq!(load, None);
        // One look at the clock: one scan, no wait.
        assert_eq!(*clock.now.lock().unwrap(), start + STEP);
        let (_, second) = source.sample(previous.as_ref()).unwrap();
        // 90% of one of the two video engines the fdinfo says there are.
        assert_eq!(decode(&second).0, Some(45));
        assert_eq!(*clock.now.lock().unwrap(), start + STEP * 2);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The monotonic clock, counting the scans that look at it.
    #[derive(Default)]
    struct CountingClock {
        looks: std::sync::atomic::AtomicUsize,
    }

    impl Sampler for CountingClock {
        fn now(&self) -> Duration {
            self.looks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Monotonic.now()
        }
    }

    #[test]
    fn a_source_that_can_read_no_process_is_scanned_at_most_once_per_max_age() {
        let root = std::env::temp_dir().join(format!("edgeguard-drm-none-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("proc")).unwrap();
        let held = Held::lock(&root.join("lock")).unwrap();
        let clock = Arc::new(CountingClock::default());
        let source = DrmSource::with_sampler(root.clone(), Path::new(R128), clock.clone());
        let start = crate::vpu::snapshot::boottime();
        for _ in 0..20 {
            let err = source.read(&held).unwrap_err();
            assert!(
                err.reason.contains("no process's file descriptors"),
                "{err}"
            );
        }
        let elapsed = crate::vpu::snapshot::boottime() - start;
        let allowed = (elapsed.as_nanos() / crate::vpu::snapshot::MAX_AGE.as_nanos()) as usize + 1;
        let scans = clock.looks.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            (1..=allowed).contains(&scans),
            "{scans} scans in {elapsed:?} for 20 reads"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
