// SPDX-License-Identifier: MPL-2.0
//! `edgeguard-vpu`: what the machine's video hardware carries and who holds
//! it, as the guards count it. For each budget source found on the machine:
//! its sessions and load, and for each session the process holding it and
//! the guard element accounting for it, or none (an unguarded program: the
//! sessions a budget must leave room for).
//!
//! It reads each source as a deciding guard does, under the guards' decision
//! lock (so the kernel's files are still read at most five times a second
//! machine-wide), waiting for that lock 2 s at most and holding it only for
//! the reads. A viewer creates nothing: where the lock directory does not
//! exist (no guard has run), it shows no slots and reads each source
//! directly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use gstedgeguard::vpu::load::BudgetId;
use gstedgeguard::vpu::source::{self, SessionSource};
use gstedgeguard::vpu::survey::{self, GuardSlot, Holder, Session};
use gstedgeguard::vpu::{
    budget::Held, devices, drm, holders, ledger, listing, nvml, process, root,
};

const USAGE: &str = "\
Usage: edgeguard-vpu [--json] [--watch SECONDS] [--root DIR] [--lock-dir DIR]

Shows, for each video-hardware budget source found on this machine, its
sessions and load and who holds them: process, encoder or decoder, and the
edgeguard element guarding it, or 'not guarded'.

  --json           print {\"sources\": [{\"source\", \"device\", \"budget\", \"sessions\",
                   \"load\", \"holders\": [{\"pid\", \"process\", \"kind\", \"guarded\",
                   \"element\"}]}]}; drm has one entry per render device, v4l2 one
                   per codec node
  --watch SECONDS  print again every SECONDS until interrupted
  --root DIR       read /proc, /sys and /dev under DIR (EDGEGUARD_ROOT)
  --lock-dir DIR   the guards' lock directory (their lock-dir property;
                   default /run/lock/edgeguard)
";

/// How long the decision lock is waited for: a guard holds it while its
/// hardware child opens a session, which takes milliseconds.
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// How long a source may take to get ready before the lock is taken (as a
/// guard's count waits for NVML's first reading).
const PREPARE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Options {
    json: bool,
    watch: Option<Duration>,
    root: Option<PathBuf>,
    lock_dir: Option<PathBuf>,
}

fn parse_options() -> Result<Options, lexopt::Error> {
    use lexopt::prelude::*;
    let mut options = Options::default();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("json") => options.json = true,
            Long("watch") => {
                let seconds: f64 = parser.value()?.parse()?;
                if !(seconds.is_finite() && seconds > 0.0) {
                    return Err("--watch: SECONDS must be a positive number".into());
                }
                options.watch = Some(Duration::from_secs_f64(seconds));
            }
            Long("root") => options.root = Some(parser.value()?.into()),
            Long("lock-dir") => options.lock_dir = Some(parser.value()?.into()),
            Short('h') | Long("help") => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(options)
}

/// What one source carries.
struct SourceReport {
    source: &'static str,
    device: String,
    /// What the guards' slots of this source record (`drm:0000:00:02.0`).
    budget: String,
    holders: Vec<Holder>,
    /// Percent of the engine, when the source measures it.
    load: Option<u32>,
    /// Why the source could not be read.
    error: Option<String>,
}

/// A source found on this machine, by name.
struct Found {
    name: &'static str,
    source: Box<dyn SessionSource>,
    /// The device node the source counts, where it counts one.
    node: Option<String>,
    /// Only known to be there once it reads (NVML: the driver's library
    /// loads): not shown when it cannot be read.
    shown_if_read: bool,
}

