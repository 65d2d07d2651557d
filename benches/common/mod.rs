// SPDX-License-Identifier: MPL-2.0
//! What every benchmark does the same way: each measured run in a child
//! process of its own (this bench binary again, with the variant in
//! `EDGEGUARD_BENCH_VARIANT`), its figures on one `RESULT` line, medians.

#![allow(dead_code)]

use std::process::Command;

const VARIANT: &str = "EDGEGUARD_BENCH_VARIANT";

/// The variant this process is to run, when it is a child.
pub fn variant() -> Option<String> {
    std::env::var(VARIANT).ok()
}

/// Prints a child's figures for `measure`.
pub fn report(values: &[f64]) {
    let values: Vec<String> = values.iter().map(f64::to_string).collect();
    println!("RESULT {}", values.join(" "));
}

/// Runs `variant` in a child process: the figures it reports.
pub fn measure(variant: &str) -> Vec<f64> {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(VARIANT, variant)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{variant}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values: Vec<f64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("{variant} printed no RESULT line"))
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    if verbose() {
        eprintln!("  {variant}: {values:?}");
    }
    values
}

/// EDGEGUARD_BENCH_VERBOSE=1 prints every run on stderr.
pub fn verbose() -> bool {
    std::env::var_os("EDGEGUARD_BENCH_VERBOSE").is_some_and(|v| v == "1")
}

/// Runs `variants` in child processes at the same time (for figures that
/// are each process's own, as peak RSS is, not CPU time): their figures, in
/// order.
pub fn measure_together(variants: &[String]) -> Vec<Vec<f64>> {
    std::thread::scope(|scope| {
        let running: Vec<_> = variants
            .iter()
            .map(|v| scope.spawn(move || measure(v)))
            .collect();
        running.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// A field of /proc/self/status in bytes (`VmHWM`: peak RSS; `VmRSS`: RSS now).
pub fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// A bound row: its line for the summary table, and "pass" or "over".
pub fn bound_row(element: &str, measure: &str, value: f64, digits: usize, bound: Bound) {
    // Judged as printed, so that a line never reads "1.02 (target <= 1.02): over".
    let shown: f64 = format!("{value:.digits$}").parse().unwrap();
    let verdict = if bound.holds(shown) { "pass" } else { "over" };
    println!("  => {measure}: {value:.digits$} (target {bound}): {verdict}");
    println!("RATIO|{element}|{measure}|{value:.digits$}|{bound} {verdict}");
}

/// The target of a bound row.
#[derive(Clone, Copy)]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

impl Bound {
    fn holds(self, value: f64) -> bool {
        match self {
            Bound::AtMost(b) => value <= b,
            Bound::AtLeast(b) => value >= b,
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Bound::AtMost(b) => write!(f, "<= {b}"),
            Bound::AtLeast(b) => write!(f, ">= {b}"),
        }
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// CPU time of this process so far, every thread's, user and system.
pub fn cpu_time() -> std::time::Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let time =
        |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

pub fn launch(description: &str) -> gst::Pipeline {
    use gst::prelude::*;
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}
