// SPDX-License-Identifier: MPL-2.0
//! Which device a guard's hardware child drives, from its factory: the
//! render node for a `drm` budget, the codec node for a `v4l2` one. Each
//! element family says it its own way (see docs/vpu-budget.md):
//!
//! - `va`: the name (`varenderD129h264enc`; plain `vah264enc` is the first
//!   render device the plugin found);
//! - `vaapi*`: `GST_VAAPI_DRM_DEVICE`, else the first render node;
//! - `msdk*`: `GST_MSDK_DRM_DEVICE`, else the first render node bound to
//!   i915 (as gstmsdkcontext.c picks it);
//! - `qsv*`: its read-only `device-path`, a constant of its class, read from
//!   an instance (creating one opens nothing);
//! - `v4l2*` (gst-plugins-good): the name (`v4l2video11h264enc`), else the
//!   `device` an instance starts with (its class's default device; the
//!   node is opened only at NULL->READY);
//! - `v4l2sl*` (stateless, gst-plugins-bad): the name, else the default of
//!   its class's `video-device`.
//!
//! No Jetson element is ever loaded or created here (`nvv4l2*` is not a
//! `v4l2*` name): creating one probes its device.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use gst::glib;
use gst::prelude::*;

use super::devices;

/// How a guard's render node was found, for its log and the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The factory's name says it.
    Name,
    /// An environment variable the element reads names it.
    Environment,
    /// The element says it (a property).
    Element,
    /// The element's own rule picks it from the machine's nodes.
    ElementRule,
    /// Not known: the first render node stands for it.
    Assumed,
}

/// The render node (a path on the machine) the hardware child of factory
/// `factory` uses, and how that was found; the first render node under
/// `root` where it cannot be known.
pub fn render_node(factory: &str, root: &Path) -> (PathBuf, Found) {
    render_node_in(factory, root, |v| std::env::var(v).ok())
}

