//! The kernels as a Burn backend extension: one trait whose default bodies are Burn's own ops
//! (what every backend but flex runs), overridden for flex in [`crate::flex`] and given an
//! autodiff implementation in [`crate::autodiff`] whose backward pass also runs these kernels.

use burn::backend::Backend;
use burn::backend::TensorMetadata;
use burn::backend::backend_extension;
use burn::backend::get_or_init_device_settings;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::ops::ConvOptions;

/// Convolution, max-pooling, ReLU and BatchNorm entry points that grafter's models call instead of
/// Burn's.
#[backend_extension(Flex, Autodiff)]
pub trait CpuKernels: Backend {
    /// 2-D convolution without bias, as Burn's `conv2d`. (With and without bias are two
    /// methods: the extension macro's autodiff routing does not take `Option` tensors.)
    fn grafter_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }

    /// 2-D convolution with bias, as Burn's `conv2d`.
    fn grafter_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options)
    }

    /// `relu(conv2d(x, weight, bias) + residual)`: a ResNet block's last convolution at
    /// inference, the addition and ReLU fused into the kernel on flex. Elsewhere, and under
    /// autodiff when any input needs a gradient, Burn's ops one after the other.
    fn grafter_conv2d_bias_add_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::relu(Self::float_add(
            Self::conv2d(x, weight, Some(bias), options),
            residual,
        ))
    }

    /// `relu(conv2d(x, weight, bias))`, the ReLU fused into the kernel on flex (as
    /// [`CpuKernels::grafter_conv2d_bias_add_relu`], without the residual).
    fn grafter_conv2d_bias_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::relu(Self::conv2d(x, weight, Some(bias), options))
    }

    /// `conv2d(x, weight · scale, bias)`, then a ReLU when `relu`; `scale[co]` a factor of
    /// output channel `co`'s kernels: a BatchNorm folded into the convolution without a pass
    /// over the weight (grafter's kernels apply the factor where the weight is in cache).
    fn grafter_conv2d_scaled(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let c_out = weight.shape()[0];
        let scale = Self::float_reshape(scale, [c_out, 1, 1, 1].into());
        let y = Self::conv2d(x, Self::float_mul(weight, scale), Some(bias), options);
        if relu { Self::relu(y) } else { y }
    }

    /// `relu(conv2d(x, weight · scale, bias) + residual)`: [`Self::grafter_conv2d_scaled`]
    /// with a ResNet block's residual.
    fn grafter_conv2d_scaled_add_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let y = Self::grafter_conv2d_scaled(x, weight, scale, bias, false, options);
        Self::relu(Self::float_add(y, residual))
    }

    fn grafter_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// Gradient of [`CpuKernels::grafter_conv2d`] with respect to its weight.
    fn grafter_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options)
    }

    /// 2-D max-pooling with symmetric padding, as Burn's `max_pool2d`.
    fn grafter_max_pool2d(
        x: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> FloatTensor<Self> {
        Self::max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)
    }

    /// Max-pooling that also returns what its gradient needs, `(output, argmax)`: Burn's
    /// `max_pool2d_with_indices` (flat input indices), or on flex the tap inside each window
    /// as one byte.
    fn grafter_max_pool2d_with_argmax(
        x: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> (FloatTensor<Self>, IntTensor<Self>) {
        let int_dtype = get_or_init_device_settings::<Self>(&x.device()).int_dtype;
        let out = Self::max_pool2d_with_indices(
            x,
            kernel_size,
            stride,
            padding,
            dilation,
            ceil_mode,
            int_dtype,
        );
        (out.output, out.indices)
    }

    /// Gradient of [`CpuKernels::grafter_max_pool2d_with_argmax`] with respect to its input.
    #[allow(clippy::too_many_arguments)]
    fn grafter_max_pool2d_backward(
        x: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
        output_grad: FloatTensor<Self>,
        argmax: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::max_pool2d_with_indices_backward(
            x,
            kernel_size,
            stride,
            padding,
            dilation,
            ceil_mode,
            output_grad,
            argmax,
        )
        .x_grad
    }

    /// ReLU, as Burn's `relu`.
    fn grafter_relu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::relu(x)
    }

    /// Gradient of ReLU computed from its output, as Burn's `relu_backward`.
    fn grafter_relu_backward(
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::relu_backward(output, output_grad)
    }

    /// BatchNorm with given statistics, as Burn's `batch_norm`.
    fn grafter_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::batch_norm(x, gamma, beta, mean, variance, epsilon)
    }

    /// BatchNorm with the batch's own statistics: `(output, mean, biased variance)`, as
    /// Burn's `batch_norm_train`.
    fn grafter_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let out = Self::batch_norm_train(x, gamma, beta, epsilon);
        (out.output, out.mean, out.variance)
    }

    /// Gradients `(x, gamma, beta)` of [`CpuKernels::grafter_batch_norm_train`].
    fn grafter_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let g = Self::batch_norm_train_backward(x, gamma, mean, variance, epsilon, output_grad);
        (g.x_grad, g.gamma_grad, g.beta_grad)
    }
}
