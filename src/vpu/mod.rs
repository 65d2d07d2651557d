// SPDX-License-Identifier: MPL-2.0
//! The VPU budget, shared by the guards (vpuguardenc, vpuguarddec) and
//! leakcheck: where the kernel lists sessions and how to read that listing
//! without hurting the kernel, which process a listed session belongs to,
//! the machine-wide ledger of guard slots and its decision lock, the load
//! count that combines them, and the decision taken from it.
//!
//! No element module imports another element's module: what two of them
//! need lives here. Each budget source (the MPP listing, `nvml`, `drm`,
//! `holders` for V4L2 codecs and Jetson) is one file implementing
//! `source::SessionSource`, chosen in `budget::BudgetSettings::source`.

pub mod budget;
pub mod budget_source;
pub mod child_device;
pub mod decision;
pub mod devices;
pub mod drm;
pub mod ground;
pub mod holders;
pub mod ledger;
pub mod listing;
pub mod load;
pub mod mpp_load;
pub mod nvml;
pub mod process;
pub mod properties;
pub mod reclaim;
pub mod root;
pub mod snapshot;
pub mod source;
pub mod survey;
