// SPDX-License-Identifier: MPL-2.0
//! The device nodes the `drm` and `v4l2` budgets are kept per: the DRM
//! render nodes and the PCI device (`drm-pdev`) each belongs to, the V4L2
//! codec nodes, all found under `EDGEGUARD_ROOT` by listing directories and
//! reading sysfs links: nothing here opens a device.

use std::path::{Path, PathBuf};

/// Where the render nodes are: every `/dev/dri/renderD<N>`.
const DRI: &str = "/dev/dri";
/// Where each DRM node's device is: `<class>/<node>/device`, a link whose
/// name is the PCI slot (`0000:00:02.0`) for a PCI GPU.
const DRM_CLASS: &str = "/sys/class/drm";

/// A DRM render device: the node a guard's hardware child opens, and the
/// PCI slot its clients' fdinfo names as `drm-pdev` (the kernel's
/// drm-usage-stats), where sysfs tells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RenderDevice {
    /// A path on the machine: `/dev/dri/renderD128`.
    pub node: PathBuf,
    /// `0000:00:02.0`; None where sysfs does not say (no `/sys` in a
    /// container, a device not on PCI).
    pub pdev: Option<String>,
}

impl RenderDevice {
    /// The device of `node` (a path on the machine) under `root`.
    pub fn of_node(root: &Path, node: &Path) -> Self {
        RenderDevice {
            node: node.to_path_buf(),
            pdev: pdev_of(root, node),
        }
    }

    /// What the budget is named after: the PCI slot, so that the render
    /// node and the card node of one GPU are one budget; the node where
    /// the slot is not known.
    pub fn name(&self) -> String {
        self.pdev
            .clone()
            .unwrap_or_else(|| self.node.display().to_string())
    }

    /// Whether a client whose fdinfo says `pdev` (empty when it says
    /// none), reached through an fd linked to `node`, is on this device.
    pub fn has_client(&self, pdev: &str, node: &str) -> bool {
        match &self.pdev {
            Some(ours) if !pdev.is_empty() => ours == pdev,
            _ => Path::new(node) == self.node,
        }
    }
}

/// The render node number of a node name: `renderD128` -> 128.
fn render_number(name: &str) -> Option<u32> {
    name.strip_prefix("renderD")?.parse().ok()
}

/// The PCI slot `node` (a path on the machine) belongs to, from the name
/// its sysfs `device` link points to.
fn pdev_of(root: &Path, node: &Path) -> Option<String> {
    let name = node.file_name()?;
    let link = super::root::under(root, DRM_CLASS)
        .join(name)
        .join("device");
    let target = std::fs::read_link(link).ok()?;
    let slot = target.file_name()?.to_str()?;
    is_pci_slot(slot).then(|| slot.to_string())
}

