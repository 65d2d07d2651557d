// SPDX-License-Identifier: MPL-2.0
//! The budget sources that see only who holds a device node: `v4l2` (the
//! mainline V4L2 codecs' `/dev/videoN`) and `jetson` (`/dev/v4l2-nvenc`,
//! `/dev/v4l2-nvdec`). Neither driver has a session cap or a load interface;
//! the open file descriptors of the node, found from the links in
//! `/proc/<pid>/fd` under `EDGEGUARD_ROOT`, tell who uses it. Each fd open on
//! a node is one session. Nothing here opens a device: on Jetson, opening
//! and closing the encoder node to probe it has crashed libv4l2_nvvidconv.

use std::path::{Path, PathBuf};

use super::budget::Held;
use super::listing::{ListingError, SessionKind, SessionLoad, SessionRecord};
use super::source::{self, Listing, SessionSource};

/// Each fd of every readable process whose link is one of `nodes` (paths
/// on the machine, `/dev/video10`), with the node's kind; processes whose
/// fds cannot be read are skipped.
fn holders(
    proc_dir: &Path,
    nodes: &[(String, SessionKind)],
) -> Result<Vec<(u32, usize)>, ListingError> {
    let pids = super::process::pids_in(proc_dir).map_err(|e| ListingError {
        path: proc_dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut found = Vec::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(proc_dir.join(format!("{pid}/fd"))) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(node) = nodes.iter().position(|(n, _)| Path::new(n) == target) {
                found.push((pid, node));
            }
        }
    }
    Ok(found)
}

/// A holders reading as kept in the snapshot: one `holder pid= node=` line
/// per fd.
fn encode(found: &[(u32, usize)], nodes: &[(String, SessionKind)]) -> String {
    found
        .iter()
        .map(|(pid, node)| format!("holder pid={pid} node={}\n", nodes[*node].0))
        .collect()
}

fn decode(text: &str, nodes: &[(String, SessionKind)]) -> Vec<SessionLoad> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("holder ")?;
            let field = |name: &str| {
                rest.split_whitespace()
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            };
            let pid = field("pid")?.parse().ok()?;
            let node = field("node")?;
            let kind = nodes.iter().find(|(n, _)| n == node).map(|(_, k)| *k)?;
            Some(SessionLoad {
                record: SessionRecord {
                    tid: pid,
                    index: 0,
                    device: node.to_string(),
                },
                kind,
                pixel_rate: None,
            })
        })
        .collect()
}

/// Reads the holders of `nodes` under `root`, at most 5 times a second
/// machine-wide (a snapshot of `key`).
fn read_holders(
    held: &Held,
    root: &Path,
    key: &str,
    nodes: &[(String, SessionKind)],
) -> Result<Listing, ListingError> {
    let proc_dir = super::root::under(root, "/proc");
    let snapshot = source::through_snapshot(held, key, || {
        let found = holders(&proc_dir, nodes)?;
        Ok((proc_dir.clone(), encode(&found, nodes)))
    })?;
    Ok(Listing {
        sessions: decode(&snapshot.text, nodes),
        path: snapshot.path,
        load: None,
    })
}

/// Driver names (`/sys/class/video4linux/videoN/name`) of mainline
/// stateful and stateless codecs: Hantro, Rockchip rkvdec/rkvenc, the
/// Raspberry Pi's bcm2835-codec and rpivid, Allwinner cedrus, i.MX coda and
/// amphion, Qualcomm venus, MediaTek vcodec, Chips&Media wave5.
const CODEC_NAMES: [&str; 13] = [
    "hantro",
    "rkvdec",
    "rkvenc",
    "rockchip",
    "bcm2835-codec",
    "rpivid",
    "cedrus",
    "coda",
    "amphion",
    "venus",
    "mtk-vcodec",
    "wave5",
    "codec",
];

/// A mainline V4L2 codec's node: the guard's codec's `/dev/videoN` where
/// its hardware child says it (`child_device::v4l2_node`); where it does
/// not, every `/dev/videoN` whose sysfs `name` is a codec driver's.
#[derive(Debug, Clone)]
pub struct V4l2Source {
    root: PathBuf,
    /// `/dev/video10`; None: every codec node.
    node: Option<String>,
}

impl V4l2Source {
    /// Every codec node's holders, as one budget.
    pub fn new(root: PathBuf) -> Self {
        V4l2Source { root, node: None }
    }

    /// The holders of `node` (a path on the machine) only.
    pub fn on_node(root: PathBuf, node: String) -> Self {
        V4l2Source {
            root,
            node: Some(node),
        }
    }

    /// Each codec node under `root`, as its own source (`edgeguard-vpu`).
    pub fn each_codec_node(root: &Path) -> Vec<Self> {
        codec_nodes(root)
            .unwrap_or_default()
            .into_iter()
            .map(|(node, _)| Self::on_node(root.to_path_buf(), node))
            .collect()
    }

    /// The node counted; None: every codec node.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Whether the machine has a V4L2 codec node at all.
    pub fn present(&self) -> bool {
        codec_nodes(&self.root).is_ok()
    }

