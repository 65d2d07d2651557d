// SPDX-License-Identifier: MPL-2.0
//! Counting the VPU for a decision: the settings every guard shares (budget,
//! listing, lock directory, lock timeout), the decision lock taken as patience
//! allows, and the load counted under it from the session source and the
//! guards' slots. Nothing here calls into an element: what goes on the bus
//! comes back as a `CountWarning` or a `CountError` for the guard to post.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use super::budget_source::BudgetSource;
use super::child_device;
use super::decision::{Budget, VpuView};
use super::drm::DrmSource;
use super::holders::{self, JetsonSource, V4l2Source};
use super::ledger::{self, DecisionLock, Ledger, LockWaitError, Slot};
use super::listing::{ListingError, SessionKind};
use super::load;
use super::load::BudgetId;
use super::nvml::{self, NvmlSource};
use super::process;
use super::source::{MppListing, SessionSource, SlotsOnly};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "edgeguard-vpu",
        gst::DebugColorFlags::empty(),
        Some("VPU budget shared by the guards"),
    )
});

pub const DEFAULT_MAX_SESSIONS: u32 = 6;
/// The RK3588's rated HEVC encode throughput, 3840x2160 at 120 fps (the same
/// as 8K30 or 1080p480): what the encoder can carry in real time. H.264 is
/// half that; see docs/vpuguardenc.md.
pub const DEFAULT_MAX_PIXEL_RATE: u64 = 3840 * 2160 * 120;
pub const DEFAULT_LOCK_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(2);
/// No load limit: `max-load` only limits below 100 percent.
pub const DEFAULT_MAX_LOAD: u32 = 100;

/// The properties of a guard that say which budget it counts against.
#[derive(Debug, Clone)]
pub struct BudgetSettings {
    pub max_sessions: u32,
    /// Pixels per second of encoder load; 0 = no pixel budget.
    pub max_pixel_rate: u64,
    /// The `session-file` property; empty = the default listing paths.
    pub session_file: String,
    /// The `lock-dir` property; empty = `ledger::default_lock_dir()`.
    pub lock_dir: String,
    pub lock_timeout: gst::ClockTime,
    /// The `budget-source` property, `auto` resolved at each count.
    pub source: BudgetSource,
    /// Percent of the engine a source that measures load may be busy at.
    pub max_load: u32,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_pixel_rate: DEFAULT_MAX_PIXEL_RATE,
            session_file: String::new(),
            lock_dir: String::new(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            source: BudgetSource::Auto,
            max_load: DEFAULT_MAX_LOAD,
        }
    }
}

/// The `drm` budget of the render device the hardware child of factory
/// `hw_factory` uses (see `child_device::render_node`).
fn drm_source(hw_factory: &str) -> DrmSource {
    let root = super::root::root();
    let (node, found) = child_device::render_node(hw_factory, &root);
    if found == child_device::Found::Assumed {
        gst::debug!(
            CAT,
            "drm: which render node '{hw_factory}' uses is not known: counting {}",
            node.display()
        );
    }
    DrmSource::on_node(root, &node)
}

/// The `v4l2` budget of the codec node the hardware child of factory
/// `hw_factory` uses; every codec node where that is not known.
fn v4l2_source(hw_factory: &str) -> V4l2Source {
    let root = super::root::root();
    match child_device::v4l2_node(hw_factory) {
        Some(node) => V4l2Source::on_node(root, node),
        None => {
            gst::debug!(
                CAT,
                "v4l2: which node '{hw_factory}' uses is not known: counting every codec node"
            );
            V4l2Source::new(root)
        }
    }
}

impl BudgetSettings {
    pub fn lock_dir(&self) -> PathBuf {
        if self.lock_dir.is_empty() {
            ledger::default_lock_dir()
        } else {
            PathBuf::from(&self.lock_dir)
        }
    }

    pub fn session_file(&self) -> Option<&Path> {
        (!self.session_file.is_empty()).then(|| Path::new(&self.session_file))
    }

    pub fn budget(&self) -> Budget {
        Budget {
            max_sessions: self.max_sessions,
            max_pixel_rate: self.max_pixel_rate,
            max_load: self.max_load,
        }
    }

    /// The source counted for a hardware child of factory `hw_factory`.
    pub fn resolved_source(&self, hw_factory: &str) -> BudgetSource {
        self.source
            .resolve(self.session_file().is_some(), hw_factory)
    }

