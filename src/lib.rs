//! # grafter
//!
//! Transfer learning on [Burn](https://burn.dev), in pure Rust: take a backbone pretrained on
//! ImageNet, cut its head off, graft a new head on, freeze what should stay frozen, and
//! fine-tune on the CPU or a GPU.
//!
//! This facade re-exports the workspace crates; see [`grafter_core`] for the vocabulary
//! ([`Backbone`], [`Head`], [`FreezePolicy`], [`FineTune`]) and [`zoo`] for pretrained
//! backbones.

pub use grafter_core::*;

/// Pretrained backbones and their weights ([`grafter_zoo`]).
pub use grafter_zoo as zoo;

/// The image pipeline ([`grafter_data`]).
pub use grafter_data as data_pipeline;

/// Any ONNX CNN as a backbone, and export back to ONNX ([`grafter_onnx`]).
pub use grafter_onnx as onnx;

/// grafter's CPU kernels (convolution, max-pooling) for Burn's flex backend
/// ([`grafter_kernels`]); `GRAFTER_KERNELS=reference` or [`kernels::set_kernels`] switches
/// to Burn's ops.
pub use grafter_kernels as kernels;
