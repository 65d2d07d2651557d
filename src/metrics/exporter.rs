// SPDX-License-Identifier: MPL-2.0
//! One tracer's outputs: the HTTP endpoint and the periodic textfile, each
//! on its own thread, and the last textfile write at exit. They run until
//! the process exits: GStreamer keeps no reference to a hook-less tracer.

use parking_lot::Mutex;
use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use super::encode::{self, Format};
use super::params::Params;
use super::textfile::Textfile;
use super::{CAT, http, registry};

/// The exporters of the process's tracers.
static RUNNING: Mutex<Vec<Exporter>> = Mutex::new(Vec::new());

/// Starts what `params` asks for, for the rest of the process.
pub fn start_for_process(params: &Params) {
    let exporter = Exporter::start(params);
    RUNNING.lock().push(exporter);
}

/// Textfiles to write once more when the process exits: the tracer itself
/// is gone at once (GStreamer keeps no reference to a hook-less tracer), so
/// nothing of it is finalized at the end.
static AT_EXIT: Mutex<Vec<Weak<Textfile>>> = Mutex::new(Vec::new());

extern "C" fn write_at_exit() {
    let targets: Vec<Arc<Textfile>> = AT_EXIT.lock().iter().filter_map(Weak::upgrade).collect();
    if targets.is_empty() {
        return;
    }
    // One sample of the process for every textfile.
    let text = encode::encode(&registry::collect(), Format::Prometheus);
    for target in targets {
        target.write_last(&text);
    }
}

fn write_now(target: &Textfile) {
    target.write(&encode::encode(&registry::collect(), Format::Prometheus));
}

/// Writes the textfile now and every `interval` after, for the process.
fn start_writer(target: Arc<Textfile>, interval: gst::ClockTime) -> std::io::Result<()> {
    let every = Duration::from_nanos(interval.nseconds());
    std::thread::Builder::new()
        .name("edgeguard-metrics-textfile".into())
        .spawn(move || {
            loop {
                write_now(&target);
                std::thread::sleep(every);
            }
        })?;
    Ok(())
}

/// Held for the process: dropping it would stop the server.
#[derive(Default)]
struct Exporter {
    _http: Option<http::Server>,
}

impl Exporter {
    /// Starts what `params` asks for. A failure is one WARNING naming the
    /// address or path; the rest of the exporter, and the pipelines, go on.
    fn start(params: &Params) -> Exporter {
        let mut exporter = Exporter::default();
        if let Some(address) = &params.address {
            let limits = http::Limits {
                max_connections: params.max_connections,
                idle_timeout: Duration::from_nanos(params.idle_timeout.nseconds()),
            };
            match http::Server::start(address, limits) {
                Ok(server) => exporter._http = Some(server),
                Err(why) => gst::warning!(CAT, "{why}: metrics are not served over HTTP"),
            }
        }
        if let Some(path) = &params.textfile {
            let target = Arc::new(Textfile::new(path.clone()));
            register_at_exit(&target);
            if let Err(err) = start_writer(target, params.interval) {
                gst::warning!(
                    CAT,
                    "cannot start the textfile writer for {}: {err}",
                    path.display()
                );
            }
        }
        exporter
    }
}

fn register_at_exit(target: &Arc<Textfile>) {
    static REGISTERED: Once = Once::new();
    let mut targets = AT_EXIT.lock();
    targets.retain(|t| t.strong_count() > 0);
    targets.push(Arc::downgrade(target));
    drop(targets);
    // SAFETY: registers a plain extern "C" fn with no arguments.
    REGISTERED.call_once(|| unsafe {
        libc::atexit(write_at_exit);
    });
}