    /// Where the sessions are read from, for a hardware child of factory
    /// `hw_factory`.
    pub fn source(&self, hw_factory: &str) -> Box<dyn SessionSource> {
        match self.resolved_source(hw_factory) {
            BudgetSource::Mpp | BudgetSource::Auto => Box::new(
                MppListing::new(self.session_file()).for_kind(SessionKind::from_device(hw_factory)),
            ),
            BudgetSource::Drm => Box::new(drm_source(hw_factory)),
            BudgetSource::Jetson => Box::new(JetsonSource::new(super::root::root())),
            BudgetSource::V4l2 => Box::new(v4l2_source(hw_factory)),
            BudgetSource::Nvml => Box::new(NvmlSource::new(
                nvml::library(),
                nvml::Engine::of_factory(hw_factory),
            )),
            BudgetSource::Slots => Box::new(SlotsOnly),
        }
    }

    /// At NULL->READY, outside any lock: starts what the source's first
    /// reading will want (see `SessionSource::prepare`), so that a
    /// decision soon after finds it done.
    pub fn prepare(&self, hw_factory: &str) {
        self.source(hw_factory)
            .prepare(&self.lock_dir(), Duration::ZERO);
    }

    /// Whether the source says the hardware child of `kind` (factory
    /// `hw_factory`) has no hardware behind it: a Jetson without NVENC (the
    /// Orin Nano). The guard then never creates the child, whose creation
    /// may probe the missing device.
    pub fn hardware_absent(&self, hw_factory: &str, kind: SessionKind) -> bool {
        self.resolved_source(hw_factory) == BudgetSource::Jetson
            && !holders::jetson_has(&super::root::root(), kind)
    }

    /// What is wrong with the settings, said at NULL->READY.
    pub fn validate(&self) -> Result<(), String> {
        if !self.lock_dir.is_empty() && Path::new(&self.lock_dir).is_relative() {
            return Err(format!(
                "lock-dir: '{}' is a relative path; processes with other working \
                 directories would keep other budgets: give an absolute one",
                self.lock_dir
            ));
        }
        Ok(())
    }
}

/// How long a count waits for the decision lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Up to `lock-timeout`, then software with a WARNING: a new stream.
    LockTimeout,
    /// Not at all: a reclaim check simply tries again an interval later.
    TryOnce,
}

/// The decision lock of a lock directory, held.
#[derive(Debug)]
pub struct Held {
    ledger: Ledger,
    /// None only for a viewer of a lock directory that does not exist.
    lock: Option<DecisionLock>,
    /// The budget slots taken under this lock count against.
    budget: String,
}

impl Held {
    /// Blocks until this process holds the decision lock of `dir`: for tests
    /// and tools standing in for a guard stuck inside a hardware start.
    pub fn lock(dir: &Path) -> io::Result<Held> {
        let ledger = Ledger::open(dir)?;
        let lock = ledger.lock_decision()?;
        Ok(Held {
            ledger,
            lock: Some(lock),
            budget: "mpp:".into(),
        })
    }

    /// Waits at most `timeout` for the decision lock of `dir`: for a tool
    /// that must never hold the guards up for long.
    pub fn lock_within(dir: &Path, timeout: std::time::Duration) -> io::Result<Held> {
        let ledger = Ledger::open(dir)?;
        let lock = ledger
            .lock_decision_within(timeout, || false)
            .map_err(|e| match e {
                LockWaitError::Io(e) | LockWaitError::Unusable(e) => e,
                _ => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "a guard held {} for {timeout:?}",
                        ledger.decision_lock_path().display()
                    ),
                ),
            })?;
        Ok(Held {
            ledger,
            lock: Some(lock),
            budget: "mpp:".into(),
        })
    }

    /// Stands for the decision lock of `dir`, which does not exist, for a
    /// viewer that must not create it (`edgeguard-vpu`): nothing is locked
    /// or created. Sources find no snapshot in a missing directory and
    /// cannot keep one there, so they read directly; no guard is deciding
    /// (none has made the directory), so the five-reads-a-second bound is
    /// kept but for the one read of a viewer racing the first guard.
    pub fn without_lock_dir(dir: &Path) -> Held {
        Held {
            ledger: Ledger::unopened(dir),
            lock: None,
            budget: "mpp:".into(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.ledger.dir()
    }

    /// Records a hardware child of `kind` held by this process, against the
    /// budget of the source counted, until the slot drops.
    pub fn take_slot(&self, owner: &str, kind: SessionKind, pixel_rate: u64) -> io::Result<Slot> {
        let Some(lock) = &self.lock else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no lock directory {}", self.dir().display()),
            ));
        };
        lock.take_slot(&self.ledger, owner, &self.budget, kind, pixel_rate)
    }
}

/// The VPU as counted under the decision lock.
#[derive(Debug)]
pub struct VpuCount {
    pub view: VpuView,
    /// The listing that was read; None when none was.
    pub session_file: Option<PathBuf>,
    /// The source counted (`auto` resolved); `Auto` when none was.
    pub source: BudgetSource,
    /// Held until a hardware child has opened its session (or failed to).
    pub held: Option<Held>,
    /// What the guard should say on the bus.
    pub warning: Option<CountWarning>,
}

