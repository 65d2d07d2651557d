// SPDX-License-Identifier: MPL-2.0
//! Ground shared by the guard bins (vpuguardenc, vpuguarddec) that is not
//! the VPU budget: what arrives on their sink pads, how they follow the child
//! chain working now, and how they tell a child's failure from downstream's.

pub mod input;
pub mod watch;

use gst::prelude::*;

/// Whether `object` is `ancestor` or inside it: a child's ERROR may come
/// from an element the child contains.
pub fn is_same_or_inside(object: &gst::Object, ancestor: &gst::Object) -> bool {
    let mut current = Some(object.clone());
    while let Some(o) = current {
        if &o == ancestor {
            return true;
        }
        current = o.parent();
    }
    false
}
