// SPDX-License-Identifier: MPL-2.0
//! What leakcheck found, and its two outward forms: JSON and a GstStructure.

use serde_json::json;
use std::sync::Arc;

use super::paths::Nodes;

/// One element as a finding names it (its path built when the finding was
/// made: findings are few, and name the element where it was then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementId {
    pub name: String,
    /// The object path, e.g. /GstPipeline:pipeline0/GstBin:sub/GstQueue:q
    pub path: String,
    pub factory: String,
    pub klass: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// 1: still above NULL when its pipeline reached NULL.
    NotNull { element: ElementId, state: String },
    /// 2: removed from the pipeline while above NULL.
    RemovedAboveNull { element: ElementId, state: String },
    /// 3: removed, and still alive after `grace`: someone holds a reference.
    StillAlive { element: ElementId, refcount: u32 },
    /// 4: a state change that failed, or an ASYNC one still pending after `grace`.
    StateChange {
        element: ElementId,
        transition: String,
        result: String,
    },
    /// 5: a device handle opened while the pipeline ran, still open after NULL,
    /// with what /proc/self/fdinfo says it is (a DMABuf's exporter, a DRM
    /// node's driver), if anything.
    DeviceHandle {
        fd: i32,
        target: String,
        driver: Option<String>,
    },
    /// 6: live elements or device handles growing from cycle to cycle.
    Growth { what: String, per_cycle: Vec<u32> },
    /// 7: a VPU session opened by a thread of this process while the
    /// pipeline ran, still listed by the kernel after NULL.
    VpuSession {
        tid: u32,
        index: u64,
        device: String,
    },
}

impl Finding {
    /// Every `kind()`, in the order of the variants.
    pub const KINDS: [&'static str; 7] = [
        "not-null",
        "removed-above-null",
        "still-alive",
        "state-change",
        "device-handle",
        "growth",
        "vpu-session",
    ];

