//! grafter's CPU kernels: 2-D convolution (forward, input and weight gradients), index-free
//! max-pooling and BatchNorm (inference, training forward and backward) for Burn's flex
//! backend, reached through Burn 0.22's backend-extension mechanism.
//!
//! Why: on flex, a convolution re-lays its weights, converts its input to NHWC, builds a
//! zero-filled im2col buffer per tile, lets gemm re-pack the weights per tile and scatters the
//! result back to NCHW; the weight gradient calls gemm once per input channel. These kernels
//! compute the same products straight on NCHW data (im2col rows are shifted copies of the
//! input planes, the weight is used as stored, the output and gradients are written in place,
//! the bias is the GEMM's starting value) with one level of parallelism (a block of output
//! positions per thread, or, with too few blocks — batch 1 — the output channels split over
//! the threads), and 3×3 stride-1 convolutions of 1024 output positions or more (forward,
//! input and weight gradients) by Winograd F(4×4, 3×3) or F(2×2, 3×3) ([`set_conv_precision`]
//! chooses between speed and closeness to direct convolution); an inference BatchNorm is
//! folded into its convolution, its factor applied inside the kernel; max-pooling skips flex's
//! i64 argmax (none for inference, a byte per output for training); BatchNorm runs in one or
//! two passes per channel instead of Burn's composition of broadcast element-wise ops.
//! docs/BENCHMARKS.md has the measurements.
//!
//! Layers call [`conv2d`] / [`max_pool2d`] / [`relu`] (or [`conv2d_layer`] / [`max_pool2d_layer`] /
//! [`batch_norm_layer`] / [`conv_bn_layer`] for Burn's `nn` modules) instead of Burn's
//! functions. On flex with f32 tensors — with or without
//! autodiff — that runs these kernels; on every other device, dtype or shape it is exactly
//! Burn's op. `GRAFTER_KERNELS=reference` (or [`set_kernels`]) routes everything to Burn's ops,
//! to bisect a numerical difference or measure the gain. On the CPU the process keeps freed
//! memory for reuse instead of handing each large block back to the OS
//! ([`set_keep_freed_memory`]: fresh pages for every activation cost 14% of a ResNet-50
//! forward's time).
//!
//! ```
//! use burn::tensor::{Device, Tensor, Distribution};
//! use burn::tensor::ops::ConvOptions;
//!
//! let device = Device::flex();
//! let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
//! let w = Tensor::<4>::random([8, 3, 3, 3], Distribution::Normal(0.0, 1.0), &device);
//! let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
//! let fast = grafter_kernels::conv2d(x.clone(), w.clone(), None, options.clone());
//! let reference = burn::tensor::module::conv2d(x, w, None, options);
//! assert!(fast.sub(reference).abs().max().into_scalar::<f32>() < 1e-4);
//! ```

mod activation;
mod autodiff;
mod batch_norm;
mod choice;
mod conv;
mod extension;
mod flex;
mod gemm;
mod layers;
mod memory;
mod output;
mod pool;
mod pool_rows;
mod pool_rows_argmax;
mod precision;
mod scratch;
mod setting;

pub use choice::{Kernels, kernels, set_kernels};
pub use extension::CpuKernels;
pub use layers::{
    batch_norm_layer, conv_bn_layer, conv_bn_relu_layer, conv_relu_layer, conv2d_layer,
    max_pool2d_layer,
};
pub use memory::{TRIM_THRESHOLD, keeps_freed_memory, release_freed_memory, set_keep_freed_memory};
pub use precision::{ConvPrecision, conv_precision, set_conv_precision};

use burn::backend::{Dispatch, DispatchDevice};
use burn::tensor::Tensor;
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};

/// 2-D convolution with Burn's `conv2d` semantics (NCHW input, `[c_out, c_in / groups, kh,
/// kw]` weight), on grafter's kernels where they apply (see the crate docs).
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    if !runs_here(&x) {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
    Tensor::from_dispatch(match bias {
        Some(bias) => {
            <Dispatch as CpuKernels>::grafter_conv2d_bias(x, weight, bias.into_dispatch(), options)
        }
        None => <Dispatch as CpuKernels>::grafter_conv2d(x, weight, options),
    })
}

