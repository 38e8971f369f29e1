//! Burn's `nn` convolution, max-pooling and BatchNorm layers, run on grafter's kernels.

use burn::backend::Dispatch;
use burn::nn::BatchNorm;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};

use crate::extension::CpuKernels;

/// `layer.forward(x)`, through [`crate::conv2d`].
pub fn conv2d_layer(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let [pad_h, pad_w] = padding_pairs(&layer.padding, [h, w], layer.kernel_size, layer.stride);
    let options =
        ConvOptions::new_with_padding(layer.stride, [pad_h, pad_w], layer.dilation, layer.groups);
    crate::conv2d(
        x,
        layer.weight.val(),
        layer.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// `layer.forward(x)`, through [`crate::max_pool2d`].
pub fn max_pool2d_layer(layer: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let [pad_h, pad_w] = padding_pairs(&layer.padding, [h, w], layer.kernel_size, layer.stride);
    let options = MaxPoolOptions::new(layer.kernel_size)
        .with_stride(layer.stride)
        .with_padding_pairs([pad_h, pad_w])
        .with_dilation(layer.dilation)
        .with_ceil_mode(layer.ceil_mode);
    crate::max_pool2d(x, options)
}

/// `layer.forward(x)`: the same choice of training or inference behaviour (training on an
/// autodiff device with the layer's training flag on, updating its running statistics with
/// Burn's momentum rule), the normalisation on grafter's kernels.
pub fn batch_norm_layer(layer: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    if !crate::runs_here(&x) {
        return layer.forward(x);
    }
    let device = x.device();
    if device.is_autodiff() && layer.training.is_enabled() {
        let (output, mean, variance) = <Dispatch as CpuKernels>::grafter_batch_norm_train(
            x.into_dispatch(),
            layer.gamma.val().into_dispatch(),
            layer.beta.val().into_dispatch(),
            layer.epsilon,
        );
        let (mean, variance) = (
            Tensor::<1>::from_dispatch(mean),
            Tensor::<1>::from_dispatch(variance),
        );
        let momentum = layer.momentum;
        let running_mean = layer.running_mean.value_sync().to_device(&device);
        let running_var = layer.running_var.value_sync().to_device(&device);
        let running_mean = running_mean
            .mul_scalar(1.0 - momentum)
            .add(mean.detach().mul_scalar(momentum));
        let running_var = running_var
            .mul_scalar(1.0 - momentum)
            .add(variance.detach().mul_scalar(momentum));
        layer.running_mean.update(running_mean.detach());
        layer.running_var.update(running_var.detach());
        return Tensor::from_dispatch(output);
    }
    let mean = layer.running_mean.value().to_device(&device);
    let variance = layer.running_var.value().to_device(&device);
    Tensor::from_dispatch(<Dispatch as CpuKernels>::grafter_batch_norm(
        x.into_dispatch(),
        layer.gamma.val().into_dispatch(),
        layer.beta.val().into_dispatch(),
        mean.into_dispatch(),
        variance.into_dispatch(),
        layer.epsilon,
    ))
}

/// `(begin, end)` padding per spatial axis, as Burn's layers compute it.
fn padding_pairs(
    padding: &PaddingConfig2d,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> [(usize, usize); 2] {
    match padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(*top, *bottom), (*left, *right)],
        PaddingConfig2d::Same => [0, 1].map(|i| {
            let out = size[i].div_ceil(stride[i]);
            let needed = out.saturating_sub(1) * stride[i] + kernel[i];
            let total = needed.saturating_sub(size[i]);
            (total / 2, total - total / 2)
        }),
    }
}
