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