/// The sources whose hardware this machine (under EDGEGUARD_ROOT) has,
/// found without opening any device; NVML (`EDGEGUARD_NVML_LIBRARY`) when
/// its library loads.
fn found_sources() -> Vec<Found> {
    let root = root::root();
    let mut found = Vec::new();
    let mut add = |name, present: bool, source: Box<dyn SessionSource>, node: Option<String>| {
        if present {
            found.push(Found {
                name,
                source,
                node,
                shown_if_read: false,
            });
        }
    };
    let mpp = listing::DEFAULT_SESSION_FILES
        .iter()
        .any(|p| root::host_path(p).exists());
    add("mpp", mpp, Box::new(source::MppListing::new(None)), None);
    // One budget per render device, as the guards count them.
    for node in devices::render_nodes(&root) {
        let drm = drm::DrmSource::on_node(root.clone(), &node);
        add("drm", true, Box::new(drm), Some(node.display().to_string()));
    }
    let jetson = holders::jetson_present(&root);
    add(
        "jetson",
        jetson,
        Box::new(holders::JetsonSource::new(root.clone())),
        None,
    );
    // One budget per codec node.
    for v4l2 in holders::V4l2Source::each_codec_node(&root) {
        let node = v4l2.node().map(str::to_string);
        add("v4l2", true, Box::new(v4l2), node);
    }
    for engine in [nvml::Engine::Encoder, nvml::Engine::Decoder] {
        found.push(Found {
            name: "nvml",
            source: Box::new(nvml::NvmlSource::new(nvml::library(), engine)),
            node: None,
            shown_if_read: true,
        });
    }
    found
}

/// The decision lock of `lock_dir`; a viewer creates no lock directory:
/// where none exists, no guard holds a slot, and the sources are read
/// directly.
fn hold(lock_dir: &Path) -> Result<Held, String> {
    match std::fs::symlink_metadata(lock_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Held::without_lock_dir(lock_dir)),
        _ => Held::lock_within(lock_dir, LOCK_WAIT)
            .map_err(|e| format!("lock-dir {}: {e}", lock_dir.display())),
    }
}

/// Reads every source found and the guards' slots under the decision lock.
fn read_sources(lock_dir: &Path) -> Result<Vec<SourceReport>, String> {
    let sources = found_sources();
    // What a source does before a count (NVML's first reading, a DRM
    // baseline scan) is done here too, outside the guards' decision lock.
    for found in &sources {
        found.source.prepare(lock_dir, PREPARE_WAIT);
    }
    let held = hold(lock_dir)?;
    let slots = match ledger::guard_slots(held.dir()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        read => read.map_err(|e| format!("lock-dir: {e}"))?,
    };
    let mut claimed = vec![false; slots.len()];
    let mut reports = Vec::new();
    for found in sources {
        let ours = BudgetId::of(&found.source.budget_name());
        let mine: Vec<GuardSlot> = slots
            .iter()
            .filter(|slot| slot.budget.counts_against(ours, found.name == "mpp"))
            .cloned()
            .collect();
        let report = report(&found, &held, &mine);
        if report.error.is_some() && found.shown_if_read {
            continue;
        }
        // Its slots are shown with it, not under `slots`.
        for (slot, claimed) in slots.iter().zip(claimed.iter_mut()) {
            *claimed |= slot.budget.counts_against(ours, found.name == "mpp");
        }
        reports.push(report);
    }
    drop(held);
    // Slots of budgets no source here reads (`slots`, a source missing).
    let unread: Vec<GuardSlot> = slots
        .into_iter()
        .zip(claimed)
        .filter_map(|(slot, claimed)| (!claimed).then_some(slot))
        .collect();
    if !unread.is_empty() {
        reports.push(SourceReport {
            source: "slots",
            device: lock_dir.display().to_string(),
            budget: String::new(),
            holders: survey::holders(&[], &unread),
            load: None,
            error: None,
        });
    }
    Ok(reports)
}

/// What a source counts: its device node (`drm`, `v4l2`), its budget's
/// device where it names one (`nvml:nvenc`), else the file it read.
fn device(found: &Found, read: &Path) -> String {
    if let Some(node) = &found.node {
        return node.clone();
    }
    match found.source.budget_name().split_once(':') {
        Some((_, device)) if found.name == "nvml" => device.to_string(),
        _ => read.display().to_string(),
    }
}