impl VpuCount {
    pub fn not_consulted() -> Self {
        VpuCount {
            view: VpuView::NotConsulted,
            session_file: None,
            source: BudgetSource::Auto,
            held: None,
            warning: None,
        }
    }

    fn lock_timed_out(warning: Option<CountWarning>) -> Self {
        VpuCount {
            view: VpuView::LockTimedOut,
            warning,
            ..VpuCount::not_consulted()
        }
    }

    pub fn session_file_string(&self) -> String {
        self.session_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// Something a count met that the application should hear of.
#[derive(Debug)]
pub enum CountWarning {
    /// Another guard held the decision lock for all of `lock-timeout`.
    LockTimedOut {
        lock_file: PathBuf,
        timeout: Duration,
    },
    /// `decision.lock` is there but cannot be used (a link, FIFO, socket or
    /// unreadable file in its place, which any user who can write `dir` may
    /// plant): the guard decides as if the lock were held past
    /// `lock-timeout`.
    LockUnusable {
        dir: PathBuf,
        lock_file: PathBuf,
        error: io::Error,
    },
    /// The source could not be read: only guards' slots were counted.
    Unreadable {
        source: BudgetSource,
        error: ListingError,
    },
}

impl CountWarning {
    /// The WARNING's user message for an unreadable source: which source,
    /// what it tried to read, and what the guard counts instead.
    pub fn unreadable_message(source: BudgetSource, error: &ListingError) -> String {
        let tried = error.path.display();
        let what = match source {
            BudgetSource::Mpp | BudgetSource::Auto => {
                format!("No MPP session listing is readable (tried '{tried}')")
            }
            BudgetSource::Nvml => {
                format!("NVML cannot be read: the NVIDIA library '{tried}' did not load or answer")
            }
            BudgetSource::Drm => {
                format!("No process's DRM usage stats (fdinfo) under '{tried}' are readable")
            }
            BudgetSource::V4l2 => {
                format!("No V4L2 codec device or its holders are readable under '{tried}'")
            }
            BudgetSource::Jetson => {
                format!("The holders of the Jetson codec nodes are not readable under '{tried}'")
            }
            BudgetSource::Slots => format!("'{tried}' is not readable"),
        };
        format!(
            "budget-source={}: {what}: counting only the hardware children held by guards",
            source.as_str()
        )
    }
}

/// Why no count came out.
#[derive(Debug)]
pub enum CountError {
    /// `stop` said so while waiting for the lock: the element is stopping.
    Stopped,
    /// The lock directory cannot be used.
    LockDir {
        dir: PathBuf,
        what: &'static str,
        error: io::Error,
    },
}

impl CountError {
    /// An ERROR naming the `lock-dir` property and its value.
    pub fn to_error_message(&self) -> Option<gst::ErrorMessage> {
        match self {
            CountError::Stopped => None,
            CountError::LockDir { dir, what, error } => Some(gst::error_msg!(
                gst::ResourceError::OpenReadWrite,
                ("lock-dir: cannot use '{}'", dir.display()),
                ["{}: {}", what, error]
            )),
        }
    }
}

/// Takes the decision lock (waiting as `patience` says, giving up once `stop`
/// says so), then counts the sessions of the source that `settings` and the
/// hardware child's factory `hw_factory` call for, and the guards' slots of
/// that budget, under it.
pub fn count(
    settings: &BudgetSettings,
    hw_factory: &str,
    patience: Patience,
    stop: impl Fn() -> bool,
) -> Result<VpuCount, CountError> {
    let dir = settings.lock_dir();
    let lock_dir_error = |what, error| CountError::LockDir {
        dir: dir.clone(),
        what,
        error,
    };
    let ledger = Ledger::open(&dir).map_err(|e| lock_dir_error("create", e))?;
    let source = settings.source(hw_factory);
    let timeout = match patience {
        Patience::LockTimeout => Duration::from(settings.lock_timeout),
        Patience::TryOnce => Duration::ZERO,
    };
    // Whatever may take time happens here, never under the lock.
    let first_reading_wait = match patience {
        Patience::LockTimeout => nvml::ANSWER_TIMEOUT,
        Patience::TryOnce => Duration::ZERO,
    };
    source.prepare(&dir, first_reading_wait);
    let lock = match ledger.lock_decision_within(timeout, stop) {
        Ok(lock) => lock,
        Err(LockWaitError::Stopped) => return Err(CountError::Stopped),
        Err(LockWaitError::Io(e)) => return Err(lock_dir_error("decision lock", e)),
        // Planted by anyone who can write the directory: software, said.
        Err(LockWaitError::Unusable(error)) => {
            let warning = (patience == Patience::LockTimeout).then(|| CountWarning::LockUnusable {
                dir: dir.clone(),
                lock_file: ledger.decision_lock_path(),
                error,
            });
            return Ok(VpuCount::lock_timed_out(warning));
        }
        Err(LockWaitError::TimedOut) => {
            let warning = (patience == Patience::LockTimeout).then(|| CountWarning::LockTimedOut {
                lock_file: ledger.decision_lock_path(),
                timeout,
            });
            return Ok(VpuCount::lock_timed_out(warning));
        }
    };
    let kind = settings.resolved_source(hw_factory);
    let budget = source.budget_name();
    let ours = BudgetId::of(&budget);
    let slots: Vec<_> = lock
        .live_slots(&ledger)
        .map_err(|e| lock_dir_error("count slots", e))?
        .into_iter()
        .filter(|s| s.budget.counts_against(ours, kind == BudgetSource::Mpp))
        .collect();
    let held = Held {
        ledger,
        lock: Some(lock),
        budget,
    };
    let (listing, warning) = match source.read(&held) {
        Ok(listing) => (Some(listing), None),
        Err(error) => (
            None,
            Some(CountWarning::Unreadable {
                source: kind,
                error,
            }),
        ),
    };
    if listing.is_none() && source.starting() {
        // Nothing known of the hardware yet: software, said as unreadable.
        return Ok(VpuCount {
            view: VpuView::Starting,
            session_file: None,
            source: kind,
            held: Some(held),
            warning,
        });
    }
    let sessions = listing.as_ref().map_or(&[][..], |l| &l.sessions[..]);
    let mut load = load::machine_load(sessions, &slots, process::process_of_thread);
    load.percent = listing.as_ref().and_then(|l| l.load);
    gst::debug!(
        CAT,
        "{:?}: {} listed sessions, {} guard slots: {load:?}",
        listing.as_ref().map(|l| &l.path),
        sessions.len(),
        slots.len()
    );
    Ok(VpuCount {
        view: VpuView::Counted {
            load,
            listed: listing.is_some(),
        },
        session_file: listing
            .map(|l| l.path)
            .filter(|p| !p.as_os_str().is_empty()),
        source: kind,
        held: Some(held),
        warning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_source_is_said_naming_the_source_and_what_it_read() {
        let error = |path: &str| ListingError {
            path: PathBuf::from(path),
            reason: "gone".into(),
        };
        for (source, path, said) in [
            (
                BudgetSource::Mpp,
                "/proc/mpp_service/sessions-summary",
                "MPP session listing",
            ),
            (BudgetSource::Nvml, "libnvidia-ml.so.1", "NVML"),
            (BudgetSource::Drm, "/proc", "DRM usage stats (fdinfo)"),
            (BudgetSource::V4l2, "/sys/class/video4linux", "V4L2 codec"),
            (BudgetSource::Jetson, "/proc", "Jetson codec nodes"),
        ] {
            let message = CountWarning::unreadable_message(source, &error(path));
            assert!(
                message.starts_with(&format!("budget-source={}: ", source.as_str())),
                "{message}"
            );
            assert!(message.contains(said), "{message}");
            assert!(message.contains(&format!("'{path}'")), "{message}");
            assert!(message.ends_with("counting only the hardware children held by guards"));
        }
    }

    #[test]
    fn a_relative_lock_dir_is_refused_naming_it() {
        let settings = BudgetSettings {
            lock_dir: "locks".into(),
            ..Default::default()
        };
        let err = settings.validate().unwrap_err();
        assert!(err.contains("lock-dir") && err.contains("'locks'"), "{err}");
        assert!(BudgetSettings::default().validate().is_ok());
    }

    #[test]
    fn a_count_reads_the_listing_once_per_snapshot_age() {
        let dir = std::env::temp_dir().join(format!("edgeguard-budget-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listing = dir.join("sessions-summary");
        std::fs::write(&listing, "session: pid=1 index=1\n device: a.rkvenc\n").unwrap();
        let settings = BudgetSettings {
            session_file: listing.display().to_string(),
            lock_dir: dir.join("lock").display().to_string(),
            ..Default::default()
        };
        let sessions = |count: VpuCount| match count.view {
            VpuView::Counted { load, listed } => (load.sessions, listed),
            other => panic!("{other:?}"),
        };
        let first = count(&settings, "x265enc", Patience::TryOnce, || false).unwrap();
        assert_eq!(sessions(first), (1, true));
        // Once the snapshot is old, the listing is read again.
        std::fs::write(&listing, "").unwrap();
        let file = super::super::snapshot::path_in(&settings.lock_dir(), &settings.session_file);
        let mut old = super::super::snapshot::load(&file).expect("the count left a snapshot");
        old.read_at = old.read_at.saturating_sub(super::super::snapshot::MAX_AGE);
        super::super::snapshot::store(&file, &old).unwrap();
        let third = count(&settings, "x265enc", Patience::TryOnce, || false).unwrap();
        assert_eq!(sessions(third), (0, true));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
