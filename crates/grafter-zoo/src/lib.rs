//! # grafter-zoo
//!
//! Typed ImageNet backbones for grafter — ResNet-18/34/50/101/152 and VGG-11/13/16/19 with and
//! without BatchNorm, in torchvision's layout — and the loading of their pretrained weights.

#![warn(missing_docs)]

pub mod download;
mod error;
pub mod registry;

pub use error::ZooError;
mod layers;
mod pth_scan;
pub mod resnet;
pub mod torchvision;
pub mod vgg;
pub mod vgg_head;

pub use resnet::{ResNet, ResNetConfig};
pub use torchvision::{ResNetClassifier, VggFull, load_resnet, load_vgg};
pub use vgg::{Vgg, VggConfig};
pub use vgg_head::VggClassifier;
pub mod onnx_assign;
pub mod onnx_weights;

pub use onnx_assign::{load_resnet_onnx, load_vgg_backbone_onnx, load_vgg_onnx};
