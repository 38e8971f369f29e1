//! [`CpuKernels`] under Burn's autodiff. Convolution and training BatchNorm record a backward
//! step whose gradients run the inner backend's kernels (burn-autodiff's own `conv2d` and
//! `batch_norm_train` patterns, with the extension's entry points in place of Burn's).
//! Max-pooling records the inner backend's argmax (a byte per output on flex) and scatters
//! through it backward; ReLU keeps its output rather than its input, so that its input can be
//! overwritten. Inference BatchNorm and the fused convolutions (`… + residual`, ReLU, a scaled
//! weight) with an input that needs a gradient take tracked ops; without one, the inner
//! backend's kernel.

use burn::backend::Autodiff;
use burn::backend::Backend;
use burn::backend::TensorMetadata;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::ops::ConvOptions;

use crate::extension::CpuKernels;

/// `relu(conv2d(x, weight, bias) (+ residual))`: with anything tracked, the convolution,
/// addition and ReLU recorded one after the other (the unfused ops exactly); without, the inner
/// backend's fused kernel, untracked.
fn conv_add_relu<B: Backend + CpuKernels, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
    residual: Option<FloatTensor<Autodiff<B, C>>>,
    options: ConvOptions<2>,
) -> FloatTensor<Autodiff<B, C>> {
    type Ad<B, C> = Autodiff<B, C>;
    let tracked = [&x, &weight, &bias]
        .into_iter()
        .chain(&residual)
        .any(|t| t.is_tracked());
    if tracked {
        let mut y = Ad::<B, C>::grafter_conv2d_bias(x, weight, bias, options);
        if let Some(r) = residual {
            y = Ad::<B, C>::float_add(y, r);
        }
        return Ad::<B, C>::grafter_relu(y);
    }
    let nodes = [x.node(), weight.node(), bias.node()];
    let (x, weight, bias) = (
        x.into_primitive(),
        weight.into_primitive(),
        bias.into_primitive(),
    );
    // (`untracked` takes its parents as an array: one length per arm.)
    match residual {
        Some(r) => {
            let [a, b, c] = nodes;
            let nodes = [a, b, c, r.node()];
            let output =
                B::grafter_conv2d_bias_add_relu(x, weight, bias, r.into_primitive(), options);
            untracked::<B, C, 4>(nodes, output)
        }
        None => untracked::<B, C, 3>(nodes, B::grafter_conv2d_bias_relu(x, weight, bias, options)),
    }
}

/// `relu(conv2d(x, weight · scale, bias) + residual)` (no addition without a residual, the ReLU
/// with a residual or when `relu`): with anything tracked, the weight's scaling and the
/// convolution recorded as ops (then [`conv_add_relu`]'s); without, the inner backend's kernel,
/// the scale applied inside it, untracked.
#[allow(clippy::too_many_arguments)]
fn conv_scaled<B: Backend + CpuKernels, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    scale: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
    residual: Option<FloatTensor<Autodiff<B, C>>>,
    relu: bool,
    options: ConvOptions<2>,
) -> FloatTensor<Autodiff<B, C>> {
    type Ad<B, C> = Autodiff<B, C>;
    let tracked = [&x, &weight, &scale, &bias]
        .into_iter()
        .chain(&residual)
        .any(|t| t.is_tracked());
    if tracked {
        let c_out = weight.shape()[0];
        let scale = Ad::<B, C>::float_reshape(scale, [c_out, 1, 1, 1].into());
        let weight = Ad::<B, C>::float_mul(weight, scale);
        return match (residual, relu) {
            (None, false) => Ad::<B, C>::grafter_conv2d_bias(x, weight, bias, options),
            (residual, _) => conv_add_relu::<B, C>(x, weight, bias, residual, options),
        };
    }
    let nodes = [x.node(), weight.node(), scale.node(), bias.node()];
    let (x, weight, scale, bias) = (
        x.into_primitive(),
        weight.into_primitive(),
        scale.into_primitive(),
        bias.into_primitive(),
    );
    // (`untracked` takes its parents as an array: one length per arm.)
    match residual {
        Some(r) => {
            let [a, b, c, d] = nodes;
            let nodes = [a, b, c, d, r.node()];
            let r = r.into_primitive();
            let output = B::grafter_conv2d_scaled_add_relu(x, weight, scale, bias, r, options);
            untracked::<B, C, 5>(nodes, output)
        }
        None => {
            let output = B::grafter_conv2d_scaled(x, weight, scale, bias, relu, options);
            untracked::<B, C, 4>(nodes, output)
        }
    }
}

