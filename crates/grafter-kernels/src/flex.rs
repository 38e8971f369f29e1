//! The flex implementation of [`CpuKernels`]: f32 tensors take grafter's kernels, everything
//! else (f16, bf16, f64, depthwise convolutions, shapes the kernels do not cover) flex's own.

use burn::backend::Flex;
use burn::backend::ops::{ActivationOps, FloatTensorOps, ModuleOps};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, IntDType};
use burn_flex::{FlexTensor, Layout};
use burn_std::{Bytes, Shape};

use crate::activation::{relu, relu_backward, relu_backward_in_place, relu_in_place};
use crate::batch_norm::{
    BnShape, batch_norm_inference, batch_norm_train, batch_norm_train_backward,
};
use crate::conv::{
    ConvGeometry, Epilogue, conv2d_forward, conv2d_input_grad, conv2d_weight_grad,
    input_grad_as_forward,
};
use crate::extension::CpuKernels;
use crate::pool::{
    MAX_ARGMAX_TAPS, PoolGeometry, max_pool2d_backward, max_pool2d_forward, max_pool2d_with_argmax,
};

impl CpuKernels for Flex {
    fn grafter_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        conv_forward(x, (weight, None), None, options, None, false)
    }

    fn grafter_conv2d_bias(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        conv_forward(x, (weight, None), Some(bias), options, None, false)
    }

    fn grafter_conv2d_bias_add_relu(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        residual: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        conv_forward(x, (weight, None), Some(bias), options, Some(residual), true)
    }

    fn grafter_conv2d_bias_relu(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        conv_forward(x, (weight, None), Some(bias), options, None, true)
    }

    fn grafter_conv2d_scaled(
        x: FlexTensor,
        weight: FlexTensor,
        scale: FlexTensor,
        bias: FlexTensor,
        relu: bool,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        conv_forward(x, (weight, Some(scale)), Some(bias), options, None, relu)
    }

    fn grafter_conv2d_scaled_add_relu(
        x: FlexTensor,
        weight: FlexTensor,
        scale: FlexTensor,
        bias: FlexTensor,
        residual: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        conv_forward(
            x,
            (weight, Some(scale)),
            Some(bias),
            options,
            Some(residual),
            true,
        )
    }

    fn grafter_conv2d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(geo) =
            conv_geometry(&x, &weight, &options).filter(|geo| is_output_shaped(&output_grad, geo))
        else {
            return Flex::conv2d_x_backward(x, weight, output_grad, options);
        };
        let (weight, dy) = (weight.to_contiguous(), output_grad.to_contiguous());
        let dx = match input_grad_as_forward(&geo, &options, f32s(&weight)) {
            Some((flipped, w)) => {
                conv2d_forward(&flipped, f32s(&dy), &w, None, None, Epilogue::default())
            }
            None => conv2d_input_grad(&geo, f32s(&weight), f32s(&dy)),
        };
        from_f32s(dx, [geo.batch, geo.c_in, geo.h, geo.w])
    }

    fn grafter_conv2d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(geo) =
            conv_geometry(&x, &weight, &options).filter(|geo| is_output_shaped(&output_grad, geo))
        else {
            return Flex::conv2d_weight_backward(x, weight, output_grad, options);
        };
        let (x, dy) = (x.to_contiguous(), output_grad.to_contiguous());
        let dw = conv2d_weight_grad(&geo, f32s(&x), f32s(&dy));
        from_f32s(dw, [geo.c_out, geo.c_in_g(), geo.kh, geo.kw])
    }

    fn grafter_max_pool2d(
        x: FlexTensor,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> FlexTensor {
        let Some(geo) = pool_geometry(&x, kernel_size, stride, padding, dilation, ceil_mode) else {
            return Flex::max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode);
        };
        let x = x.to_contiguous();
        let out = max_pool2d_forward(&geo, f32s(&x));
        from_f32s(out, [geo.batch, geo.channels, geo.out_h, geo.out_w])
    }

    fn grafter_max_pool2d_with_argmax(
        x: FlexTensor,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> (FlexTensor, FlexTensor) {
        let geo = pool_geometry(&x, kernel_size, stride, padding, dilation, ceil_mode)
            .filter(|_| kernel_size[0] * kernel_size[1] <= MAX_ARGMAX_TAPS);
        let Some(geo) = geo else {
            let out = Flex::max_pool2d_with_indices(
                x,
                kernel_size,
                stride,
                padding,
                dilation,
                ceil_mode,
                IntDType::I64,
            );
            return (out.output, out.indices);
        };
        let x = x.to_contiguous();
        let (out, argmax) = max_pool2d_with_argmax(&geo, f32s(&x));
        let shape = [geo.batch, geo.channels, geo.out_h, geo.out_w];
        let argmax = FlexTensor::new(
            Bytes::from_elems(argmax),
            Layout::contiguous(Shape::from(shape)),
            DType::U8,
        );
        (from_f32s(out, shape), argmax)
    }

    fn grafter_max_pool2d_backward(
        x: FlexTensor,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
        output_grad: FlexTensor,
        argmax: FlexTensor,
    ) -> FlexTensor {
        // A byte argmax comes from grafter's forward only (anything else is Burn's indices).
        let geo =
            pool_geometry(&x, kernel_size, stride, padding, dilation, ceil_mode).filter(|geo| {
                let out = [geo.batch, geo.channels, geo.out_h, geo.out_w];
                argmax.dtype() == DType::U8
                    && output_grad.dtype() == DType::F32
                    && dims4(&output_grad) == Some(out)
                    && dims4(&argmax) == Some(out)
            });
        let Some(geo) = geo else {
            return Flex::max_pool2d_with_indices_backward(
                x,
                kernel_size,
                stride,
                padding,
                dilation,
                ceil_mode,
                output_grad,
                argmax,
            )
            .x_grad;
        };
        let (argmax, dy) = (argmax.to_contiguous(), output_grad.to_contiguous());
        let argmax = argmax
            .as_slice::<u8>()
            .expect("a contiguous tensor of the checked dtype");
        let dx = max_pool2d_backward(&geo, argmax, f32s(&dy));
        from_f32s(dx, [geo.batch, geo.channels, geo.h, geo.w])
    }

    fn grafter_relu(mut x: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return Flex::relu(x);
        }
        if owned_contiguous(&x) {
            let n = x.layout().num_elements();
            relu_in_place(&mut x.storage_mut::<f32>()[..n]);
            return x;
        }
        let x = x.to_contiguous();
        same_shape(relu(f32s(&x)), &x)
    }

    fn grafter_relu_backward(output: FlexTensor, mut output_grad: FlexTensor) -> FlexTensor {
        let same = output.dtype() == DType::F32
            && output_grad.dtype() == DType::F32
            && output.layout().shape() == output_grad.layout().shape();
        if !same {
            return Flex::relu_backward(output, output_grad);
        }
        let output = output.to_contiguous();
        if owned_contiguous(&output_grad) {
            let n = output_grad.layout().num_elements();
            relu_backward_in_place(f32s(&output), &mut output_grad.storage_mut::<f32>()[..n]);
            return output_grad;
        }
        let grad = output_grad.to_contiguous();
        same_shape(relu_backward(f32s(&output), f32s(&grad)), &grad)
    }

    fn grafter_batch_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let Some(shape) = bn_shape(&x, &[&gamma, &beta, &mean, &variance]) else {
            return Flex::batch_norm(x, gamma, beta, mean, variance, epsilon);
        };
        let [x, gamma, beta, mean, variance] =
            [x, gamma, beta, mean, variance].map(|t| t.to_contiguous());
        let y = batch_norm_inference(
            f32s(&x),
            &shape,
            f32s(&gamma),
            f32s(&beta),
            f32s(&mean),
            f32s(&variance),
            epsilon,
        );
        same_shape(y, &x)
    }

    fn grafter_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let Some(shape) = bn_shape(&x, &[&gamma, &beta]) else {
            let out = Flex::batch_norm_train(x, gamma, beta, epsilon);
            return (out.output, out.mean, out.variance);
        };
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.to_contiguous());
        let (y, mean, var) = batch_norm_train(f32s(&x), &shape, f32s(&gamma), f32s(&beta), epsilon);
        (same_shape(y, &x), vector(mean), vector(var))
    }

    fn grafter_batch_norm_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        output_grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let shape = bn_shape(&x, &[&gamma, &mean, &variance]).filter(|_| {
            output_grad.dtype() == DType::F32 && output_grad.layout().shape() == x.layout().shape()
        });
        let Some(shape) = shape else {
            let g = Flex::batch_norm_train_backward(x, gamma, mean, variance, epsilon, output_grad);
            return (g.x_grad, g.gamma_grad, g.beta_grad);
        };
        let [x, gamma, mean, variance, dy] =
            [x, gamma, mean, variance, output_grad].map(|t| t.to_contiguous());
        let (dx, dgamma, dbeta) = batch_norm_train_backward(
            f32s(&x),
            f32s(&dy),
            &shape,
            f32s(&gamma),
            f32s(&mean),
            f32s(&variance),
            epsilon,
        );
        (same_shape(dx, &x), vector(dgamma), vector(dbeta))
    }
}

