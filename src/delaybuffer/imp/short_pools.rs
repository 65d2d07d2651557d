// SPDX-License-Identifier: MPL-2.0
//! Short pools: which held buffers come from a pool that cannot spare them,
//! and their replacement by copies (see `short_pool` for how many may stay
//! references, and which memory is copied at all).

use super::*;

/// The pool `buffer` was acquired from, as an address (0: none).
fn pool_of(buffer: &gst::BufferRef) -> usize {
    // SAFETY: a buffer's pool field is set when it leaves its pool and stays
    // until it returns, which cannot happen while it is referenced here.
    unsafe { (*buffer.as_ptr()).pool as usize }
}

/// The buffers of `pool` that the window holds, newest first.
fn held_from_pool(s: &Shared, pool: usize) -> Vec<gst::Buffer> {
    let mut held: Vec<(&gst::Buffer, u64)> = s
        .window
        .buffers_newest_first()
        .filter(|(b, _)| pool_of(b) == pool)
        .collect();
    // Arrival order is not always running-time order (B-frames).
    held.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    held.into_iter().map(|(b, _)| b.clone()).collect()
}

/// What `short-pool=copy` knows of the pool an input buffer came from.
pub(super) enum PoolLookup {
    /// The pool and how many of its buffers may be held, when it cannot
    /// grow enough and `short-pool=copy`; `None` otherwise.
    Known(Option<(usize, u32)>),
    /// A pool not seen yet, with a reference taken while the buffer held
    /// one: its config is read outside the lock.
    Unknown(usize, gst::BufferPool),
}

impl Shared {
    /// What is known of the pool of `buffer`, looked up under the lock that
    /// holds the buffer (one lock per input buffer, not two).
    pub(super) fn short_pool(&self, buffer: &gst::BufferRef) -> PoolLookup {
        let key = pool_of(buffer);
        if key == 0 || self.settings.short_pool != ShortPool::Copy || !self.copyable {
            return PoolLookup::Known(None);
        }
        if let Some((_, allowed)) = self.pools.iter().find(|(p, _)| p.as_ptr() as usize == key) {
            return PoolLookup::Known(allowed.map(|n| (key, n)));
        }
        // SAFETY: the buffer holds a reference to its pool (see pool_of);
        // taking one more is a leaf call (an atomic increment).
        let pool = unsafe { gst::BufferPool::from_glib_none(key as *mut gst::ffi::GstBufferPool) };
        PoolLookup::Unknown(key, pool)
    }
}

impl DelayBuffer {
    /// How many of the buffers of `pool`, not seen before, may be held,
    /// when it cannot grow enough: its config is read once, outside the
    /// lock, and remembered.
    pub(super) fn look_up_pool(&self, key: usize, pool: gst::BufferPool) -> Option<(usize, u32)> {
        let max = pool.config().params().map_or(0, |(_, _, _, max)| max);
        let allowed = short_pool::references_allowed(max);
        gst::info!(
            CAT,
            imp = self,
            "input from {pool:?} (max-buffers {max}): {}",
            allowed.map_or_else(
                || "held as references".to_string(),
                |n| format!("at most {n} held as references, older ones copied")
            )
        );
        self.lock().pools.push((pool, allowed));
        allowed.map(|n| (key, n))
    }

    /// Replaces the held references from the short pool `pool` beyond the
    /// `allowed` newest by copies, so that the oldest go back to the source.
    /// Each memory is copied by its own allocator (gst_memory_copy: device to
    /// device for CUDA memory), never through a map of the held buffer, which
    /// a tee shares; the lock is released while copying.
    pub(super) fn copy_oldest(
        &self,
        (pool, allowed): (usize, u32),
        released: &mut Vec<gst::Buffer>,
    ) {
        let held = held_from_pool(&self.lock(), pool);
        // The newest ones stay references; their clones are dropped here,
        // with the lock released.
        let originals: Vec<gst::Buffer> = held.into_iter().skip(allowed as usize).collect();
        if originals.is_empty() {
            return;
        }
        let copies: Vec<_> = originals.iter().map(|b| b.copy_deep()).collect();
        let mut failed = None;
        let mut s = self.lock();
        for (original, copy) in originals.iter().zip(copies) {
            let copy = match copy {
                Ok(copy) => copy,
                Err(err) => {
                    failed = Some(err);
                    continue;
                }
            };
            let is_original = |b: &gst::Buffer| b.as_ptr() == original.as_ptr();
            let replaced = s.window.replace_buffer(is_original, copy);
            if replaced.is_ok() {
                s.copied += 1;
                s.copied_bytes += original.size() as u64;
            }
            // The original, or the copy no longer needed (the original left
            // meanwhile: pushed, dropped or flushed).
            released.push(replaced.unwrap_or_else(|c| c));
        }
        if failed.is_some()
            && let Some(entry) = s
                .pools
                .iter_mut()
                .find(|(p, _)| p.as_ptr() as usize == pool)
        {
            // Hold references from now on: the stall WARNING tells the rest.
            entry.1 = None;
        }
        drop(s);
        released.extend(originals);
        if let Some(err) = failed {
            gst::warning!(
                CAT,
                imp = self,
                "cannot copy from a short pool, holding references: {err}"
            );
        }
    }
}
