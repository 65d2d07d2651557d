// SPDX-License-Identifier: MPL-2.0
//! The `nvml` budget source (NVIDIA NVENC/NVDEC): the encoder sessions of
//! every GPU of the machine with the processes holding them, and the
//! encoder and decoder utilisation, read through NVML
//! (`nvmlDeviceGetEncoderSessions`, `nvmlDeviceGetEncoderStats`,
//! `nvmlDeviceGetEncoderUtilization`, `nvmlDeviceGetDecoderUtilization`).
//! None of them opens an encoder session or needs a privilege.
//!
//! GeForce cards cap the NVENC sessions of the whole machine, all cards
//! together, so an encoder guard counts the sessions of every GPU. NVDEC has
//! no session cap, only engine time: a decoder guard counts no listed
//! session (only its fellow decoder guards' slots) and the decoder
//! utilisation as its load. The load is the busiest GPU's: a guard does not
//! know which GPU its child will use.
//!
//! The library (`EDGEGUARD_NVML_LIBRARY`, default `libnvidia-ml.so.1`) is
//! loaded at run time by the nvml-wrapper crate, so the plugin loads where
//! there is no NVIDIA driver; a library that is missing or fails to
//! initialise is a read error, said in the decision. NVML calls can block
//! on a wedged driver (and nvmlInit takes a moment without the persistence
//! daemon), so they run on one thread of their own per process, which keeps
//! the latest reading it completed. A read under the decision lock never
//! waits for that thread: it asks for a new reading and takes the latest
//! completed one. NVML is started outside the lock (`prepare`: at
//! NULL->READY without waiting, and before a count waits for the lock, up
//! to `ANSWER_TIMEOUT`); while no reading has completed the source is
//! unreadable for now, and the guard takes the software child.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::Path;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use super::budget::Held;
use super::listing::{ListingError, SessionKind, SessionLoad, SessionRecord};
use super::source::{self, Failure, Listing, SessionSource};

pub const LIBRARY_ENV: &str = "EDGEGUARD_NVML_LIBRARY";
pub const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";
/// How long a count waits, before it takes the decision lock, for this
/// process's first NVML reading (nvmlInit takes a moment without the
/// persistence daemon). Never waited for under the lock.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a read under the decision lock waits for a first reading that
/// it asked for itself (nothing called `prepare`): short, and once per
/// process; a guard always prepares outside the lock.
const UNPREPARED_WAIT: Duration = Duration::from_millis(50);
/// A completed reading older than this, while the next one has not come
/// back, is a wedged driver's: not used.
const STALE_AFTER: Duration = Duration::from_secs(2);

/// The NVML library to load: `EDGEGUARD_NVML_LIBRARY`, or the driver's
/// soname. Read at each use, as `EDGEGUARD_ROOT` is.
pub fn library() -> PathBuf {
    match std::env::var_os(LIBRARY_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_LIBRARY),
    }
}

/// Which engine a guard's hardware child uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Encoder,
    Decoder,
}

impl Engine {
    /// nvcodec's decoders are `nv*dec` (nvh264dec, nvh265sldec, nvjpegdec);
    /// everything else counted through NVML encodes.
    pub fn of_factory(factory: &str) -> Engine {
        match factory.to_ascii_lowercase().ends_with("dec") {
            true => Engine::Decoder,
            false => Engine::Encoder,
        }
    }
}

/// One NVENC session as NVML lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EncoderSession {
    /// The process holding it; 0 when the driver lists a count only.
    pid: u32,
    id: u32,
}

/// One GPU's reading; a utilisation is None where the GPU cannot say (an
/// H100 has no NVENC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Gpu {
    encoder_percent: Option<u32>,
    decoder_percent: Option<u32>,
    sessions: Vec<EncoderSession>,
}

/// Every GPU's reading, as one read of NVML gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Reading {
    gpus: Vec<Gpu>,
}

fn percent_text(p: Option<u32>) -> String {
    p.map_or("-1".into(), |p| p.to_string())
}

impl Reading {
    /// The reading as kept in the lock directory's snapshot: a `gpu` line
    /// per GPU, then a `session` line per encoder session of it.
    fn encode(&self) -> String {
        let mut text = String::new();
        for (index, gpu) in self.gpus.iter().enumerate() {
            text.push_str(&format!(
                "gpu index={index} encoder={} decoder={}\n",
                percent_text(gpu.encoder_percent),
                percent_text(gpu.decoder_percent)
            ));
            for s in &gpu.sessions {
                text.push_str(&format!("session pid={} id={}\n", s.pid, s.id));
            }
        }
        text
    }