/// `relu(conv2d(x, weight, bias) + residual)` (no addition without a residual), with Burn's
/// `conv2d` semantics. On grafter's kernels the addition and the ReLU run inside the
/// convolution: the residual joins the bias as the output's starting value, the ReLU runs over
/// each block of output while it is in cache. Under autodiff, when any input needs a gradient,
/// the convolution, addition and ReLU are recorded one after the other.
///
/// ```
/// use burn::tensor::{Device, Tensor, Distribution};
/// use burn::tensor::ops::ConvOptions;
///
/// let device = Device::flex();
/// let x = Tensor::<4>::random([2, 8, 10, 10], Distribution::Normal(0.0, 1.0), &device);
/// let w = Tensor::<4>::random([8, 8, 3, 3], Distribution::Normal(0.0, 0.2), &device);
/// let b = Tensor::<1>::random([8], Distribution::Normal(0.0, 1.0), &device);
/// let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
/// let fused = grafter_kernels::conv2d_add_relu(
///     x.clone(), w.clone(), b.clone(), Some(x.clone()), options.clone());
/// let y = burn::tensor::module::conv2d(x.clone(), w, Some(b), options);
/// let reference = burn::tensor::activation::relu(y + x);
/// assert!(fused.sub(reference).abs().max().into_scalar::<f32>() < 1e-4);
/// ```
pub fn conv2d_add_relu(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    residual: Option<Tensor<4>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    if !runs_here(&x) {
        let y = burn::tensor::module::conv2d(x, weight, Some(bias), options);
        return add_relu(y, residual);
    }
    let (x, weight, bias) = (
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    );
    Tensor::from_dispatch(match residual {
        Some(r) => <Dispatch as CpuKernels>::grafter_conv2d_bias_add_relu(
            x,
            weight,
            bias,
            r.into_dispatch(),
            options,
        ),
        None => <Dispatch as CpuKernels>::grafter_conv2d_bias_relu(x, weight, bias, options),
    })
}

/// `conv2d(x, weight · scale, bias)` (`scale[co]` a factor of output channel `co`'s kernels),
/// then `+ residual` and a ReLU when asked (`relu`; always with a residual): a convolution with
/// its BatchNorm folded in, for `x` where the kernels run (its one caller, the layers'
/// folding, checks that first). The factor is applied where the weight is in cache — in
/// Winograd's weight transform, or to the GEMM's product block — instead of as a pass over the
/// whole weight before the call, which at batch 1 costs as much as the convolution's own
/// reading of the weight.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_scaled(
    x: Tensor<4>,
    weight: Tensor<4>,
    scale: Tensor<1>,
    bias: Tensor<1>,
    residual: Option<Tensor<4>>,
    relu: bool,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
    let (scale, bias) = (scale.into_dispatch(), bias.into_dispatch());
    Tensor::from_dispatch(match residual {
        Some(r) => <Dispatch as CpuKernels>::grafter_conv2d_scaled_add_relu(
            x,
            weight,
            scale,
            bias,
            r.into_dispatch(),
            options,
        ),
        None => {
            <Dispatch as CpuKernels>::grafter_conv2d_scaled(x, weight, scale, bias, relu, options)
        }
    })
}

/// `relu(y + residual)` (no addition without a residual) as separate ops: what the fused
/// kernels compute, where they do not apply.
pub(crate) fn add_relu(y: Tensor<4>, residual: Option<Tensor<4>>) -> Tensor<4> {
    relu(match residual {
        Some(r) => y + r,
        None => y,
    })
}

/// 2-D max-pooling with Burn's `max_pool2d` semantics, on grafter's kernel where it applies
/// (symmetric padding; see the crate docs).
pub fn max_pool2d(x: Tensor<4>, options: MaxPoolOptions<2>) -> Tensor<4> {
    let symmetric = options.padding.iter().all(|(begin, end)| begin == end);
    if !symmetric || !runs_here(&x) {
        return burn::tensor::module::max_pool2d(x, options);
    }
    Tensor::from_dispatch(<Dispatch as CpuKernels>::grafter_max_pool2d(
        x.into_dispatch(),
        options.kernel_size,
        options.stride,
        [options.padding[0].0, options.padding[1].0],
        options.dilation,
        options.ceil_mode,
    ))
}

/// ReLU with Burn's `relu` semantics (NaN propagates), on grafter's kernel where it applies:
/// over every core, in place when nothing else holds `x`, and under autodiff keeping its
/// output rather than its input for the gradient (see the crate docs).
///
/// ```
/// use burn::tensor::{Device, Tensor};
///
/// let x = Tensor::<2>::from_floats([[-1.0, 0.5], [2.0, -0.0]], &Device::flex());
/// let y = grafter_kernels::relu(x.clone());
/// assert_eq!(y.into_data(), burn::tensor::activation::relu(x).into_data());
/// ```
pub fn relu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !runs_here(&x) {
        return burn::tensor::activation::relu(x);
    }
    Tensor::from_dispatch(<Dispatch as CpuKernels>::grafter_relu(x.into_dispatch()))
}

/// Whether `x` lives where the kernels run: flex, with or without autodiff, and the kernels
/// chosen.
pub(crate) fn runs_here<const D: usize>(x: &Tensor<D>) -> bool {
    let flex = matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    if flex {
        memory::apply_once();
    }
    flex && kernels() == Kernels::Grafter
}