    /// The kind's name, from `KINDS`: the metrics export every kind, found
    /// or not, so the two lists cannot drift apart.
    pub fn kind(&self) -> &'static str {
        let index = match self {
            Finding::NotNull { .. } => 0,
            Finding::RemovedAboveNull { .. } => 1,
            Finding::StillAlive { .. } => 2,
            Finding::StateChange { .. } => 3,
            Finding::DeviceHandle { .. } => 4,
            Finding::Growth { .. } => 5,
            Finding::VpuSession { .. } => 6,
        };
        Self::KINDS[index]
    }

    pub fn element(&self) -> Option<&ElementId> {
        match self {
            Finding::NotNull { element, .. }
            | Finding::RemovedAboveNull { element, .. }
            | Finding::StillAlive { element, .. }
            | Finding::StateChange { element, .. } => Some(element),
            Finding::DeviceHandle { .. } | Finding::Growth { .. } | Finding::VpuSession { .. } => {
                None
            }
        }
    }

    /// One line for logs and warnings.
    pub fn describe(&self) -> String {
        match self {
            Finding::NotNull { element, state } => format!(
                "{} ({}) is still {state} after its pipeline reached NULL",
                element.path, element.factory
            ),
            Finding::RemovedAboveNull { element, state } => format!(
                "{} ({}) was removed from its pipeline while {state}: set it to NULL first",
                element.path, element.factory
            ),
            Finding::StillAlive { element, refcount } => format!(
                "{} ({}) was removed but is still alive with {refcount} reference(s)",
                element.path, element.factory
            ),
            Finding::StateChange {
                element,
                transition,
                result,
            } => format!(
                "{} ({}): state change {transition} {result}",
                element.path, element.factory
            ),
            Finding::DeviceHandle {
                fd,
                target,
                driver: Some(driver),
            } => format!("device handle fd {fd} -> {target} ({driver}) is still open after NULL"),
            Finding::DeviceHandle { fd, target, .. } => {
                format!("device handle fd {fd} -> {target} is still open after NULL")
            }
            Finding::Growth { what, per_cycle } => {
                format!("{what} grow from cycle to cycle: {per_cycle:?}")
            }
            Finding::VpuSession { tid, index, device } => format!(
                "VPU session {index} on {device}, opened by thread {tid} of this process, \
                 is still open after NULL"
            ),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut v = json!({ "kind": self.kind(), "message": self.describe() });
        let obj = v.as_object_mut().unwrap();
        if let Some(e) = self.element() {
            obj.insert("name".into(), json!(e.name));
            obj.insert("path".into(), json!(e.path));
            obj.insert("factory".into(), json!(e.factory));
            obj.insert("klass".into(), json!(e.klass));
        }
        match self {
            Finding::NotNull { state, .. } | Finding::RemovedAboveNull { state, .. } => {
                obj.insert("state".into(), json!(state));
            }
            Finding::StillAlive { refcount, .. } => {
                obj.insert("refcount".into(), json!(refcount));
            }
            Finding::StateChange {
                transition, result, ..
            } => {
                obj.insert("transition".into(), json!(transition));
                obj.insert("result".into(), json!(result));
            }
            Finding::DeviceHandle { fd, target, driver } => {
                obj.insert("fd".into(), json!(fd));
                obj.insert("target".into(), json!(target));
                if let Some(driver) = driver {
                    obj.insert("driver".into(), json!(driver));
                }
            }
            Finding::VpuSession { tid, index, device } => {
                obj.insert("tid".into(), json!(tid));
                obj.insert("index".into(), json!(index));
                obj.insert("device".into(), json!(device));
            }
            Finding::Growth { what, per_cycle } => {
                obj.insert("what".into(), json!(what));
                obj.insert("per-cycle".into(), json!(per_cycle));
            }
        }
        v
    }

    fn to_structure(&self) -> gst::Structure {
        let mut s = gst::Structure::builder(self.kind())
            .field("message", self.describe())
            .build();
        if let Some(e) = self.element() {
            s.set("name", &e.name);
            s.set("path", &e.path);
            s.set("factory", &e.factory);
            s.set("klass", &e.klass);
        }
        match self {
            Finding::NotNull { state, .. } | Finding::RemovedAboveNull { state, .. } => {
                s.set("state", state)
            }
            Finding::StillAlive { refcount, .. } => s.set("refcount", *refcount),
            Finding::StateChange {
                transition, result, ..
            } => {
                s.set("transition", transition);
                s.set("result", result);
            }
            Finding::DeviceHandle { fd, target, driver } => {
                s.set("fd", *fd);
                s.set("target", target);
                if let Some(driver) = driver {
                    s.set("driver", driver);
                }
            }
            Finding::VpuSession { tid, index, device } => {
                s.set("tid", *tid);
                s.set("index", *index);
                s.set("device", device);
            }
            Finding::Growth { what, per_cycle } => {
                s.set("what", what);
                s.set("per-cycle", gst::Array::new(per_cycle.iter().copied()));
            }
        }
        s
    }
}

/// One tracked element: its current state and its last transitions
/// (from, to, result, tracer timestamp in ns). Its name and path are in the
/// report's nodes: a path is built only when the report is written out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementEntry {
    pub serial: u64,
    pub factory: Arc<str>,
    pub state: &'static str,
    pub transitions: Vec<(&'static str, &'static str, &'static str, u64)>,
}

/// The report of one pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub pipeline: String,
    /// PLAYING..NULL cycles judged so far.
    pub cycles: u32,
    /// Elements tracked, with their current state and transitions.
    pub elements: Vec<ElementEntry>,
    pub findings: Vec<Finding>,
    /// Where the elements were when the report was judged.
    pub nodes: Nodes,
}

