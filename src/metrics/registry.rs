// SPDX-License-Identifier: MPL-2.0
//! The process-wide list of elements that publish metrics.
//!
//! Each element registers once, when it is constructed, and holds the
//! returned [`Handle`]; dropping it (when the element is finalized) removes
//! the element's series. The registry keeps only a weak reference, so an
//! element it lists is sampled only while it is alive: an element that is
//! gone never shows up in a scrape, whatever the order of drops.
//!
//! # The lock rule
//!
//! `SOURCES` is held only to insert, remove or clone entries. Sampling (which
//! upgrades weak references, reads names and parents, and may drop the last
//! reference of an element, running its finalize here) happens after it is
//! released.

use gst::prelude::*;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use super::sample::Sample;

/// The labels every series of an element carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels {
    /// The top-level bin's name; empty for an element in no bin.
    pub pipeline: String,
    pub element: String,
}

/// One element's values at the time of a scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub labels: Labels,
    pub sample: Sample,
}

type Sampler = Box<dyn Fn() -> Option<Published> + Send + Sync>;

static SOURCES: LazyLock<Mutex<BTreeMap<u64, Arc<Sampler>>>> = LazyLock::new(Default::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// An element's registration: its series exist as long as this does.
#[derive(Debug)]
pub struct Handle(u64);

impl Drop for Handle {
    fn drop(&mut self) {
        let removed = SOURCES.lock().remove(&self.0);
        // Dropped after the lock: it releases a weak reference.
        drop(removed);
    }
}

/// Registers `element`, whose values `sample` reads at each scrape.
pub fn publish<E>(element: &E, sample: fn(&E) -> Sample) -> Handle
where
    E: IsA<gst::Element> + Send + Sync,
{
    let weak = element.downgrade();
    let sampler: Sampler = Box::new(move || {
        let element = weak.upgrade()?;
        let labels = labels_of(element.upcast_ref());
        Some(Published {
            labels,
            sample: sample(&element),
        })
    });
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    SOURCES.lock().insert(id, Arc::new(sampler));
    Handle(id)
}

/// Every live element's values, ordered by their labels.
pub fn collect() -> Vec<Published> {
    let samplers: Vec<Arc<Sampler>> = SOURCES.lock().values().cloned().collect();
    let mut published: Vec<Published> = samplers.iter().filter_map(|s| s()).collect();
    published.sort_by(|a, b| a.labels.cmp(&b.labels));
    published
}

fn labels_of(element: &gst::Element) -> Labels {
    let mut top: gst::Object = element.clone().upcast();
    while let Some(parent) = top.parent() {
        top = parent;
    }
    let element_name = element.name().to_string();
    let pipeline = if top == *element.upcast_ref::<gst::Object>() {
        String::new()
    } else {
        top.name().to_string()
    };
    Labels {
        pipeline,
        element: element_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::sample::LeakStats;

    fn leak_sample(_: &gst::Element) -> Sample {
        Sample::Leak(LeakStats::default())
    }

    fn mine(name: &str) -> Vec<Published> {
        collect()
            .into_iter()
            .filter(|p| p.labels.element == name)
            .collect()
    }

    #[test]
    fn an_element_is_listed_under_its_top_level_bin_until_it_is_gone() {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::with_name("registry-test-pipeline");
        let bin = gst::Bin::with_name("inner");
        let element = gst::ElementFactory::make("identity")
            .name("registry-test-identity")
            .build()
            .unwrap();
        bin.add(&element).unwrap();
        pipeline.add(&bin).unwrap();
        let handle = publish(&element, leak_sample);
        let listed = mine("registry-test-identity");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].labels.pipeline, "registry-test-pipeline");
        drop(handle);
        assert!(mine("registry-test-identity").is_empty());
    }

    #[test]
    fn a_finalized_element_is_not_sampled_even_while_registered() {
        gst::init().unwrap();
        let element = gst::ElementFactory::make("identity")
            .name("registry-test-gone")
            .build()
            .unwrap();
        let handle = publish(&element, leak_sample);
        assert_eq!(mine("registry-test-gone")[0].labels.pipeline, "");
        drop(element);
        assert!(mine("registry-test-gone").is_empty());
        drop(handle);
    }
}
