//! # grafter
//!
//! Transfer learning on [Burn](https://burn.dev), in pure Rust: take a backbone pretrained on
//! ImageNet, cut its head off, graft a new head on, freeze what should stay frozen, and
//! fine-tune on the CPU or a GPU.
//!
//! This facade re-exports the workspace crates; see [`grafter_core`] for the vocabulary
//! ([`Backbone`], [`Head`], [`FreezePolicy`], [`FineTune`]) and [`zoo`] for pretrained
//! backbones.
//!
//! ## Reproducible runs
//!
//! A run is a function of two seeds. Weight initialisation (`init`, `try_init`, the random
//! fallback of `zoo::pretrained_or_random`, new heads) draws from the device's random generator,
//! which Burn seeds per device: call `device.seed(seed)` before building the model. Everything
//! after that — shuffling, augmentation, dropout, the split streams of a resumed run — is seeded
//! by [`FineTuneConfig`]'s `seed`. The examples pass one `--seed` to both.
//!
//! ```
//! use burn::tensor::Device;
//! use grafter::prelude::*;
//!
//! let device = Device::flex();
//! let init = |seed| {
//!     device.seed(seed);
//!     let head = LinearHeadConfig::new(8, 3).try_init(&device).unwrap();
//!     head.linear.weight.val().into_data()
//! };
//! assert_eq!(init(7), init(7));
//! assert_ne!(init(7), init(8));
//! ```

pub use grafter_core::*;

/// Pretrained backbones and their weights ([`grafter_zoo`]).
pub use grafter_zoo as zoo;

/// The image pipeline ([`grafter_data`]).
pub use grafter_data as data;

/// Any ONNX CNN as a backbone, and export back to ONNX ([`grafter_onnx`]).
pub use grafter_onnx as onnx;

pub mod datasets;
pub mod run_report;

/// grafter's CPU kernels (convolution, max-pooling) for Burn's flex backend
/// ([`grafter_kernels`]); `GRAFTER_KERNELS=reference` or [`kernels::set_kernels`] switches
/// to Burn's ops.
pub use grafter_kernels as kernels;