#[derive(Debug)]
struct Conv2dWithBias;

#[derive(Debug)]
struct Conv2dNoBias;

impl<B: Backend + CpuKernels> Backward<B, 3> for Conv2dWithBias {
    type State = (NodeId, NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, bias_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        let bias = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(bias_state);
        if let Some(node) = node_x {
            let dx = B::grafter_conv2d_x_backward(
                x.clone(),
                weight.clone(),
                grad.clone(),
                options.clone(),
            );
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            let dw = B::grafter_conv2d_weight_backward(x.clone(), weight, grad.clone(), options);
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, B::conv2d_bias_backward(x, bias, grad));
        }
    }
}

impl<B: Backend + CpuKernels> Backward<B, 2> for Conv2dNoBias {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        if let Some(node) = node_x {
            let dx = B::grafter_conv2d_x_backward(
                x.clone(),
                weight.clone(),
                grad.clone(),
                options.clone(),
            );
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            grads.register::<B>(
                node.id,
                B::grafter_conv2d_weight_backward(x, weight, grad, options),
            );
        }
    }
}

impl<B: Backend + CpuKernels, C: CheckpointStrategy> CpuKernels for Autodiff<B, C> {
    fn grafter_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match Conv2dWithBias
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let bias_state = prep.checkpoint(&bias);
                prep.finish(
                    (x_state, weight_state, bias_state, options.clone()),
                    B::grafter_conv2d_bias(
                        x.into_primitive(),
                        weight.into_primitive(),
                        bias.into_primitive(),
                        options,
                    ),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::grafter_conv2d_bias(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                options,
            )),
        }
    }

    fn grafter_conv2d_bias_add_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        conv_add_relu::<B, C>(x, weight, bias, Some(residual), options)
    }

    fn grafter_conv2d_bias_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        conv_add_relu::<B, C>(x, weight, bias, None, options)
    }

    fn grafter_conv2d_scaled(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        conv_scaled::<B, C>(x, weight, scale, bias, None, relu, options)
    }

    fn grafter_conv2d_scaled_add_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        conv_scaled::<B, C>(x, weight, scale, bias, Some(residual), true, options)
    }

    fn grafter_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match Conv2dNoBias
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                prep.finish(
                    (x_state, weight_state, options.clone()),
                    B::grafter_conv2d(x.into_primitive(), weight.into_primitive(), options),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::grafter_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }

    fn grafter_max_pool2d(
        x: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> FloatTensor<Self> {
        if x.is_tracked() {
            return match MaxPool2d
                .prepare::<C>([x.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let x_state = prep.checkpoint(&x);
                    let (output, argmax) = B::grafter_max_pool2d_with_argmax(
                        x.into_primitive(),
                        kernel_size,
                        stride,
                        padding,
                        dilation,
                        ceil_mode,
                    );
                    let options = PoolOptions {
                        kernel_size,
                        stride,
                        padding,
                        dilation,
                        ceil_mode,
                    };
                    prep.finish((x_state, argmax, options), output)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::grafter_max_pool2d(
                    x.into_primitive(),
                    kernel_size,
                    stride,
                    padding,
                    dilation,
                    ceil_mode,
                )),
            };
        }
        let node = x.node();
        let output = B::grafter_max_pool2d(
            x.into_primitive(),
            kernel_size,
            stride,
            padding,
            dilation,
            ceil_mode,
        );
        untracked::<B, C, 1>([node], output)
    }

    fn grafter_relu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match Relu.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let output = B::grafter_relu(x.into_primitive());
                prep.finish(output.clone(), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::grafter_relu(x.into_primitive())),
        }
    }

    fn grafter_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let tracked = [&x, &gamma, &beta, &mean, &variance]
            .iter()
            .any(|t| t.is_tracked());
        if tracked {
            return <Self as ModuleOps<Self>>::batch_norm(x, gamma, beta, mean, variance, epsilon);
        }
        let nodes = [
            x.node(),
            gamma.node(),
            beta.node(),
            mean.node(),
            variance.node(),
        ];
        let output = B::grafter_batch_norm(
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            mean.into_primitive(),
            variance.into_primitive(),
            epsilon,
        );
        untracked::<B, C, 5>(nodes, output)
    }

    fn grafter_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        match BatchNormTrainOps
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let (output, mean, variance) = B::grafter_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                let output = prep.finish(
                    (
                        x_state,
                        gamma_state,
                        mean.clone(),
                        variance.clone(),
                        epsilon,
                    ),
                    output,
                );
                (output, leaf::<B, C>(mean), leaf::<B, C>(variance))
            }
            OpsKind::UnTracked(prep) => {
                let (output, mean, variance) = B::grafter_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                (
                    prep.finish(output),
                    leaf::<B, C>(mean),
                    leaf::<B, C>(variance),
                )
            }
        }
    }
}

