//! Burn's `nn` convolution, max-pooling and BatchNorm layers, run on grafter's kernels.

use burn::backend::Dispatch;
use burn::nn::BatchNorm;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Tensor, TensorData};

use crate::extension::CpuKernels;

/// `layer.forward(x)`, through [`crate::conv2d`].
pub fn conv2d_layer(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let options = conv_options(layer, &x);
    crate::conv2d(
        x,
        layer.weight.val(),
        layer.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// `bn.forward(conv.forward(x))`, with the BatchNorm folded into the convolution where it
/// normalises by its running statistics and nothing of either layer is trained (inference,
/// frozen stages): one convolution with weight `w·s` and bias `β + (b − μ)·s`,
/// `s = γ / √(σ² + ε)` computed in f64, instead of a convolution and a pass over its output.
/// The factor `s` is recomputed per call (one value per channel) and applied inside the
/// kernel, so nothing goes stale when a stage is unfrozen and the weight is read only by the
/// convolution.
///
/// ```
/// use burn::nn::conv::Conv2dConfig;
/// use burn::nn::{BatchNormConfig, PaddingConfig2d};
/// use burn::tensor::{Device, Distribution, Tensor};
///
/// let device = Device::flex();
/// let conv = Conv2dConfig::new([8, 16], [3, 3])
///     .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
///     .init(&device);
/// let bn = BatchNormConfig::new(16).init(&device);
/// let x = Tensor::<4>::random([2, 8, 10, 10], Distribution::Normal(0.0, 1.0), &device);
/// let fused = grafter_kernels::conv_bn_layer(&conv, &bn, x.clone());
/// let separate = bn.forward(conv.forward(x));
/// assert!(fused.sub(separate).abs().max().into_scalar::<f32>() < 1e-4);
/// ```
pub fn conv_bn_layer(conv: &Conv2d, bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    match folded(conv, bn, &x) {
        Some((scale, shift)) => {
            let options = conv_options(conv, &x);
            let weight = conv.weight.val();
            crate::conv2d_scaled(x, weight, scale, shift, None, false, options)
        }
        None => batch_norm_layer(bn, conv2d_layer(conv, x)),
    }
}

/// `relu(conv.forward(x) + residual)` (no addition without a residual), the addition and ReLU
/// inside the convolution kernel when the layer has a bias ([`crate::conv2d_add_relu`]; VGG's
/// layers, ONNX graphs whose BatchNorms the exporter folded), else the ops one after the other.
pub fn conv_relu_layer(conv: &Conv2d, x: Tensor<4>, residual: Option<Tensor<4>>) -> Tensor<4> {
    match &conv.bias {
        Some(bias) => {
            let options = conv_options(conv, &x);
            crate::conv2d_add_relu(x, conv.weight.val(), bias.val(), residual, options)
        }
        None => crate::add_relu(conv2d_layer(conv, x), residual),
    }
}

/// `relu(bn.forward(conv.forward(x)) + residual)` (no addition without a residual): a ResNet
/// block's convolutions. Where [`conv_bn_layer`] folds the BatchNorm, the addition and the ReLU
/// run inside the convolution kernel (as in [`crate::conv2d_add_relu`]) instead of as two more
/// passes over the output; otherwise the layers and ops one after the other.
///
/// ```
/// use burn::nn::conv::Conv2dConfig;
/// use burn::nn::BatchNormConfig;
/// use burn::tensor::{Device, Distribution, Tensor};
///
/// let device = Device::flex();
/// let conv = Conv2dConfig::new([8, 8], [1, 1]).init(&device);
/// let bn = BatchNormConfig::new(8).init(&device);
/// let x = Tensor::<4>::random([2, 8, 6, 6], Distribution::Normal(0.0, 1.0), &device);
/// let fused = grafter_kernels::conv_bn_relu_layer(&conv, &bn, x.clone(), Some(x.clone()));
/// let separate = burn::tensor::activation::relu(bn.forward(conv.forward(x.clone())) + x);
/// assert!(fused.sub(separate).abs().max().into_scalar::<f32>() < 1e-4);
/// ```
pub fn conv_bn_relu_layer(
    conv: &Conv2d,
    bn: &BatchNorm,
    x: Tensor<4>,
    residual: Option<Tensor<4>>,
) -> Tensor<4> {
    match folded(conv, bn, &x) {
        Some((scale, shift)) => {
            let options = conv_options(conv, &x);
            let weight = conv.weight.val();
            crate::conv2d_scaled(x, weight, scale, shift, residual, true, options)
        }
        None => crate::add_relu(batch_norm_layer(bn, conv2d_layer(conv, x)), residual),
    }
}

/// The factor `s` of the folded weight `w·s` and the folded bias `β + (b − μ)·s` of `conv`
/// then `bn`, when the BatchNorm normalises by its running statistics, nothing of either layer
/// is trained and `x` is where the kernels run; `None` otherwise.
fn folded(conv: &Conv2d, bn: &BatchNorm, x: &Tensor<4>) -> Option<(Tensor<1>, Tensor<1>)> {
    let trains = x.device().is_autodiff() && bn.training.is_enabled();
    let weight = conv.weight.val();
    let bias = conv.bias.as_ref().map(|b| b.val());
    let (gamma, beta) = (bn.gamma.val(), bn.beta.val());
    let learns = weight.is_require_grad()
        || gamma.is_require_grad()
        || beta.is_require_grad()
        || bias.as_ref().is_some_and(Tensor::is_require_grad);
    if trains || learns || !crate::runs_here(x) {
        return None;
    }
    let c_out = weight.dims()[0];
    let host = |t: Tensor<1>| -> Vec<f64> {
        t.into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .expect("f64 after convert")
    };
    let (gamma, beta) = (host(gamma), host(beta));
    let mean = host(bn.running_mean.value());
    let var = host(bn.running_var.value());
    let bias = bias.map_or_else(|| vec![0.0; c_out], host);
    let scale: Vec<f64> = (0..c_out)
        .map(|c| gamma[c] / (var[c] + bn.epsilon).sqrt())
        .collect();
    let shift: Vec<f32> = (0..c_out)
        .map(|c| (beta[c] + (bias[c] - mean[c]) * scale[c]) as f32)
        .collect();
    let device = weight.device();
    let scale: Vec<f32> = scale.into_iter().map(|s| s as f32).collect();
    let scale = Tensor::<1>::from_data(TensorData::new(scale, [c_out]), &device);
    let shift = Tensor::<1>::from_data(TensorData::new(shift, [c_out]), &device);
    Some((scale, shift))
}

/// The convolution options `layer.forward(x)` uses (its padding resolved for `x`'s size).
fn conv_options(layer: &Conv2d, x: &Tensor<4>) -> ConvOptions<2> {
    let [_, _, h, w] = x.dims();
    let [pad_h, pad_w] = padding_pairs(&layer.padding, [h, w], layer.kernel_size, layer.stride);
    ConvOptions::new_with_padding(layer.stride, [pad_h, pad_w], layer.dilation, layer.groups)
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
