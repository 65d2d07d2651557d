// SPDX-License-Identifier: MPL-2.0
//! Where each tracked element sits: its own name and type, and a link to its
//! parent (by serial), instead of its full path. A full path is as long as
//! the element is deep, so keeping one per element holds memory quadratic in
//! the nesting (2000 nested bins: about 48 MB of paths); links hold it linear.
//! A path is built only where it is written out: a finding, or a report's
//! element list when it is serialized.
//!
//! Links are read as the elements come and go, so they follow re-parenting:
//! a bin moved elsewhere takes its children's paths with it, and a path is
//! the element's place as of the report. An element taken out of the
//! pipeline keeps its last link (it is reported where it was).
//!
//! Plain data: lives under the registry lock with the ledger.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One element's place: a path segment (`/Type:name`) and its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: Box<str>,
    /// The GType's name (GTypes are never unregistered).
    pub type_name: &'static str,
    /// The parent's serial (see `identity`); None for a top-level object.
    pub parent: Option<u64>,
}

/// Every known element's node, by serial. Shared (copy on write) between the
/// tracker and the reports it judged: a report builds its paths from the
/// nodes as they were when it was judged, and an unchanged pipeline never
/// copies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nodes(Arc<HashMap<u64, Node>>);

impl Nodes {
    pub fn contains(&self, serial: u64) -> bool {
        self.0.contains_key(&serial)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Records (or moves) an element's node.
    pub fn set(&mut self, serial: u64, node: Node) {
        if self.0.get(&serial) != Some(&node) {
            Arc::make_mut(&mut self.0).insert(serial, node);
        }
    }

    /// Records an element's node unless it has one: a removal keeps the
    /// place an element had inside the pipeline.
    pub fn set_if_unknown(&mut self, serial: u64, node: Node) {
        if !self.contains(serial) {
            Arc::make_mut(&mut self.0).insert(serial, node);
        }
    }

    /// Renames an element (the pipeline: its name begins every path).
    pub fn rename(&mut self, serial: u64, name: &str) {
        if self.0.get(&serial).is_some_and(|n| &*n.name != name) {
            let map = Arc::make_mut(&mut self.0);
            if let Some(node) = map.get_mut(&serial) {
                node.name = name.into();
            }
        }
    }

    pub fn name(&self, serial: u64) -> &str {
        self.0.get(&serial).map_or("", |n| &n.name)
    }

    /// The element's path, e.g. `/GstPipeline:p/GstBin:b0/GstIdentity:i`, as
    /// `gst_object_get_path_string` writes it, from the links: one step per
    /// level. A chain that loops (links read at different times, around a
    /// move) stops after as many steps as there are nodes.
    pub fn path(&self, serial: u64) -> String {
        let mut chain = Vec::new();
        let mut at = Some(serial);
        while let Some(node) = at.and_then(|s| self.0.get(&s)) {
            if chain.len() == self.0.len() {
                break;
            }
            chain.push(node);
            at = node.parent;
        }
        let len = chain
            .iter()
            .map(|n| 2 + n.type_name.len() + n.name.len())
            .sum();
        let mut path = String::with_capacity(len);
        for node in chain.iter().rev() {
            path.push('/');
            path.push_str(node.type_name);
            path.push(':');
            path.push_str(&node.name);
        }
        path
    }

    /// Keeps only the nodes that `kept` elements' paths go through: each
    /// chain is walked until it meets one already kept, so this is linear in
    /// the number of nodes however deep they are nested.
    pub fn retain_reachable(&mut self, kept: impl IntoIterator<Item = u64>) {
        let mut reachable = HashSet::with_capacity(self.0.len());
        for serial in kept {
            let mut at = Some(serial);
            while let Some(s) = at {
                if !self.0.contains_key(&s) || !reachable.insert(s) {
                    break;
                }
                at = self.0[&s].parent;
            }
        }
        if reachable.len() < self.0.len() {
            Arc::make_mut(&mut self.0).retain(|s, _| reachable.contains(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, type_name: &'static str, parent: Option<u64>) -> Node {
        Node {
            name: name.into(),
            type_name,
            parent,
        }
    }

    fn pipeline() -> Nodes {
        let mut nodes = Nodes::default();
        nodes.set(1, node("p", "GstPipeline", None));
        nodes.set(2, node("a", "GstBin", Some(1)));
        nodes.set(3, node("b", "GstBin", Some(1)));
        nodes.set(4, node("q", "GstQueue", Some(2)));
        nodes
    }

    #[test]
    fn a_path_follows_the_parent_links() {
        let nodes = pipeline();
        assert_eq!(nodes.path(1), "/GstPipeline:p");
        assert_eq!(nodes.path(4), "/GstPipeline:p/GstBin:a/GstQueue:q");
        assert_eq!(nodes.name(4), "q");
        assert_eq!(nodes.path(99), "");
    }

    #[test]
    fn a_moved_bin_takes_its_childrens_paths_with_it() {
        let mut nodes = pipeline();
        nodes.set(2, node("a", "GstBin", Some(3)));
        assert_eq!(nodes.path(4), "/GstPipeline:p/GstBin:b/GstBin:a/GstQueue:q");
        // A removal keeps the last place; a re-add records the new one.
        nodes.set_if_unknown(4, node("q", "GstQueue", None));
        assert_eq!(nodes.path(4), "/GstPipeline:p/GstBin:b/GstBin:a/GstQueue:q");
        nodes.set(4, node("q", "GstQueue", Some(1)));
        assert_eq!(nodes.path(4), "/GstPipeline:p/GstQueue:q");
    }

    #[test]
    fn renaming_the_pipeline_renames_every_path() {
        let mut nodes = pipeline();
        let judged = nodes.clone();
        nodes.rename(1, "renamed");
        assert_eq!(nodes.path(4), "/GstPipeline:renamed/GstBin:a/GstQueue:q");
        // A report judged before keeps the nodes it was judged with.
        assert_eq!(judged.path(4), "/GstPipeline:p/GstBin:a/GstQueue:q");
    }

    #[test]
    fn an_unchanged_node_is_not_copied_away_from_a_report() {
        let mut nodes = pipeline();
        let judged = nodes.clone();
        nodes.set(4, node("q", "GstQueue", Some(2)));
        nodes.set_if_unknown(4, node("x", "GstQueue", None));
        nodes.rename(1, "p");
        assert!(Arc::ptr_eq(&nodes.0, &judged.0));
    }

    #[test]
    fn links_that_loop_end_the_path() {
        let mut nodes = pipeline();
        // Read at different times around a move: a's parent b, b's parent a.
        nodes.set(2, node("a", "GstBin", Some(3)));
        nodes.set(3, node("b", "GstBin", Some(2)));
        let path = nodes.path(4);
        assert!(path.ends_with("/GstBin:a/GstQueue:q"), "{path}");
        assert_eq!(path.matches('/').count(), nodes.len());
    }

    #[test]
    fn a_deep_chain_is_walked_once_per_level() {
        const DEPTH: u64 = 5000;
        let mut nodes = Nodes::default();
        nodes.set(0, node("p", "GstPipeline", None));
        for level in 1..=DEPTH {
            nodes.set(level, node(&format!("b{level}"), "GstBin", Some(level - 1)));
        }
        let path = nodes.path(DEPTH);
        assert_eq!(path.matches('/').count() as u64, DEPTH + 1);
        assert!(path.starts_with("/GstPipeline:p/GstBin:b1/GstBin:b2/"));
        assert!(path.ends_with("/GstBin:b5000"));
        // Keeping the deepest keeps every level above it.
        nodes.retain_reachable([DEPTH]);
        assert_eq!(nodes.len() as u64, DEPTH + 1);
    }

    #[test]
    fn only_the_nodes_a_kept_element_goes_through_are_kept() {
        let mut nodes = pipeline();
        nodes.retain_reachable([4]);
        assert!(nodes.contains(1) && nodes.contains(2) && nodes.contains(4));
        assert!(!nodes.contains(3));
        assert_eq!(nodes.path(4), "/GstPipeline:p/GstBin:a/GstQueue:q");
    }
}