    fn decode(text: &str) -> Reading {
        let mut gpus: Vec<Gpu> = Vec::new();
        for line in text.lines() {
            let Some((what, rest)) = line.split_once(' ') else {
                continue;
            };
            let field = |name: &str| {
                rest.split_whitespace()
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            };
            let percent = |name: &str| field(name).and_then(|v| v.parse::<u32>().ok());
            match what {
                "gpu" => gpus.push(Gpu {
                    encoder_percent: percent("encoder"),
                    decoder_percent: percent("decoder"),
                    sessions: Vec::new(),
                }),
                "session" => {
                    let (Some(gpu), Some(pid), Some(id)) = (
                        gpus.last_mut(),
                        field("pid").and_then(|v| v.parse().ok()),
                        field("id").and_then(|v| v.parse().ok()),
                    ) else {
                        continue;
                    };
                    gpu.sessions.push(EncoderSession { pid, id });
                }
                _ => (),
            }
        }
        Reading { gpus }
    }

    /// What a guard of `engine` counts: every GPU's encoder sessions for an
    /// encoder (none for a decoder: NVDEC has no session cap), and the
    /// busiest GPU's utilisation of that engine.
    fn listing(&self, engine: Engine, path: PathBuf) -> Listing {
        let sessions = match engine {
            Engine::Decoder => Vec::new(),
            Engine::Encoder => self
                .gpus
                .iter()
                .enumerate()
                .flat_map(|(index, gpu)| {
                    gpu.sessions.iter().map(move |s| SessionLoad {
                        record: SessionRecord {
                            tid: s.pid,
                            index: u64::from(s.id),
                            device: format!("nvidia{index}.nvenc"),
                        },
                        kind: SessionKind::Encoder,
                        pixel_rate: None,
                    })
                })
                .collect(),
        };
        let load = self
            .gpus
            .iter()
            .filter_map(|gpu| match engine {
                Engine::Encoder => gpu.encoder_percent,
                Engine::Decoder => gpu.decoder_percent,
            })
            .max()
            .map(|p| p.min(100));
        Listing {
            path,
            sessions,
            load,
        }
    }
}

