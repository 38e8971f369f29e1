//! # grafter-onnx
//!
//! Any ONNX CNN as a trainable [`grafter_core::Backbone`], built at run time with onnx-ir
//! (no code generation), and a fine-tuned [`grafter_core::Classifier`] written back out as
//! ONNX.
//!
//! Weighted nodes (Conv, BatchNormalization, LayerNormalization, Gemm/MatMul with constant
//! weights) become Burn modules whose parameters train, and so do the constant tensors a
//! PyTorch fine-tune would train (MatMul biases, layer scales, class tokens, position
//! embeddings); every other node is run by a small interpreter over the graph, shape
//! arithmetic included (computed from the actual input, so dynamic-batch and dynamic-size
//! exports run at any batch and size). The graph is cut where the pretrained classifier
//! begins ([`CutPoint`]) and split into stages where the resolution drops (a transformer: at
//! its blocks), so every `FreezePolicy` applies.
//!
//! [`export_classifier`] writes a fine-tuned classifier back out as ONNX, whether its
//! backbone is an [`OnnxBackbone`] or any other [`OnnxBackboneExport`] (the zoo's typed
//! backbones implement it with [`OnnxEmitter`]'s layers; this crate does not depend on the
//! zoo).
//!
//! ```no_run
//! use burn::tensor::Device;
//! use grafter_core::prelude::*;
//! use grafter_onnx::{OnnxBackbone, OnnxBackboneOptions, export_classifier};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Device::flex();
//! let backbone = OnnxBackbone::load("mobilenet_v2.onnx", &OnnxBackboneOptions::default(), &device)?;
//! println!("dropped classifier: {:?}", backbone.dropped_classifier());
//! let head = LinearHeadConfig::new(backbone.feature_channels(), 10).try_init(&device)?;
//! let model = Classifier::new(backbone, head)?;
//! // … FineTune::new(config, TwoPhase { .. }).fit(model, &train, &valid, &device) …
//! export_classifier(&model, "finetuned.onnx")?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod backbone;
mod cut;
mod emitter;
mod error;
mod export;
mod export_shape;
mod graph;
mod import;
mod interpret;
mod options;
mod parse;
mod proto;
mod stages;
mod validate;

pub use backbone::{DroppedClassifier, OnnxBackbone};
pub use emitter::{ExportError, OnnxAttr, OnnxEmitter};
pub use error::{OnnxError, Result};
pub use export::{OnnxBackboneExport, OnnxHead, export_classifier};
pub use interpret::Value;
pub use options::{CutPoint, OnnxBackboneOptions};