    /// The nodes counted: the codec's, or every codec node.
    fn nodes(&self) -> Result<Vec<(String, SessionKind)>, ListingError> {
        match &self.node {
            Some(node) => Ok(vec![(node.clone(), SessionKind::Codec)]),
            None => codec_nodes(&self.root),
        }
    }
}

/// Every `/dev/videoN` under `root` whose sysfs `name` is a codec
/// driver's: what a guard whose codec's node is not known counts.
fn codec_nodes(root: &Path) -> Result<Vec<(String, SessionKind)>, ListingError> {
    let class = super::root::under(root, "/sys/class/video4linux");
    let entries = std::fs::read_dir(&class).map_err(|e| ListingError {
        path: class.clone(),
        reason: format!("v4l2: {e}"),
    })?;
    let mut nodes: Vec<(String, SessionKind)> = entries
        .flatten()
        .filter(|e| {
            let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
            let name = name.trim().to_ascii_lowercase();
            CODEC_NAMES.iter().any(|c| name.contains(c))
        })
        .map(|e| {
            let node = format!("/dev/{}", e.file_name().to_string_lossy());
            (node, SessionKind::Codec)
        })
        .collect();
    nodes.sort_by(|a, b| a.0.cmp(&b.0));
    if nodes.is_empty() {
        return Err(ListingError {
            path: class,
            reason: "v4l2: no video device is a codec".into(),
        });
    }
    Ok(nodes)
}

impl SessionSource for V4l2Source {
    fn read(&self, held: &Held) -> Result<Listing, ListingError> {
        let nodes = self.nodes()?;
        let key = format!("v4l2:{}:{:?}", self.root.display(), nodes);
        read_holders(held, &self.root, &key, &nodes)
    }

    /// `v4l2:/dev/video10`; `v4l2:` for every codec node.
    fn budget_name(&self) -> String {
        format!("v4l2:{}", self.node.as_deref().unwrap_or(""))
    }
}

/// The Jetson encoder node: absent on the Orin Nano, which has no NVENC.
pub const NVENC_NODE: &str = "/dev/v4l2-nvenc";
pub const NVDEC_NODE: &str = "/dev/v4l2-nvdec";

/// NVIDIA Jetson's multimedia nodes.
#[derive(Debug, Clone)]
pub struct JetsonSource {
    root: PathBuf,
}

impl JetsonSource {
    pub fn new(root: PathBuf) -> Self {
        JetsonSource { root }
    }

    fn nodes() -> Vec<(String, SessionKind)> {
        vec![
            (NVENC_NODE.to_string(), SessionKind::Encoder),
            (NVDEC_NODE.to_string(), SessionKind::Decoder),
        ]
    }
}

impl SessionSource for JetsonSource {
    fn read(&self, held: &Held) -> Result<Listing, ListingError> {
        let key = format!("jetson:{}", self.root.display());
        read_holders(held, &self.root, &key, &Self::nodes())
    }

    fn budget_name(&self) -> String {
        "jetson:".into()
    }
}

/// Whether the machine has a Jetson multimedia node (stat, never open).
pub fn jetson_present(root: &Path) -> bool {
    jetson_has(root, SessionKind::Encoder) || jetson_has(root, SessionKind::Decoder)
}

/// Whether the Jetson node of `kind` exists under `root` (stat, never open).
pub fn jetson_has(root: &Path, kind: SessionKind) -> bool {
    let node = match kind {
        SessionKind::Decoder => NVDEC_NODE,
        _ => NVENC_NODE,
    };
    super::root::under(root, node).symlink_metadata().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fd_on_a_node_is_a_holder_and_others_are_not() {
        let root = std::env::temp_dir().join(format!("edgeguard-holders-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let link = |pid: u32, fd: u32, target: &str| {
            let dir = root.join(format!("proc/{pid}/fd"));
            std::fs::create_dir_all(&dir).unwrap();
            std::os::unix::fs::symlink(target, dir.join(fd.to_string())).unwrap();
        };
        link(10, 3, "/dev/v4l2-nvenc");
        link(10, 4, "/dev/v4l2-nvenc");
        link(11, 3, "/dev/v4l2-nvdec");
        link(12, 3, "/dev/video0");
        let nodes = JetsonSource::nodes();
        let found = holders(&root.join("proc"), &nodes).unwrap();
        let sessions = decode(&encode(&found, &nodes), &nodes);
        let kinds: Vec<_> = sessions.iter().map(|s| (s.record.tid, s.kind)).collect();
        assert_eq!(
            kinds,
            [
                (10, SessionKind::Encoder),
                (10, SessionKind::Encoder),
                (11, SessionKind::Decoder)
            ]
        );
        assert!(!jetson_has(&root, SessionKind::Encoder));
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::write(root.join("dev/v4l2-nvenc"), "").unwrap();
        assert!(jetson_has(&root, SessionKind::Encoder));
        assert!(!jetson_has(&root, SessionKind::Decoder));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