/// The geometry of an f32 max-pooling these kernels compute, `None` for anything else.
fn pool_geometry(
    x: &FlexTensor,
    kernel_size: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> Option<PoolGeometry> {
    if x.dtype() != DType::F32 {
        return None;
    }
    PoolGeometry::new(dims4(x)?, kernel_size, stride, padding, dilation, ceil_mode)
}

/// `conv2d(x, weight·scale, bias)` (`scale[co]` a factor of output channel `co`'s kernels),
/// then `+ residual` and a ReLU when asked: grafter's kernel (the factor, addition and ReLU
/// inside it) for the f32 tensors it covers, flex's ops one after the other otherwise.
fn conv_forward(
    x: FlexTensor,
    (weight, scale): (FlexTensor, Option<FlexTensor>),
    bias: Option<FlexTensor>,
    options: ConvOptions<2>,
    residual: Option<FlexTensor>,
    relu: bool,
) -> FlexTensor {
    let geo = conv_geometry(&x, &weight, &options).filter(|geo| {
        bias.as_ref().is_none_or(|b| is_f32_vector(b, geo.c_out))
            && scale.as_ref().is_none_or(|s| is_f32_vector(s, geo.c_out))
            && residual.as_ref().is_none_or(|r| is_output_shaped(r, geo))
    });
    let Some(geo) = geo else {
        let weight = match scale {
            Some(scale) => {
                let c_out = weight.layout().shape()[0];
                let scale = Flex::float_reshape(scale, Shape::from([c_out, 1, 1, 1]));
                Flex::float_mul(weight, scale)
            }
            None => weight,
        };
        let mut y = Flex::conv2d(x, weight, bias, options);
        if let Some(r) = residual {
            y = Flex::float_add(y, r);
        }
        return if relu { Flex::relu(y) } else { y };
    };
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let bias = bias.map(|b| b.to_contiguous());
    let scale = scale.map(|s| s.to_contiguous());
    let residual = residual.map(|r| r.to_contiguous());
    let epilogue = Epilogue {
        residual: residual.as_ref().map(f32s),
        relu,
    };
    let out = conv2d_forward(
        &geo,
        f32s(&x),
        f32s(&weight),
        scale.as_ref().map(f32s),
        bias.as_ref().map(f32s),
        epilogue,
    );
    from_f32s(out, [geo.batch, geo.c_out, geo.out_h, geo.out_w])
}

/// The `[n, c, s]` shape of an f32 BatchNorm input whose per-channel tensors (`params`) are
/// f32 vectors of length `c`; `None` for anything else.
fn bn_shape(x: &FlexTensor, params: &[&FlexTensor]) -> Option<BnShape> {
    if x.dtype() != DType::F32 {
        return None;
    }
    let shape = BnShape::new(x.layout().shape().as_slice())?;
    params
        .iter()
        .all(|p| is_f32_vector(p, shape.c))
        .then_some(shape)
}

fn vector(data: Vec<f32>) -> FlexTensor {
    let len = data.len();
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from([len])),
        DType::F32,
    )
}

