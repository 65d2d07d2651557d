// SPDX-License-Identifier: MPL-2.0
//! The tracer's `params`, as GST_TRACERS passes them:
//! `edgeguard-metrics(address=127.0.0.1:9464,textfile=/path/x.prom,interval=10)`.

use gst::glib;
use gst::prelude::*;
use std::path::PathBuf;
use std::str::FromStr;

/// node_exporter's textfile collector reads the directory on each of its
/// scrapes (typically every 15 s or more): writing more often buys nothing.
pub const DEFAULT_INTERVAL: gst::ClockTime = gst::ClockTime::from_seconds(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Where HTTP `GET /metrics` is served, e.g. "127.0.0.1:9464".
    pub address: Option<String>,
    pub textfile: Option<PathBuf>,
    pub interval: gst::ClockTime,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            address: None,
            textfile: None,
            interval: DEFAULT_INTERVAL,
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
}