/// One source's sessions matched to the slots of its budget.
fn report(found: &Found, held: &Held, slots: &[GuardSlot]) -> SourceReport {
    match found.source.read(held) {
        Ok(listing) => {
            let sessions: Vec<Session> = listing
                .sessions
                .iter()
                .map(|s| Session {
                    pid: process::process_of_thread(s.record.tid),
                    kind: s.kind,
                })
                .collect();
            SourceReport {
                source: found.name,
                device: device(found, &listing.path),
                budget: found.source.budget_name(),
                holders: survey::holders(&sessions, slots),
                load: listing.load,
                error: None,
            }
        }
        Err(e) => SourceReport {
            source: found.name,
            device: found
                .node
                .clone()
                .unwrap_or_else(|| e.path.display().to_string()),
            budget: found.source.budget_name(),
            holders: survey::holders(&[], slots),
            load: None,
            error: Some(e.reason),
        },
    }
}

/// The name a process gave itself (`/proc/<pid>/comm`), empty when gone.
fn process_name(pid: u32) -> String {
    let comm = root::host_path(format!("/proc/{pid}/comm"));
    std::fs::read_to_string(comm)
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

fn to_json(reports: &[SourceReport]) -> serde_json::Value {
    let sources: Vec<_> = reports
        .iter()
        .map(|r| {
            let holders: Vec<_> = r
                .holders
                .iter()
                .map(|h| {
                    serde_json::json!({
                        "pid": h.pid,
                        "process": process_name(h.pid),
                        "kind": survey::kind_name(h.kind),
                        "guarded": h.element.is_some(),
                        "element": h.element,
                        "listed": h.listed,
                    })
                })
                .collect();
            serde_json::json!({
                "source": r.source,
                "device": r.device,
                "budget": r.budget,
                "sessions": r.holders.len(),
                "load": r.load.map_or(-1, i64::from),
                "error": r.error,
                "holders": holders,
            })
        })
        .collect();
    serde_json::json!({ "sources": sources })
}

fn to_table(reports: &[SourceReport]) -> String {
    if reports.is_empty() {
        return "no budget source found on this machine, and no guard holds a slot\n".into();
    }
    let mut out = String::new();
    for r in reports {
        let load = r.load.map_or("-".to_string(), |l| format!("{l}%"));
        out += &format!(
            "{}  {}  sessions {}  load {load}\n",
            r.source,
            r.device,
            r.holders.len()
        );
        if let Some(error) = &r.error {
            out += &format!("  unreadable: {error}\n");
            continue;
        }
        if r.holders.is_empty() {
            continue;
        }
        out += &format!(
            "  {:>7}  {:<16}  {:<7}  GUARDED BY\n",
            "PID", "PROCESS", "KIND"
        );
        for h in &r.holders {
            let guard = match (&h.element, h.listed) {
                (Some(element), true) => element.clone(),
                (Some(element), false) => format!("{element} (opening)"),
                (None, _) => "not guarded".to_string(),
            };
            out += &format!(
                "  {:>7}  {:<16}  {:<7}  {guard}\n",
                h.pid,
                process_name(h.pid),
                survey::kind_name(h.kind)
            );
        }
    }
    out
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("edgeguard-vpu: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(root) = &options.root {
        // SAFETY: set before any other thread exists.
        unsafe { std::env::set_var(root::ROOT_ENV, root) };
    }
    let lock_dir = options
        .lock_dir
        .clone()
        .unwrap_or_else(ledger::default_lock_dir);
    loop {
        match read_sources(&lock_dir) {
            Ok(reports) if options.json => println!("{}", to_json(&reports)),
            Ok(reports) => print!("{}", to_table(&reports)),
            Err(e) => {
                eprintln!("edgeguard-vpu: {e}");
                if options.watch.is_none() {
                    return ExitCode::FAILURE;
                }
            }
        }
        match options.watch {
            Some(interval) => std::thread::sleep(interval),
            None => return ExitCode::SUCCESS,
        }
    }
}
