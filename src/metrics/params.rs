// SPDX-License-Identifier: MPL-2.0
//! The tracer's `params`, as GST_TRACERS passes them:
//! `edgeguard-metrics(address=127.0.0.1:9464,textfile=/path/x.prom,interval=10)`,
//! and the HTTP endpoint's limits, `max-connections=64,idle-timeout=30`.

use gst::glib;
use gst::prelude::*;
use std::path::PathBuf;
use std::str::FromStr;

/// node_exporter's textfile collector reads the directory on each of its
/// scrapes (typically every 15 s or more): writing more often buys nothing.
pub const DEFAULT_INTERVAL: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// Enough for a few Prometheus servers (each keeps one connection per
/// target) and people with curl; small enough that a scanner cannot make the
/// endpoint hold more than about a megabyte of buffers.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 64;
/// Longer than the usual scrape intervals (15 s), so Prometheus keeps its
/// connection between scrapes; a connection left idle past it is closed.
pub const DEFAULT_IDLE_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(30);
/// More than any process needs; a bound on what a typo can ask for.
const MAX_MAX_CONNECTIONS: u64 = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Where HTTP `GET /metrics` is served, e.g. "127.0.0.1:9464".
    pub address: Option<String>,
    pub textfile: Option<PathBuf>,
    pub interval: gst::ClockTime,
    /// HTTP connections open at once; more are closed as they come.
    pub max_connections: u64,
    /// How long an HTTP connection may wait for a request, or for its client
    /// to read an answer, before it is closed.
    pub idle_timeout: gst::ClockTime,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            address: None,
            textfile: None,
            interval: DEFAULT_INTERVAL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Parses `params`. What cannot be used is left at its default and told in
/// the returned problems, so one typo costs one field, not the exporter.
pub fn parse(params: Option<&str>) -> (Params, Vec<String>) {
    let mut out = Params::default();
    let mut problems = Vec::new();
    let Some(params) = params.map(str::trim).filter(|p| !p.is_empty()) else {
        return (out, problems);
    };
    // The GstStructure syntax, as GStreamer's own tracers parse their params.
    let structure = match gst::Structure::from_str(&format!("edgeguard-metrics,{params}")) {
        Ok(s) => s,
        Err(_) => {
            problems.push(format!("cannot parse params '{params}'"));
            return (out, problems);
        }
    };
    for (field, value) in structure.iter() {
        match field.as_str() {
            "address" => out.address = text(value),
            "textfile" => out.textfile = text(value).map(PathBuf::from),
            "interval" => match seconds(value) {
                Some(interval) => out.interval = interval,
                None => problems.push(format!(
                    "interval must be a positive number of seconds, not {value:?}"
                )),
            },
            "idle-timeout" => match seconds(value) {
                Some(timeout) => out.idle_timeout = timeout,
                None => problems.push(format!(
                    "idle-timeout must be a positive number of seconds, not {value:?}"
                )),
            },
            "max-connections" => match count(value) {
                Some(max) => out.max_connections = max,
                None => problems.push(format!(
                    "max-connections must be a whole number from 1 to {MAX_MAX_CONNECTIONS}, \
                     not {value:?}"
                )),
            },
            other => problems.push(format!("unknown parameter '{other}'")),
        }
    }
    (out, problems)
}

fn text(value: &glib::SendValue) -> Option<String> {
    value
        .get::<String>()
        .ok()
        .or_else(|| value.serialize().ok().map(|s| s.to_string()))
        .filter(|s| !s.is_empty())
}

fn count(value: &glib::SendValue) -> Option<u64> {
    let n = if let Ok(i) = value.get::<i32>() {
        u64::try_from(i).ok()?
    } else {
        value.get::<String>().ok()?.parse().ok()?
    };
    (1..=MAX_MAX_CONNECTIONS).contains(&n).then_some(n)
}

fn seconds(value: &glib::SendValue) -> Option<gst::ClockTime> {
    let secs = if let Ok(i) = value.get::<i32>() {
        f64::from(i)
    } else if let Ok(f) = value.get::<f64>() {
        f
    } else {
        value.get::<String>().ok()?.parse().ok()?
    };
    (secs.is_finite() && secs > 0.0)
        .then(|| gst::ClockTime::from_nseconds((secs * 1e9).min(u64::MAX as f64) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_form() {
        gst::init().unwrap();
        let (p, problems) = parse(Some(
            "address=127.0.0.1:9464,textfile=/var/lib/prometheus/node-exporter/edgeguard.prom,interval=10",
        ));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(p.address.as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(
            p.textfile.unwrap(),
            PathBuf::from("/var/lib/prometheus/node-exporter/edgeguard.prom")
        );
        assert_eq!(p.interval, gst::ClockTime::from_seconds(10));
    }

    #[test]
    fn nothing_given_exports_nothing() {
        gst::init().unwrap();
        assert_eq!(parse(None), (Params::default(), vec![]));
        assert_eq!(parse(Some("")), (Params::default(), vec![]));
    }

    #[test]
    fn a_bad_field_costs_only_that_field() {
        gst::init().unwrap();
        let (p, problems) = parse(Some("address=localhost:9464,interval=0,colour=red"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(p.interval, DEFAULT_INTERVAL);
        let (p, problems) = parse(Some("interval=0.5,address=\"[::1]:9464\""));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(p.interval, gst::ClockTime::from_mseconds(500));
        assert_eq!(p.address.as_deref(), Some("[::1]:9464"));
    }

    #[test]
    fn connection_limits_are_read_and_bounded() {
        gst::init().unwrap();
        let (p, problems) = parse(Some("max-connections=8,idle-timeout=2.5"));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(p.max_connections, 8);
        assert_eq!(p.idle_timeout, gst::ClockTime::from_mseconds(2500));
        let (p, problems) = parse(Some("max-connections=0,idle-timeout=-1"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(p.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(p.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        let (_, problems) = parse(Some("max-connections=1000000"));
        assert!(problems[0].contains("max-connections"), "{problems:?}");
    }
}
