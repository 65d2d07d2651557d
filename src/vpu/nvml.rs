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
//! on a wedged driver, so they run on one thread of their own per process,
//! and a read waits for it at most `ANSWER_TIMEOUT`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use super::budget::Held;
use super::listing::{ListingError, SessionKind, SessionLoad, SessionRecord};
use super::source::{self, Listing, SessionSource};

pub const LIBRARY_ENV: &str = "EDGEGUARD_NVML_LIBRARY";
pub const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";
/// How long a read waits for NVML: it holds the decision lock meanwhile.
/// The first read of a process initialises NVML, which takes a moment
/// without the persistence daemon.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

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

/// A read asked of the NVML thread.
struct Request {
    library: PathBuf,
    answer: SyncSender<Result<Reading, String>>,
}

/// The thread that makes every NVML call of this process, keeping each
/// library it initialised (NVML is initialised once per process, never
/// shut down: nvmlInit is slow without the persistence daemon).
fn serve(requests: Receiver<Request>) {
    let mut loaded: HashMap<PathBuf, Nvml> = HashMap::new();
    for request in requests {
        let answer = match loaded.get(&request.library) {
            Some(nvml) => read_gpus(nvml).map_err(|e| format!("nvml: {e}")),
            None => match Nvml::builder()
                .lib_path(OsStr::new(&request.library))
                .init()
            {
                Ok(nvml) => {
                    let read = read_gpus(&nvml).map_err(|e| format!("nvml: {e}"));
                    loaded.insert(request.library.clone(), nvml);
                    read
                }
                // Not kept: the driver may be loaded by the next read.
                // The path is the error's: ListingError says it.
                Err(e) => Err(format!("nvml: cannot load and initialise the library: {e}")),
            },
        };
        // The asker may have stopped waiting.
        let _ = request.answer.send(answer);
    }
}

/// The NVML thread's queue, and the answer of a read it has not given yet
/// (a read that timed out): while that is pending, NVML is not asked again.
struct Worker {
    requests: mpsc::Sender<Request>,
    pending: Option<Receiver<Result<Reading, String>>>,
}

static WORKER: Mutex<Option<Worker>> = Mutex::new(None);

/// Reads every GPU through `library`, waiting at most `timeout`.
fn ask(library: PathBuf, timeout: Duration) -> Result<Reading, String> {
    let mut worker = WORKER.lock().unwrap_or_else(|e| e.into_inner());
    if worker.is_none() {
        let (requests, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("edgeguard-nvml".into())
            .spawn(move || serve(receiver))
            .map_err(|e| format!("nvml: cannot start its thread: {e}"))?;
        *worker = Some(Worker {
            requests,
            pending: None,
        });
    }
    let worker = worker.as_mut().expect("started above");
    if let Some(pending) = &worker.pending {
        match pending.try_recv() {
            Err(mpsc::TryRecvError::Empty) => {
                return Err("nvml: an earlier read has not returned yet (a wedged driver?)".into());
            }
            _ => worker.pending = None,
        }
    }
    let (answer, answered) = mpsc::sync_channel(1);
    worker
        .requests
        .send(Request { library, answer })
        .map_err(|_| "nvml: its thread is gone".to_string())?;
    match answered.recv_timeout(timeout) {
        Ok(reading) => reading,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            worker.pending = Some(answered);
            Err(format!(
                "nvml: no answer within {} ms (a wedged driver?)",
                timeout.as_millis()
            ))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("nvml: its thread is gone".into()),
    }
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

impl SessionSource for NvmlSource {
    fn read(&self, held: &Held) -> Result<Listing, ListingError> {
        // Both engines' figures are in one snapshot, shared by encoder and
        // decoder guards.
        let key = format!("nvml:{}", self.library.display());
        let snapshot = source::through_snapshot(held, &key, || {
            let reading =
                ask(self.library.clone(), ANSWER_TIMEOUT).map_err(|reason| ListingError {
                    path: self.library.clone(),
                    reason,
                })?;
            Ok((self.library.clone(), reading.encode()))
        })?;
        Ok(Reading::decode(&snapshot.text).listing(self.engine, snapshot.path))
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
        let err = ask(missing, Duration::from_secs(30)).unwrap_err();
        assert!(err.starts_with("nvml: cannot load"), "{err}");
    }
}