/// As `render_node`, with the environment `env` gives.
fn render_node_in(
    factory: &str,
    root: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> (PathBuf, Found) {
    let env_node = |variable| env_node(env(variable));
    // Kept as it is: `renderD` has a capital.
    let name = factory;
    let first = || devices::first_render_node(root);
    if let Some(named) = devices::va_node_in_name(name) {
        // The va plugin's first device is the lowest render node that
        // opens as a VA display: the lowest, unless it has no VA driver.
        return match named {
            Some(node) => (node, Found::Name),
            None => (first(), Found::ElementRule),
        };
    }
    if name.starts_with("vaapi") {
        return match env_node("GST_VAAPI_DRM_DEVICE") {
            Some(node) => (node, Found::Environment),
            None => (first(), Found::ElementRule),
        };
    }
    if name.starts_with("msdk") {
        if let Some(node) = env_node("GST_MSDK_DRM_DEVICE") {
            return (node, Found::Environment);
        }
        let i915 = devices::render_nodes(root)
            .into_iter()
            .find(|n| devices::driver_of(root, n).as_deref() == Some("i915"));
        return match i915 {
            Some(node) => (node, Found::ElementRule),
            None => (first(), Found::Assumed),
        };
    }
    if name.starts_with("qsv")
        && let Some(path) = instance_string(factory, "device-path")
    {
        return (PathBuf::from(path), Found::Element);
    }
    (first(), Found::Assumed)
}

/// The DRM node an element's environment variable's `value` names; the
/// elements accept only paths under `/dev/dri/`.
fn env_node(value: Option<String>) -> Option<PathBuf> {
    let value = value?;
    value.starts_with("/dev/dri/").then(|| PathBuf::from(value))
}

/// The V4L2 node (`/dev/video11`) the hardware child of factory `factory`
/// uses; None where it cannot be known (not a v4l2 element, or one that
/// does not say).
pub fn v4l2_node(factory: &str) -> Option<String> {
    let name = factory.to_ascii_lowercase();
    if !name.starts_with("v4l2") {
        return None;
    }
    if let Some(node) = devices::v4l2_node_in_name(&name) {
        return Some(node);
    }
    class_default_string(factory, "video-device").or_else(|| instance_string(factory, "device"))
}

/// The default of the string property `property` of the class of elements
/// of `factory`: loads the plugin, creates nothing.
fn class_default_string(factory: &str, property: &str) -> Option<String> {
    let loaded = gst::ElementFactory::find(factory)?.load().ok()?;
    let class = glib::Class::<gst::Element>::from_type(loaded.element_type())?;
    let spec = class.find_property(property)?;
    spec.default_value()
        .get::<Option<String>>()
        .ok()
        .flatten()
        .filter(|s| !s.is_empty())
}

/// What the string property `property` of a new element of `factory`
/// holds, before it has left NULL; None without the property or a value.
/// Kept per factory: a class's constant does not change in a process, and
/// an element is created once per factory at most.
fn instance_string(factory: &str, property: &str) -> Option<String> {
    /// (factory, property) -> the value.
    type Kept = HashMap<(String, String), Option<String>>;
    static KEPT: Mutex<Option<Kept>> = Mutex::new(None);
    let key = (factory.to_string(), property.to_string());
    if let Some(kept) = KEPT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|k| k.get(&key))
    {
        return kept.clone();
    }
    // Created and dropped without our lock held: its dispose runs here.
    let value = gst::ElementFactory::make(factory)
        .build()
        .ok()
        .and_then(|element| {
            element.find_property(property)?;
            element.property::<Option<String>>(property)
        })
        .filter(|s| !s.is_empty());
    KEPT.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key, value.clone());
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(nodes: &[(u32, &str)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!(
            "edgeguard-child-device-{}-{}",
            nodes.len(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        for (n, driver) in nodes {
            std::fs::create_dir_all(root.join("dev/dri")).unwrap();
            std::fs::write(root.join(format!("dev/dri/renderD{n}")), "").unwrap();
            let device = root.join(format!("sys/devices/pci0000:00/0000:0{n}:00.0"));
            std::fs::create_dir_all(&device).unwrap();
            std::os::unix::fs::symlink(format!("/drivers/{driver}"), device.join("driver"))
                .unwrap();
            let class = root.join(format!("sys/class/drm/renderD{n}"));
            std::fs::create_dir_all(&class).unwrap();
            std::os::unix::fs::symlink(&device, class.join("device")).unwrap();
        }
        root
    }

    #[test]
    fn each_element_family_finds_its_render_node_its_own_way() {
        gst::init().unwrap();
        let root = root_with(&[(128, "amdgpu"), (129, "i915")]);
        let node = |n: u32| PathBuf::from(format!("/dev/dri/renderD{n}"));
        // Whatever this test's environment says, none of the elements' variables.
        let render_node = |factory: &str, root: &Path| render_node_in(factory, root, |_| None);
        assert_eq!(
            render_node("varenderD129h264enc", &root),
            (node(129), Found::Name)
        );
        assert_eq!(
            render_node("vah264enc", &root),
            (node(128), Found::ElementRule)
        );
        assert_eq!(
            render_node("vaapih264enc", &root),
            (node(128), Found::ElementRule)
        );
        // The first render node bound to i915, as msdk's own search.
        assert_eq!(
            render_node("msdkh264enc", &root),
            (node(129), Found::ElementRule)
        );
        // Without the qsv plugin its device-path cannot be read.
        if gst::ElementFactory::find("qsvh264enc").is_none() {
            assert_eq!(
                render_node("qsvh264enc", &root),
                (node(128), Found::Assumed)
            );
        }
        assert_eq!(render_node("x264enc", &root), (node(128), Found::Assumed));
        // Only a value under /dev/dri/ is taken, as the elements do.
        let env = |variable: &str| match variable {
            "GST_VAAPI_DRM_DEVICE" => Some("/dev/dri/renderD130".to_string()),
            "GST_MSDK_DRM_DEVICE" => Some("/tmp/x".to_string()),
            _ => None,
        };
        assert_eq!(
            render_node_in("vaapih265enc", &root, env),
            (node(130), Found::Environment)
        );
        assert_eq!(
            render_node_in("msdkh265enc", &root, env),
            (node(129), Found::ElementRule)
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_v4l2_element_of_the_first_device_says_its_node_by_its_default_device() {
        gst::init().unwrap();
        assert_eq!(
            v4l2_node("v4l2video11h264enc").as_deref(),
            Some("/dev/video11")
        );
        // Jetson's and other non-v4l2 factories are never looked up.
        assert_eq!(v4l2_node("nvv4l2h264enc"), None);
        assert_eq!(v4l2_node("x264enc"), None);
        // v4l2src is a v4l2 element whose default device is /dev/video0.
        if gst::ElementFactory::find("v4l2src").is_some() {
            assert_eq!(v4l2_node("v4l2src").as_deref(), Some("/dev/video0"));
        }
    }
}
