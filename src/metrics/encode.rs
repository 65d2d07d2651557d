// SPDX-License-Identifier: MPL-2.0
//! The exposition: published values as metric families of a fresh
//! `prometheus_client` registry per scrape, encoded as Prometheus text or
//! OpenMetrics. A registry built per scrape holds exactly the live elements,
//! so no series of a gone element can linger.

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::connections::Snapshot;
use super::registry::{Labels, Published};
use super::sample::{DelayStats, GuardStats, LeakStats, Sample};

/// How a scrape wants the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4: what promtool and node_exporter's textfile
    /// collector read, and what a client that asks for nothing gets.
    Prometheus,
    OpenMetrics,
}

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Format {
    /// OpenMetrics when the client's Accept header names it (Prometheus
    /// itself does, ranking it first), the Prometheus text format otherwise.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

type LabelSet = Vec<(String, String)>;
type GaugeFamily = Family<LabelSet, Gauge<f64, AtomicU64>>;
type CounterFamily = Family<LabelSet, Counter>;

fn labels(l: &Labels, extra: &[(&str, String)]) -> LabelSet {
    let mut set = vec![
        ("pipeline".to_string(), l.pipeline.clone()),
        ("element".to_string(), l.element.clone()),
    ];
    set.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    set
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> GaugeFamily {
    let family = GaugeFamily::default();
    registry.register(name, help, family.clone());
    family
}

/// `name` without `_total`: the encoder appends it to counters.
fn counter(registry: &mut Registry, name: &str, help: &str) -> CounterFamily {
    let family = CounterFamily::default();
    registry.register(name, help, family.clone());
    family
}

/// The families both guards have, under `edgeguard_encoder_*` or
/// `edgeguard_decoder_*`.
struct GuardFamilies {
    noun: &'static str,
    decisions: CounterFamily,
    hardware: GaugeFamily,
    switches: CounterFamily,
    replayed: CounterFamily,
    lost: CounterFamily,
}

impl GuardFamilies {
    fn new(registry: &mut Registry, noun: &'static str) -> Self {
        let name = |what: &str| format!("edgeguard_{noun}_{what}");
        GuardFamilies {
            noun,
            decisions: counter(
                registry,
                &name("decisions"),
                &format!("Hardware or software {noun} decisions, by chosen {noun} and reason"),
            ),
            hardware: gauge(
                registry,
                &name("hardware"),
                &format!("1 when the {noun} in use now is the hardware one, else 0"),
            ),
            switches: counter(
                registry,
                &name("switches"),
                &format!("Mid-stream {noun} changes (failover, reclaim)"),
            ),
            replayed: counter(
                registry,
                &name("frames_replayed"),
                &format!("Frames in flight at a switch that were sent to the new {noun}"),
            ),
            lost: counter(
                registry,
                &name("frames_lost"),
                "Frames in flight at a switch that neither child had",
            ),
        }
    }

    fn add(&self, l: &Labels, stats: &GuardStats) {
        let set = labels(l, &[]);
        for ((factory, hardware, reason), count) in &stats.decisions {
            let extra = [
                (self.noun, factory.clone()),
                ("hardware", hardware.to_string()),
                ("reason", reason.to_string()),
            ];
            self.decisions
                .get_or_create(&labels(l, &extra))
                .inc_by(*count);
        }
        if stats.last.is_some() {
            let now = if stats.hardware_now() { 1.0 } else { 0.0 };
            self.hardware.get_or_create(&set).set(now);
        }
        self.switches.get_or_create(&set).inc_by(stats.switches);
        self.replayed
            .get_or_create(&set)
            .inc_by(stats.frames_replayed);
        self.lost.get_or_create(&set).inc_by(stats.frames_lost);
    }
}

struct VpuFamilies {
    sessions: GaugeFamily,
    max_sessions: GaugeFamily,
    pixel_rate: GaugeFamily,
    load: GaugeFamily,
}

impl VpuFamilies {
    fn new(registry: &mut Registry) -> Self {
        VpuFamilies {
            sessions: gauge(
                registry,
                "edgeguard_vpu_sessions",
                "VPU sessions in use that the guard's last decision saw",
            ),
            max_sessions: gauge(
                registry,
                "edgeguard_vpu_max_sessions",
                "The guard's VPU session budget at its last decision",
            ),
            pixel_rate: gauge(
                registry,
                "edgeguard_vpu_pixel_rate",
                "Encoder load in pixels per second that the encoder's last decision saw, \
                 without its own stream",
            ),
            load: gauge(
                registry,
                "edgeguard_vpu_load",
                "Percent of the engine busy that the guard's last decision measured, where \
                 its budget source measures load",
            ),
        }
    }

    fn add(&self, l: &Labels, stats: &GuardStats, encoder: bool) {
        let Some(last) = &stats.last else { return };
        let set = labels(l, &[("source", last.source.to_string())]);
        self.sessions.get_or_create(&set).set(last.sessions.into());
        if last.load >= 0 {
            self.load.get_or_create(&set).set(last.load.into());
        }
        self.max_sessions
            .get_or_create(&set)
            .set(last.max_sessions.into());
        if encoder {
            self.pixel_rate
                .get_or_create(&set)
                .set(last.pixel_rate as f64);
        }
    }
}

struct DelayFamilies {
    delay: GaugeFamily,
    level_time: GaugeFamily,
    level_buffers: GaugeFamily,
    level_bytes: GaugeFamily,
    dropped: CounterFamily,
    copied: CounterFamily,
}

impl DelayFamilies {
    fn new(registry: &mut Registry) -> Self {
        DelayFamilies {
            delay: gauge(
                registry,
                "edgeguard_delay_seconds",
                "The delay delaybuffer is configured for",
            ),
            level_time: gauge(
                registry,
                "edgeguard_delay_level_seconds",
                "Running time held now, oldest to newest buffer",
            ),
            level_buffers: gauge(
                registry,
                "edgeguard_delay_level_buffers",
                "Buffers held now",
            ),
            level_bytes: gauge(registry, "edgeguard_delay_level_bytes", "Bytes held now"),
            dropped: counter(
                registry,
                "edgeguard_delay_dropped",
                "Buffers dropped (leaky, a lowered delay, late after relinking)",
            ),
            copied: counter(
                registry,
                "edgeguard_delay_copied",
                "Buffers whose data delaybuffer copied (only from source pools that cannot grow)",
            ),
        }
    }

    fn add(&self, l: &Labels, pads: &[DelayStats]) {
        for pad in pads {
            let set = labels(l, &[("pad", pad.pad.clone())]);
            let seconds = |t: gst::ClockTime| t.nseconds() as f64 / 1e9;
            self.delay.get_or_create(&set).set(seconds(pad.delay));
            self.level_time
                .get_or_create(&set)
                .set(seconds(pad.level_time));
            self.level_buffers
                .get_or_create(&set)
                .set(pad.level_buffers.into());
            self.level_bytes
                .get_or_create(&set)
                .set(pad.level_bytes as f64);
            self.dropped.get_or_create(&set).inc_by(pad.dropped);
            self.copied.get_or_create(&set).inc_by(pad.copied);
        }
    }
}

struct LeakFamilies {
    findings: GaugeFamily,
    cycles: CounterFamily,
    device_handles: GaugeFamily,
}

impl LeakFamilies {
    fn new(registry: &mut Registry) -> Self {
        LeakFamilies {
            findings: gauge(
                registry,
                "edgeguard_leak_findings",
                "Findings of leakcheck's last judged report, by kind",
            ),
            cycles: counter(
                registry,
                "edgeguard_leak_cycles",
                "PLAYING..NULL cycles leakcheck judged",
            ),
            device_handles: gauge(
                registry,
                "edgeguard_leak_device_handles",
                "Device handles of the process matching leakcheck's devices patterns, open now",
            ),
        }
    }

    fn add(&self, l: &Labels, stats: &LeakStats) {
        for (kind, count) in &stats.findings {
            let set = labels(l, &[("kind", kind.to_string())]);
            self.findings.get_or_create(&set).set(*count as f64);
        }
        let set = labels(l, &[]);
        self.cycles.get_or_create(&set).inc_by(stats.cycles);
        self.device_handles
            .get_or_create(&set)
            .set(stats.device_handles as f64);
    }
}

/// Encodes `published` in `format`.
pub fn encode(published: &[Published], format: Format) -> String {
    let mut registry = Registry::default();
    register_elements(&mut registry, published);
    written(&registry, format)
}

/// Encodes `published` and the HTTP endpoint's own counts, for a scrape.
pub fn encode_with_endpoint(
    published: &[Published],
    endpoint: &Snapshot,
    format: Format,
) -> String {
    let mut registry = Registry::default();
    register_elements(&mut registry, published);
    register_endpoint(&mut registry, endpoint);
    written(&registry, format)
}

fn register_elements(registry: &mut Registry, published: &[Published]) {
    let vpu = VpuFamilies::new(registry);
    let encoder = GuardFamilies::new(registry, "encoder");
    let decoder = GuardFamilies::new(registry, "decoder");
    let delay = DelayFamilies::new(registry);
    let leak = LeakFamilies::new(registry);
    for p in published {
        match &p.sample {
            Sample::Encoder(stats) => {
                vpu.add(&p.labels, stats, true);
                encoder.add(&p.labels, stats);
            }
            Sample::Decoder(stats) => {
                vpu.add(&p.labels, stats, false);
                decoder.add(&p.labels, stats);
            }
            Sample::Delay(pads) => delay.add(&p.labels, pads),
            Sample::Leak(stats) => leak.add(&p.labels, stats),
        }
    }
}

/// The endpoint's series, without the element labels (they are the
/// process's): connections open and their cap, and the ones the endpoint
/// closed itself, by reason.
fn register_endpoint(registry: &mut Registry, endpoint: &Snapshot) {
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let gauge = Gauge::<f64, AtomicU64>::default();
        gauge.set(value as f64);
        registry.register(name, help, gauge);
    };
    gauge(
        registry,
        "edgeguard_http_connections_open",
        "HTTP connections to the metrics endpoint open now, this scrape's included",
        endpoint.open,
    );
    gauge(
        registry,
        "edgeguard_http_connections_max",
        "HTTP connections the metrics endpoint keeps open at most (max-connections)",
        endpoint.max,
    );
    let closed = CounterFamily::default();
    registry.register(
        "edgeguard_http_connections_closed",
        "HTTP connections the metrics endpoint closed itself: over max-connections (a newcomer \
         refused, or an idle one evicted for it), or idle past idle-timeout",
        closed.clone(),
    );
    for (reason, count) in [
        ("refused", endpoint.refused),
        ("evicted", endpoint.evicted),
        ("idle-timeout", endpoint.timed_out),
    ] {
        let set = vec![("reason".to_string(), reason.to_string())];
        closed.get_or_create(&set).inc_by(count);
    }
}

fn written(registry: &Registry, format: Format) -> String {
    let mut out = String::new();
    let written = match format {
        Format::Prometheus => prometheus_text::encode(&mut out, registry),
        Format::OpenMetrics => text::encode(&mut out, registry),
    };
    written.expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::sample::{Decision, Switch};

    fn rig() -> Vec<Published> {
        let at = |element: &str| Labels {
            pipeline: "cam1".into(),
            element: element.into(),
        };
        let mut enc = GuardStats::default();
        enc.record(Decision {
            factory: "x264enc".into(),
            hardware: false,
            reason: "over-budget",
            sessions: 6,
            max_sessions: 6,
            pixel_rate: 62_208_000,
            source: "drm",
            load: 85,
            switch: Some(Switch {
                replayed: 2,
                lost: 0,
            }),
        });
        vec![
            Published {
                labels: at("enc"),
                sample: Sample::Encoder(enc),
            },
            Published {
                labels: at("delay"),
                sample: Sample::Delay(vec![DelayStats {
                    pad: "src".into(),
                    delay: gst::ClockTime::from_mseconds(1500),
                    level_buffers: 45,
                    ..Default::default()
                }]),
            },
            Published {
                labels: at("leaks"),
                sample: Sample::Leak(LeakStats {
                    findings: [("not-null", 1)].into(),
                    ..Default::default()
                }),
            },
        ]
    }

    #[test]
    fn series_carry_the_element_labels_and_base_units() {
        let text = encode(&rig(), Format::Prometheus);
        for line in [
            "edgeguard_encoder_decisions_total{pipeline=\"cam1\",element=\"enc\",encoder=\"x264enc\",hardware=\"false\",reason=\"over-budget\"} 1",
            "edgeguard_encoder_hardware{pipeline=\"cam1\",element=\"enc\"} 0",
            "edgeguard_encoder_frames_replayed_total{pipeline=\"cam1\",element=\"enc\"} 2",
            "edgeguard_vpu_pixel_rate{pipeline=\"cam1\",element=\"enc\",source=\"drm\"} 62208000",
            "edgeguard_vpu_load{pipeline=\"cam1\",element=\"enc\",source=\"drm\"} 85",
            "edgeguard_delay_seconds{pipeline=\"cam1\",element=\"delay\",pad=\"src\"} 1.5",
            "edgeguard_delay_level_buffers{pipeline=\"cam1\",element=\"delay\",pad=\"src\"} 45",
            "edgeguard_leak_findings{pipeline=\"cam1\",element=\"leaks\",kind=\"not-null\"} 1",
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_ends_with_eof() {
        let text = encode(&rig(), Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("edgeguard_encoder_switches_total{"));
    }

    #[test]
    fn accept_header_picks_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert!(Format::OpenMetrics.content_type().contains("version=1.0.0"));
    }

    #[test]
    fn a_rig_of_every_kind_has_every_family_once() {
        let mut published = rig();
        let Sample::Encoder(stats) = published[0].sample.clone() else {
            unreachable!()
        };
        published.push(Published {
            labels: Labels {
                pipeline: "cam1".into(),
                element: "dec".into(),
            },
            sample: Sample::Decoder(stats),
        });
        let text = encode(&published, Format::Prometheus);
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(families.len(), 23, "{families:?}");
        assert!(families.contains(&"edgeguard_leak_cycles_total counter"));
        // A family without series is not written at all.
        assert_eq!(encode(&[], Format::Prometheus), "");
    }

    #[test]
    fn the_endpoint_serves_its_own_counts_beside_the_elements() {
        let endpoint = Snapshot {
            open: 3,
            max: 64,
            refused: 4,
            evicted: 932,
            timed_out: 2,
        };
        let text = encode_with_endpoint(&rig(), &endpoint, Format::Prometheus);
        for line in [
            "edgeguard_http_connections_open 3",
            "edgeguard_http_connections_max 64",
            "edgeguard_http_connections_closed_total{reason=\"refused\"} 4",
            "edgeguard_http_connections_closed_total{reason=\"evicted\"} 932",
            "edgeguard_http_connections_closed_total{reason=\"idle-timeout\"} 2",
            "edgeguard_leak_findings{pipeline=\"cam1\",element=\"leaks\",kind=\"not-null\"} 1",
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
        let open = encode_with_endpoint(&[], &endpoint, Format::OpenMetrics);
        assert!(open.contains("edgeguard_http_connections_closed_total{reason=\"evicted\"} 932"));
        assert!(open.ends_with("# EOF\n"), "{open}");
    }
}
