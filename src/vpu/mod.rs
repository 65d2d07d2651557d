// SPDX-License-Identifier: MPL-2.0
//! The VPU budget, shared by the guards (vpuguardenc, vpuguarddec) and
//! leakcheck: where the kernel lists sessions and how to read that listing
//! without hurting the kernel, which process a listed session belongs to,
//! the machine-wide ledger of guard slots and its decision lock, the load
//! count that combines them, and the decision taken from it.
//!
//! No element module imports another element's module: what two of them
//! need lives here. A new budget source (NVENC through NVML, V4L2 codecs on
//! mainline kernels) is one new file beside `listing.rs` implementing
//! `source::SessionSource`, and one settings field in `budget::BudgetSettings`.

pub mod budget;
pub mod budget_source;
pub mod decision;
pub mod drm;
pub mod ground;
pub mod holders;
pub mod ledger;
pub mod listing;
pub mod load;
pub mod process;
pub mod properties;
pub mod reclaim;
pub mod root;
pub mod snapshot;
pub mod source;
