//! 2-D convolution on f32 NCHW tensors: forward, input gradient and weight gradient.

mod backward;
mod flipped;
mod forward;
mod geometry;
mod im2col;
mod partials;
mod plan;
mod winograd;
mod winograd4;
mod winograd4_input;
mod winograd_grad;
mod winograd_input;
mod winograd_split;

pub(crate) use backward::{conv2d_input_grad, conv2d_weight_grad};
pub(crate) use flipped::input_grad_as_forward;
pub(crate) use forward::{Epilogue, conv2d_forward};
pub(crate) use geometry::ConvGeometry;
