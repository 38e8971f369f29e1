//! # grafter-onnx
//!
//! Any ONNX CNN as a trainable [`grafter_core::Backbone`], built at run time.

#![warn(missing_docs)]
