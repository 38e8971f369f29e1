//! 2-D convolution on f32 NCHW tensors: forward, input gradient and weight gradient.

mod backward;
mod forward;
mod geometry;
mod im2col;
mod plan;

pub(crate) use backward::{conv2d_input_grad, conv2d_weight_grad};
pub(crate) use forward::conv2d_forward;
pub(crate) use geometry::ConvGeometry;