fn same_shape(data: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(like.layout().shape().clone()),
        DType::F32,
    )
}

/// The geometry of an f32 convolution these kernels compute, `None` for anything else.
fn conv_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<ConvGeometry> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    ConvGeometry::new(dims4(x)?, dims4(weight)?, options).filter(|geo| !geo.is_depthwise())
}

fn is_output_shaped(dy: &FlexTensor, geo: &ConvGeometry) -> bool {
    dy.dtype() == DType::F32 && dims4(dy) == Some([geo.batch, geo.c_out, geo.out_h, geo.out_w])
}

fn is_f32_vector(t: &FlexTensor, len: usize) -> bool {
    t.dtype() == DType::F32 && t.layout().shape().as_slice() == [len]
}

fn dims4(t: &FlexTensor) -> Option<[usize; 4]> {
    t.layout().shape().as_slice().try_into().ok()
}

/// Whether `t` may be overwritten in place: nothing else holds its storage, which it covers
/// contiguously from the start.
fn owned_contiguous(t: &FlexTensor) -> bool {
    t.is_unique() && t.layout().is_contiguous() && t.layout().start_offset() == 0
}

/// The elements of a contiguous f32 tensor.
fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("to_contiguous returns a contiguous tensor of the checked dtype")
}

fn from_f32s(data: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(shape)),
        DType::F32,
    )
}