/// Whether `name` is a PCI slot name, `dddd:bb:dd.f` in hex: what
/// `drm-pdev` says for a PCI device.
fn is_pci_slot(name: &str) -> bool {
    name.len() == 12
        && name.char_indices().all(|(i, c)| match i {
            4 | 7 => c == ':',
            10 => c == '.',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The kernel driver bound to `node`'s device (`i915`, `xe`, `amdgpu`),
/// from its sysfs `device/driver` link.
pub fn driver_of(root: &Path, node: &Path) -> Option<String> {
    let name = node.file_name()?;
    let link = super::root::under(root, DRM_CLASS)
        .join(name)
        .join("device/driver");
    let target = std::fs::read_link(link).ok()?;
    Some(target.file_name()?.to_str()?.to_string())
}

/// The render nodes under `root`, lowest number first, as paths on the
/// machine: `/dev/dri` where it lists any, else the nodes sysfs lists.
pub fn render_nodes(root: &Path) -> Vec<PathBuf> {
    let numbers = |dir: PathBuf| -> Vec<u32> {
        let mut found: Vec<u32> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| render_number(e.file_name().to_str()?))
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    };
    let mut found = numbers(super::root::under(root, DRI));
    if found.is_empty() {
        found = numbers(super::root::under(root, DRM_CLASS));
    }
    found
        .into_iter()
        .map(|n| PathBuf::from(format!("{DRI}/renderD{n}")))
        .collect()
}

/// The render node a guard counts when its hardware child's cannot be
/// known: the lowest, as the `va` plugin and gstreamer-vaapi pick by
/// default; `/dev/dri/renderD128` (the first a kernel makes) when none is
/// listed.
pub fn first_render_node(root: &Path) -> PathBuf {
    render_nodes(root)
        .into_iter()
        .next()
        .unwrap_or_else(|| PathBuf::from(format!("{DRI}/renderD128")))
}

/// The render node a factory name says: the `va` plugin registers
/// `vah264enc` for the first device and `varenderD129h264enc` (the node's
/// name inserted) for each other. Some(None) for a `va` element of the
/// first device; None for a name that says nothing.
pub fn va_node_in_name(factory: &str) -> Option<Option<PathBuf>> {
    let rest = factory.strip_prefix("va")?;
    if rest.starts_with("api") {
        // gstreamer-vaapi's vaapi*: its device is not in its name.
        return None;
    }
    let Some(after) = rest.strip_prefix("renderD") else {
        return Some(None);
    };
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let number: u32 = digits.parse().ok()?;
    Some(Some(PathBuf::from(format!("{DRI}/renderD{number}"))))
}

/// The V4L2 node a factory name says: gst-plugins-good's v4l2 plugin
/// registers `v4l2h264enc` for the first device with the codec and
/// `v4l2video11h264enc` (the node's name inserted) for each other;
/// gst-plugins-bad's stateless decoders `v4l2slh264dec` and
/// `v4l2slvideo1h264dec`. None where the name does not say.
pub fn v4l2_node_in_name(factory: &str) -> Option<String> {
    let rest = factory.strip_prefix("v4l2")?;
    let rest = rest.strip_prefix("sl").unwrap_or(rest);
    let after = rest.strip_prefix("video")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let number: u32 = digits.parse().ok()?;
    // A codec follows the number: `video11h264enc`, never `video11`.
    (digits.len() < after.len()).then(|| format!("/dev/video{number}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_va_factory_name_says_its_render_node_or_the_first() {
        let node = |n: &str| Some(Some(PathBuf::from(n)));
        assert_eq!(
            va_node_in_name("varenderD129h264enc"),
            node("/dev/dri/renderD129")
        );
        assert_eq!(
            va_node_in_name("varenderD130h265lpenc"),
            node("/dev/dri/renderD130")
        );
        assert_eq!(va_node_in_name("vah264enc"), Some(None));
        assert_eq!(va_node_in_name("vah265dec"), Some(None));
        assert_eq!(va_node_in_name("vaapih264enc"), None);
        assert_eq!(va_node_in_name("qsvh264enc"), None);
        assert_eq!(va_node_in_name("varenderDxh264enc"), None);
    }

    #[test]
    fn a_v4l2_factory_name_says_its_node_when_it_is_not_the_first() {
        let node = |n: &str| Some(n.to_string());
        assert_eq!(
            v4l2_node_in_name("v4l2video11h264enc"),
            node("/dev/video11")
        );
        assert_eq!(v4l2_node_in_name("v4l2video0h265dec"), node("/dev/video0"));
        assert_eq!(
            v4l2_node_in_name("v4l2slvideo1h264dec"),
            node("/dev/video1")
        );
        assert_eq!(v4l2_node_in_name("v4l2h264enc"), None);
        assert_eq!(v4l2_node_in_name("v4l2slh264dec"), None);
        assert_eq!(v4l2_node_in_name("v4l2src"), None);
        assert_eq!(v4l2_node_in_name("v4l2video11"), None);
        assert_eq!(v4l2_node_in_name("nvv4l2h264enc"), None);
    }

    fn temp_root(name: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("edgeguard-devices-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        root
    }

    /// A render node in `root` whose sysfs device is the PCI slot `pdev`,
    /// bound to `driver`, as the kernel links them.
    fn render_node(root: &Path, n: u32, pdev: &str, driver: &str) {
        std::fs::create_dir_all(root.join("dev/dri")).unwrap();
        std::fs::write(root.join(format!("dev/dri/renderD{n}")), "").unwrap();
        let device = root.join(format!("sys/devices/pci0000:00/{pdev}"));
        std::fs::create_dir_all(&device).unwrap();
        std::os::unix::fs::symlink(
            format!("../../bus/pci/drivers/{driver}"),
            device.join("driver"),
        )
        .unwrap();
        let class = root.join(format!("sys/class/drm/renderD{n}"));
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(
            format!("../../../devices/pci0000:00/{pdev}"),
            class.join("device"),
        )
        .unwrap();
    }

    #[test]
    fn each_render_node_maps_to_its_pci_slot_and_driver() {
        let root = temp_root("pdev");
        render_node(&root, 129, "0000:03:00.0", "xe");
        render_node(&root, 128, "0000:00:02.0", "i915");
        assert_eq!(
            render_nodes(&root),
            [
                PathBuf::from("/dev/dri/renderD128"),
                PathBuf::from("/dev/dri/renderD129")
            ]
        );
        assert_eq!(first_render_node(&root), Path::new("/dev/dri/renderD128"));
        let b = RenderDevice::of_node(&root, Path::new("/dev/dri/renderD129"));
        assert_eq!(b.pdev.as_deref(), Some("0000:03:00.0"));
        assert_eq!(b.name(), "0000:03:00.0");
        assert_eq!(
            driver_of(&root, Path::new("/dev/dri/renderD128")).as_deref(),
            Some("i915")
        );
        // A client of the device, through its render or card node, or
        // through the render node with no drm-pdev in its fdinfo.
        assert!(b.has_client("0000:03:00.0", "/dev/dri/card1"));
        assert!(b.has_client("", "/dev/dri/renderD129"));
        assert!(!b.has_client("0000:00:02.0", "/dev/dri/renderD128"));
        assert!(!b.has_client("0000:00:02.0", "/dev/dri/renderD129"));
        // No sysfs entry: the node alone names the device and its clients.
        let unknown = RenderDevice::of_node(&root, Path::new("/dev/dri/renderD130"));
        assert_eq!(unknown.pdev, None);
        assert_eq!(unknown.name(), "/dev/dri/renderD130");
        assert!(unknown.has_client("0000:00:02.0", "/dev/dri/renderD130"));
        assert!(!unknown.has_client("0000:00:02.0", "/dev/dri/renderD128"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn without_dev_dri_the_render_nodes_come_from_sysfs_or_are_the_first() {
        let root = temp_root("nodes");
        assert!(render_nodes(&root).is_empty());
        assert_eq!(first_render_node(&root), Path::new("/dev/dri/renderD128"));
        std::fs::create_dir_all(root.join("sys/class/drm/renderD131")).unwrap();
        std::fs::create_dir_all(root.join("sys/class/drm/card0")).unwrap();
        assert_eq!(render_nodes(&root), [PathBuf::from("/dev/dri/renderD131")]);
        // Not a PCI slot: no pdev.
        std::os::unix::fs::symlink(
            "../../platform/fde60000.gpu",
            root.join("sys/class/drm/renderD131/device"),
        )
        .unwrap();
        assert_eq!(
            RenderDevice::of_node(&root, Path::new("/dev/dri/renderD131")).pdev,
            None
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
