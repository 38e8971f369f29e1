//! The GPU test set: grafter on Burn's wgpu backend (`cargo test --features wgpu --test gpu`).
//!
//! Every test asks [`grafter::device::parse_device`] for `wgpu`. Without a usable adapter the
//! tests print `SKIPPED` and pass, unless `GRAFTER_REQUIRE_GPU=1` (as in CI, where Mesa's
//! lavapipe provides a software Vulkan adapter), which makes them fail with the reason.
#![cfg(feature = "wgpu")]

mod adapter;
#[allow(dead_code)]
#[path = "../finetune/common.rs"]
mod common;
mod f16;
mod finetune;
#[allow(dead_code)]
#[path = "../support/fixtures.rs"]
mod fixtures;
mod onnx;
#[path = "../support/params.rs"]
mod params;
mod parity;
#[allow(dead_code)]
#[path = "../support/skip.rs"]
mod skip;
#[path = "../support/workspace.rs"]
mod workspace;
