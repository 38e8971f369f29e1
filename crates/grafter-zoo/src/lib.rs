//! # grafter-zoo
//!
//! Typed ImageNet backbones for grafter — ResNet-18/34/50/101/152 (v1.5, or the original v1)
//! and VGG-11/13/16/19 with and without BatchNorm, in torchvision's layout — their pretrained
//! weights, and [`AnyBackbone`], one backbone type for a choice made at run time (a zoo
//! ResNet, a zoo VGG or any ONNX CNN).
//!
//! [`pretrained`] is the entry point: a weight-set or architecture name (or an `.onnx` file)
//! in, the backbone with its weights, its [`Preprocess`](grafter_core::Preprocess) and their
//! [`Provenance`] out. The [`registry`] lists the weight sets, each with its typed
//! [`Architecture`] and [`WeightFormat`](registry::WeightFormat), whose
//! [`loader`](registry::WeightFormat::loader) builds it ([`load`]).

#![warn(missing_docs)]

mod any;
mod architecture;
pub mod download;
mod error;
mod layers;
pub mod load;
pub mod onnx_assign;
mod onnx_export;
pub mod onnx_weights;
mod pretrained;
mod pth_scan;
pub mod registry;
pub mod resnet;
pub mod torchvision;
pub mod vgg;
pub mod vgg_head;

pub use any::AnyBackbone;
pub use architecture::{Architecture, ResNetDepth, ResNetVariant, VggDepth};
pub use error::ZooError;
pub use onnx_assign::{load_resnet_onnx, load_vgg_backbone_onnx, load_vgg_onnx};
pub use pretrained::{
    Pretrained, Provenance, Weights, pretrained, pretrained_from_file, pretrained_or_random,
};
pub use resnet::{ResNet, ResNetConfig};
pub use torchvision::{TorchvisionResNet, TorchvisionVgg, load_resnet, load_vgg};
pub use vgg::{Vgg, VggConfig};
pub use vgg_head::VggHead;