/// A value NVML may not support on this GPU: None then, an error otherwise.
fn optional<T>(value: Result<T, NvmlError>) -> Result<Option<T>, NvmlError> {
    match value {
        Ok(v) => Ok(Some(v)),
        Err(NvmlError::NotSupported) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The encoder sessions of one GPU. The list may grow between NVML's count
/// and its copy (insufficient size): asked again then. A driver that lists
/// no sessions but counts them gives sessions of unknown holders.
fn encoder_sessions(device: &nvml_wrapper::Device) -> Result<Vec<EncoderSession>, NvmlError> {
    let mut tries = 0;
    let listed = loop {
        match device.encoder_sessions() {
            Err(NvmlError::InsufficientSize(_)) if tries < 3 => tries += 1,
            other => break optional(other)?,
        }
    };
    if let Some(listed) = listed {
        return Ok(listed
            .into_iter()
            .map(|s| EncoderSession {
                pid: s.pid,
                id: s.session_id,
            })
            .collect());
    }
    let count = optional(device.encoder_stats())?.map_or(0, |s| s.session_count);
    Ok((0..count).map(|id| EncoderSession { pid: 0, id }).collect())
}

fn read_gpus(nvml: &Nvml) -> Result<Reading, NvmlError> {
    let mut gpus = Vec::new();
    for index in 0..nvml.device_count()? {
        let device = nvml.device_by_index(index)?;
        gpus.push(Gpu {
            encoder_percent: optional(device.encoder_utilization())?.map(|u| u.utilization),
            decoder_percent: optional(device.decoder_utilization())?.map(|u| u.utilization),
            sessions: encoder_sessions(&device)?,
        });
    }
    Ok(Reading { gpus })
}

/// What the NVML thread knows of one library.
#[derive(Default)]
struct LibraryState {
    /// The latest reading it completed, and when.
    latest: Option<(Instant, Result<Reading, String>)>,
    /// A reading was asked for and has not come back.
    in_flight: bool,
}

/// The NVML thread's queue (the library to read) and what it completed.
struct Worker {
    requests: Mutex<Option<mpsc::Sender<PathBuf>>>,
    libraries: Mutex<BTreeMap<PathBuf, LibraryState>>,
    /// Signalled each time a reading completes.
    completed: Condvar,
}

static WORKER: Worker = Worker {
    requests: Mutex::new(None),
    libraries: Mutex::new(BTreeMap::new()),
    completed: Condvar::new(),
};

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The thread that makes every NVML call of this process, keeping each
/// library it initialised (NVML is initialised once per process, never
/// shut down: nvmlInit is slow without the persistence daemon).
fn serve(requests: Receiver<PathBuf>) {
    let mut loaded: HashMap<PathBuf, Nvml> = HashMap::new();
    for library in requests {
        let answer = match loaded.get(&library) {
            Some(nvml) => read_gpus(nvml).map_err(|e| format!("nvml: {e}")),
            None => match Nvml::builder().lib_path(OsStr::new(&library)).init() {
                Ok(nvml) => {
                    let read = read_gpus(&nvml).map_err(|e| format!("nvml: {e}"));
                    loaded.insert(library.clone(), nvml);
                    read
                }
                // Not kept: the driver may be loaded by the next read.
                // The path is the error's: ListingError says it.
                Err(e) => Err(format!("nvml: cannot load and initialise the library: {e}")),
            },
        };
        let mut libraries = lock(&WORKER.libraries);
        let state = libraries.entry(library).or_default();
        state.latest = Some((Instant::now(), answer));
        state.in_flight = false;
        WORKER.completed.notify_all();
    }
}

/// Asks the NVML thread for a reading of `library` unless one is on its
/// way; never waits for it. True when this asked for the library's first
/// reading in this process.
fn start(library: &Path) -> Result<bool, String> {
    let mut libraries = lock(&WORKER.libraries);
    let state = libraries.entry(library.to_path_buf()).or_default();
    if state.in_flight {
        return Ok(false);
    }
    let first = state.latest.is_none();
    let mut requests = lock(&WORKER.requests);
    if requests.is_none() {
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("edgeguard-nvml".into())
            .spawn(move || serve(receiver))
            .map_err(|e| format!("nvml: cannot start its thread: {e}"))?;
        *requests = Some(sender);
    }
    let sent = requests
        .as_ref()
        .is_some_and(|r| r.send(library.to_path_buf()).is_ok());
    if !sent {
        return Err("nvml: its thread is gone".into());
    }
    state.in_flight = true;
    Ok(first)
}

/// Waits at most `timeout` until `library` has a completed reading.
fn await_first(library: &Path, timeout: Duration) {
    let libraries = lock(&WORKER.libraries);
    let _ = WORKER
        .completed
        .wait_timeout_while(libraries, timeout, |l| {
            l.get(library)
                .is_some_and(|s| s.latest.is_none() && s.in_flight)
        });
}

/// What a read under the lock may use of `library`'s readings.
#[derive(Debug)]
enum Latest {
    Reading(Reading),
    /// The library failed to load or answer, or its reading is stale.
    Failed(String),
    /// No reading has completed yet: NVML is still starting.
    NotYet,
}

/// The latest completed reading of `library`, without waiting.
fn latest(library: &Path) -> Latest {
    let libraries = lock(&WORKER.libraries);
    let Some(state) = libraries.get(library) else {
        return Latest::NotYet;
    };
    match &state.latest {
        None => Latest::NotYet,
        Some((at, _)) if state.in_flight && at.elapsed() > STALE_AFTER => Latest::Failed(format!(
            "nvml: no answer within {} ms (a wedged driver?)",
            STALE_AFTER.as_millis()
        )),
        Some((_, Ok(reading))) => Latest::Reading(reading.clone()),
        Some((_, Err(e))) => Latest::Failed(e.clone()),
    }
}

/// Reads every GPU through `library`: a new reading is asked for, and the
/// latest completed one given, without waiting for the new one. Only where
/// nothing prepared NVML (a tool that reads without `prepare`), the first
/// reading of the process is waited for, at most `UNPREPARED_WAIT`.
fn ask(library: &Path) -> Latest {
    match start(library) {
        Err(e) => return Latest::Failed(e),
        Ok(true) => await_first(library, UNPREPARED_WAIT),
        Ok(false) => (),
    }
    latest(library)
}

/// NVENC sessions and NVENC/NVDEC utilisation of every GPU, for a guard
/// of `engine`.
#[derive(Debug, Clone)]
pub struct NvmlSource {
    library: PathBuf,
    engine: Engine,
}

impl NvmlSource {
    pub fn new(library: PathBuf, engine: Engine) -> Self {
        NvmlSource { library, engine }
    }
}

impl NvmlSource {
    /// The reading under the lock: the latest completed one. A failure is
    /// kept for every guard of the machine, except that this process's
    /// NVML has not answered yet: another process's may have.
    fn reading(&self) -> Result<(PathBuf, String), Failure> {
        let error = |reason| ListingError {
            path: self.library.clone(),
            reason,
        };
        match ask(&self.library) {
            Latest::Reading(reading) => Ok((self.library.clone(), reading.encode())),
            Latest::Failed(reason) => Err(error(reason).into()),
            Latest::NotYet => Err(Failure {
                error: error(format!(
                    "nvml: no answer within {} ms: its first reading has not completed \
                     (a wedged driver?)",
                    ANSWER_TIMEOUT.as_millis()
                )),
                keep: false,
            }),
        }
    }
}

impl SessionSource for NvmlSource {
    /// Starts NVML and a first reading on the NVML thread; with `patience`,
    /// waits that long at most for the first reading to complete.
    fn prepare(&self, _lock_dir: &Path, patience: Duration) {
        if start(&self.library).is_ok() && !patience.is_zero() {
            await_first(&self.library, patience);
        }
    }

    fn read(&self, held: &Held) -> Result<Listing, ListingError> {
        // Both engines' figures are in one snapshot, shared by encoder and
        // decoder guards.
        let key = format!("nvml:{}", self.library.display());
        let snapshot = source::through_snapshot_after(held, &key, |_| self.reading())?;
        Ok(Reading::decode(&snapshot.text).listing(self.engine, snapshot.path))
    }

    /// No reading of this process's NVML thread has completed yet.
    fn starting(&self) -> bool {
        matches!(latest(&self.library), Latest::NotYet)
    }

    /// Encoders and decoders are separate budgets: NVENC sessions are
    /// capped, NVDEC sessions are not.
    fn budget_name(&self) -> String {
        match self.engine {
            Engine::Encoder => "nvml:nvenc".into(),
            Engine::Decoder => "nvml:nvdec".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Reading {
        Reading {
            gpus: vec![
                Gpu {
                    encoder_percent: Some(30),
                    decoder_percent: Some(90),
                    sessions: vec![
                        EncoderSession { pid: 10, id: 1 },
                        EncoderSession { pid: 11, id: 2 },
                    ],
                },
                // An H100: no NVENC.
                Gpu {
                    encoder_percent: None,
                    decoder_percent: Some(5),
                    sessions: vec![],
                },
                Gpu {
                    encoder_percent: Some(60),
                    decoder_percent: None,
                    sessions: vec![EncoderSession { pid: 0, id: 0 }],
                },
            ],
        }
    }

    #[test]
    fn a_reading_round_trips_through_its_snapshot_text() {
        let r = reading();
        assert_eq!(Reading::decode(&r.encode()), r);
        assert_eq!(Reading::decode(""), Reading::default());
        // A session line before any GPU line belongs to none.
        assert_eq!(Reading::decode("session pid=1 id=1\n"), Reading::default());
    }

    #[test]
    fn encoders_count_every_gpus_sessions_and_the_busiest_encoder() {
        let listing = reading().listing(Engine::Encoder, PathBuf::from("lib"));
        let pids: Vec<_> = listing.sessions.iter().map(|s| s.record.tid).collect();
        assert_eq!(pids, [10, 11, 0]);
        assert!(
            listing
                .sessions
                .iter()
                .all(|s| s.kind == SessionKind::Encoder)
        );
        assert_eq!(listing.sessions[2].record.device, "nvidia2.nvenc");
        assert_eq!(listing.load, Some(60));
    }

    #[test]
    fn decoders_count_no_sessions_only_the_busiest_decoder() {
        let listing = reading().listing(Engine::Decoder, PathBuf::from("lib"));
        assert!(listing.sessions.is_empty());
        assert_eq!(listing.load, Some(90));
        let none = Reading {
            gpus: vec![Gpu::default()],
        };
        assert_eq!(none.listing(Engine::Decoder, PathBuf::new()).load, None);
    }

    #[test]
    fn nvcodec_decoders_are_told_from_encoders_by_name() {
        for (factory, engine) in [
            ("nvh264dec", Engine::Decoder),
            ("nvh265sldec", Engine::Decoder),
            ("nvjpegdec", Engine::Decoder),
            ("nvh264enc", Engine::Encoder),
            ("nvautogpuh265enc", Engine::Encoder),
            ("fakenvh264enc", Engine::Encoder),
        ] {
            assert_eq!(Engine::of_factory(factory), engine, "{factory}");
        }
    }

    #[test]
    fn a_missing_library_is_an_error_not_a_crash() {
        let missing = std::env::temp_dir().join("edgeguard-no-such-libnvidia-ml.so");
        assert!(start(&missing).unwrap());
        await_first(&missing, Duration::from_secs(30));
        match latest(&missing) {
            Latest::Failed(err) => assert!(err.starts_with("nvml: cannot load"), "{err}"),
            other => panic!("{other:?}"),
        }
    }
}