/// A max-pooling's settings, kept for its backward step.
#[derive(Debug, Clone, Copy)]
struct PoolOptions {
    kernel_size: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
}

#[derive(Debug)]
struct MaxPool2d;

impl<B: Backend + CpuKernels> Backward<B, 1> for MaxPool2d {
    // The input is checkpointed (for its shape; the ReLU before it keeps it anyway), the argmax
    // comes along as computed.
    type State = (NodeId, IntTensor<B>, PoolOptions);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, argmax, o) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        if let Some(node) = node_x {
            let dx = B::grafter_max_pool2d_backward(
                x,
                o.kernel_size,
                o.stride,
                o.padding,
                o.dilation,
                o.ceil_mode,
                grad,
                argmax,
            );
            grads.register::<B>(node.id, dx);
        }
    }
}

#[derive(Debug)]
struct Relu;

impl<B: Backend + CpuKernels> Backward<B, 1> for Relu {
    // The output, not the input (Burn keeps the input): the gradient needs only the output's
    // sign, and an input that nothing else holds is then overwritten by the forward.
    type State = B::FloatTensorPrimitive;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::grafter_relu_backward(ops.state, grad));
        }
    }
}

/// `output`, computed by the inner backend from the parents `nodes`, none of which needs a
/// gradient: an autodiff tensor that records no backward step.
fn untracked<B: Backend, C: CheckpointStrategy, const N: usize>(
    nodes: [NodeGuard; N],
    output: FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    Untracked
        .prepare::<C>(nodes)
        .compute_bound()
        .stateless(output)
}

/// The backward step of an operation none of whose inputs needs a gradient: never run.
#[derive(Debug)]
struct Untracked;

impl<B: Backend, const N: usize> Backward<B, N> for Untracked {
    type State = ();

    fn backward(
        self,
        _ops: Ops<Self::State, N>,
        _grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
    }
}

#[derive(Debug)]
struct BatchNormTrainOps;

impl<B: Backend + CpuKernels> Backward<B, 3> for BatchNormTrainOps {
    // The input and gamma are checkpointed; the batch statistics come along as computed.
    type State = (
        NodeId,
        NodeId,
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        f64,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, mean, variance, epsilon) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let gamma = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(gamma_state);
        let (dx, dgamma, dbeta) =
            B::grafter_batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<B>(node.id, dgamma);
        }
        if let Some(node) = node_beta {
            grads.register::<B>(node.id, dbeta);
        }
    }
}

/// An untracked autodiff tensor holding `primitive` (the batch statistics: never differentiated).
fn leaf<B: Backend, C: CheckpointStrategy>(
    primitive: B::FloatTensorPrimitive,
) -> FloatTensor<Autodiff<B, C>> {
    FloatTensor::<Autodiff<B, C>>::new(primitive)
}