impl Report {
    /// The JSON form. It lists every element's path, so its length is the
    /// sum of their depths: each path is built here, one step per level,
    /// and dropped once written into the value.
    pub fn to_json(&self) -> String {
        let value = json!({
            "pipeline": self.pipeline,
            "cycles": self.cycles,
            "leaks": self.findings.len(),
            "findings": self.findings.iter().map(Finding::to_json).collect::<Vec<_>>(),
            "elements": self.elements.iter().map(|e| json!({
                "name": self.nodes.name(e.serial), "path": self.nodes.path(e.serial),
                "factory": &*e.factory, "state": e.state,
                "transitions": e.transitions.iter().map(|(from, to, result, ts)| json!({
                    "from": from, "to": to, "result": result, "time-ns": ts,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&value).expect("a JSON value serializes")
    }

    pub fn to_structure(&self) -> gst::Structure {
        gst::Structure::builder("leakcheck-report")
            .field("pipeline", &self.pipeline)
            .field("cycles", self.cycles)
            .field("leaks", self.findings.len() as u32)
            .field(
                "findings",
                gst::Array::new(self.findings.iter().map(Finding::to_structure)),
            )
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::super::paths::Node;
    use super::*;

    fn id() -> ElementId {
        ElementId {
            name: "q".into(),
            path: "/GstPipeline:p/GstQueue:q".into(),
            factory: "queue".into(),
            klass: "Generic".into(),
        }
    }

    #[test]
    fn json_and_structure_carry_the_same_findings() {
        gst::init().unwrap();
        let mut nodes = Nodes::default();
        nodes.set(
            1,
            Node {
                name: "p".into(),
                type_name: "GstPipeline",
                parent: None,
            },
        );
        nodes.set(
            2,
            Node {
                name: "q".into(),
                type_name: "GstQueue",
                parent: Some(1),
            },
        );
        let report = Report {
            pipeline: "p".into(),
            cycles: 2,
            nodes,
            elements: vec![ElementEntry {
                serial: 2,
                factory: "queue".into(),
                state: "playing",
                transitions: vec![("paused", "playing", "success", 5)],
            }],
            findings: vec![
                Finding::NotNull {
                    element: id(),
                    state: "playing".into(),
                },
                Finding::DeviceHandle {
                    fd: 7,
                    target: "/dev/video0".into(),
                    driver: None,
                },
                Finding::DeviceHandle {
                    fd: 9,
                    target: "/dmabuf:".into(),
                    driver: Some("DMABuf exported by mpp".into()),
                },
                Finding::VpuSession {
                    tid: 1954,
                    index: 54,
                    device: "fdbd0000.rkvenc-core".into(),
                },
                Finding::Growth {
                    what: "live elements".into(),
                    per_cycle: vec![1, 2, 3],
                },
            ],
        };
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["leaks"], 5);
        assert_eq!(json["findings"][0]["kind"], "not-null");
        assert_eq!(json["findings"][0]["path"], "/GstPipeline:p/GstQueue:q");
        assert_eq!(json["findings"][1]["target"], "/dev/video0");
        assert_eq!(json["findings"][2]["driver"], "DMABuf exported by mpp");
        assert_eq!(json["findings"][3]["device"], "fdbd0000.rkvenc-core");
        assert_eq!(json["findings"][4]["per-cycle"][2], 3);
        assert_eq!(json["elements"][0]["transitions"][0]["to"], "playing");
        assert_eq!(json["elements"][0]["name"], "q");
        assert_eq!(json["elements"][0]["path"], "/GstPipeline:p/GstQueue:q");
        assert_eq!(json["elements"][0]["factory"], "queue");
        let s = report.to_structure();
        assert_eq!(s.get::<u32>("leaks").unwrap(), 5);
        let findings = s.get::<gst::Array>("findings").unwrap();
        let first = findings.as_slice()[0].get::<gst::Structure>().unwrap();
        assert_eq!(first.name(), "not-null");
        assert_eq!(first.get::<&str>("factory").unwrap(), "queue");
    }
}
