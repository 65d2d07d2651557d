// SPDX-License-Identifier: MPL-2.0
//! The MPP driver's per-core load, `/proc/mpp_service/load` (under
//! `EDGEGUARD_ROOT`): the `mpp` source's load percent.
//!
//! The Rockchip kernel (`mpp_service.c`, `mpp_show_device_load`) prints one
//! line per core once someone has written a sampling period in ms to
//! `/proc/mpp_service/load_interval`:
//!
//! ```text
//! fdbd0000.rkvenc-core      load:  45.12% utilization:  38.50%
//! ```
//!
//! and, before that, a hint to set the interval and no figures: the source
//! then measures no load. The busiest core of the guard's kind is the load
//! (encoder cores for an encoder, decoder cores for a decoder), as the
//! child is given whichever core the driver picks and the busiest one fills
//! first. `utilization` is the core's busy share of the interval; a line
//! without it gives its `load`.

use std::path::PathBuf;

use super::listing::SessionKind;

/// Where the driver lists its cores' load.
pub const LOAD_FILE: &str = "/proc/mpp_service/load";

/// `LOAD_FILE` under `EDGEGUARD_ROOT`.
pub fn load_file() -> PathBuf {
    super::root::host_path(LOAD_FILE)
}

/// One core's line: its device and its busy percent.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreLoad {
    pub device: String,
    pub percent: f64,
}

/// The value after `key` in `line` ("38.50%" -> 38.5).
fn figure(line: &str, key: &str) -> Option<f64> {
    let (_, rest) = line.split_once(key)?;
    let value = rest.trim_start().split('%').next()?.trim();
    value.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Every core line of the file's text; the interval hint and lines this
/// parser does not know give none.
pub fn parse(text: &str) -> Vec<CoreLoad> {
    text.lines()
        .filter_map(|line| {
            let device = line.split_whitespace().next()?;
            let percent = figure(line, "utilization:").or_else(|| figure(line, " load:"))?;
            Some(CoreLoad {
                device: device.to_string(),
                percent: percent.clamp(0.0, 100.0),
            })
        })
        .collect()
}

/// Whether a core of `device` carries sessions of `kind`: an encoder's
/// load is on encoder cores, a decoder's on decoder cores; a kind no core
/// is named after looks at every core.
fn serves(device: &str, kind: SessionKind) -> bool {
    match kind {
        SessionKind::Encoder | SessionKind::Decoder | SessionKind::Jpeg => {
            SessionKind::from_device(device) == kind
        }
        SessionKind::Codec | SessionKind::Other => true,
    }
}

/// The busiest core of `kind`, in whole percent; None when the file lists
/// none (no `load_interval` set, or no such core).
pub fn busiest(cores: &[CoreLoad], kind: SessionKind) -> Option<u32> {
    cores
        .iter()
        .filter(|c| serves(&c.device, kind))
        .map(|c| c.percent)
        .fold(None, |max: Option<f64>, p| {
            Some(max.map_or(p, |m| m.max(p)))
        })
        .map(|p| p.round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RK3588: two rkvenc cores, two rkvdec cores, the JPEG decoder.
    const LOADED: &str = "\
fdbd0000.rkvenc-core      load:  95.00% utilization:  90.12%
fdbe0000.rkvenc-core      load:  12.00% utilization:  10.00%
fdc38100.rkvdec-core      load:  40.00% utilization:  35.49%
fdc48100.rkvdec-core      load:   0.00% utilization:   0.00%
fdb90000.jpegd            load:   5.00% utilization:   4.00%
";

    const UNSET: &str = "please set load_interval first!!!\n\
        e.g. set 1000ms to load_interval:\n\
        echo 1000 > /proc/mpp_service/load_interval\n";

    #[test]
    fn each_core_line_gives_its_utilization() {
        let cores = parse(LOADED);
        assert_eq!(cores.len(), 5);
        assert_eq!(
            cores[0],
            CoreLoad {
                device: "fdbd0000.rkvenc-core".into(),
                percent: 90.12
            }
        );
        assert_eq!(cores[2].percent, 35.49);
    }

    #[test]
    fn the_busiest_core_of_the_guard_s_kind_is_the_load() {
        let cores = parse(LOADED);
        assert_eq!(busiest(&cores, SessionKind::Encoder), Some(90));
        assert_eq!(busiest(&cores, SessionKind::Decoder), Some(35));
        assert_eq!(busiest(&cores, SessionKind::Jpeg), Some(4));
        assert_eq!(busiest(&cores, SessionKind::Other), Some(90));
    }

    #[test]
    fn without_load_interval_no_load_is_measured() {
        assert!(parse(UNSET).is_empty());
        assert_eq!(busiest(&parse(UNSET), SessionKind::Encoder), None);
        assert_eq!(busiest(&parse(""), SessionKind::Decoder), None);
    }

    #[test]
    fn a_line_with_only_load_or_odd_figures_is_read_or_skipped() {
        let cores = parse(
            "fdbd0000.rkvenc-core load:  70.00%\n\
             fdbe0000.rkvenc-core load: x utilization: y\n\
             fdc38100.rkvdec-core load: 250.00% utilization: NaN%\n\
             \n",
        );
        assert_eq!(cores.len(), 2, "{cores:?}");
        assert_eq!(busiest(&cores, SessionKind::Encoder), Some(70));
        // A figure past 100% is capped; NaN is no figure, `load` stands in.
        assert_eq!(busiest(&cores, SessionKind::Decoder), Some(100));
    }
}
