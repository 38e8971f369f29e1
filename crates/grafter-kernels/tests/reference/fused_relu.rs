//! `conv_bn_relu_layer`, `conv_relu_layer` and `conv2d_add_relu` (the residual addition and
//! ReLU inside the convolution kernel) against Burn's layers and ops one after the other:
//! within 1e-5 relative at inference, on every convolution path (Winograd F(4×4) and F(2×2),
//! im2col with stride 2, the 7×7 stem, pointwise), and exactly the separate ops, gradients
//! included, where anything needs a gradient.

use burn::module::{Module, Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

fn random<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// (input, c_out, kernel, stride, padding)
type Case = ([usize; 4], usize, usize, usize, usize);

const CASES: [Case; 6] = [
    // Winograd F(4×4) (maps of 28 and more; one block of tiles: the threads split the
    // channels), F(2×2) (odd size; several blocks, one per task).
    ([1, 16, 36, 36], 16, 3, 1, 1),
    ([5, 16, 15, 15], 16, 3, 1, 1),
    // im2col: stride 2, the 7×7 stem; pointwise (the input is the GEMM's operand).
    ([3, 8, 11, 10], 16, 3, 2, 1),
    ([1, 3, 20, 20], 8, 7, 2, 3),
    ([2, 16, 6, 6], 24, 1, 1, 0),
    ([2, 16, 7, 7], 32, 1, 2, 0),
];

fn layers(case: &Case, seed: u64, bias: bool, device: &Device) -> (Conv2d, BatchNorm) {
    let &([_, c_in, _, _], c_out, k, s, p) = case;
    let mut conv = Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(bias)
        .init(device);
    conv.weight = Param::from_tensor(random(conv.weight.dims(), seed, device).mul_scalar(0.3));
    let mut bn = BatchNormConfig::new(c_out).init(device);
    bn.gamma = Param::from_tensor(random([c_out], seed + 1, device));
    bn.beta = Param::from_tensor(random([c_out], seed + 2, device));
    bn.running_mean = RunningState::new(random([c_out], seed + 3, device));
    bn.running_var = RunningState::new(random([c_out], seed + 4, device).abs().add_scalar(0.1));
    (conv, bn)
}

/// The output's shape for `case`.
fn out_shape(case: &Case) -> [usize; 4] {
    let &([n, _, h, w], c_out, k, s, p) = case;
    [n, c_out, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1]
}

fn rel_err(a: Tensor<4>, b: Tensor<4>) -> f32 {
    let scale: f32 = b.clone().abs().max().into_scalar();
    let diff: f32 = (a - b).abs().max().into_scalar();
    diff / scale.max(f32::MIN_POSITIVE)
}

/// Fraction of zeros: the ReLU cut about half of the outputs.
fn zeros(t: &Tensor<4>) -> f32 {
    let n = t.shape().num_elements() as f32;
    t.clone().equal_elem(0.0).float().sum().into_scalar::<f32>() / n
}

#[test]
fn fused_epilogue_matches_the_layers_one_after_the_other_at_inference() {
    for device in [Device::flex(), Device::flex().autodiff()] {
        for (i, case) in CASES.iter().enumerate() {
            let (conv, mut bn) = layers(case, 10 * i as u64, false, &device);
            // Inference, or on the autodiff device a frozen stage.
            bn.training = bn.training.with_value(false);
            let (conv, bn) = (conv.no_grad(), bn.no_grad());
            let x = random(case.0, 100 + i as u64, &device);
            let r = random(out_shape(case), 200 + i as u64, &device);
            for residual in [None, Some(r)] {
                let fused =
                    grafter_kernels::conv_bn_relu_layer(&conv, &bn, x.clone(), residual.clone());
                let y = bn.forward(conv.forward(x.clone()));
                let separate = relu(match &residual {
                    Some(r) => y + r.clone(),
                    None => y,
                });
                let share = zeros(&fused);
                assert!((0.2..0.8).contains(&share), "case {i}: {share} zeros");
                let err = rel_err(fused, separate);
                assert!(
                    err <= 1e-5,
                    "case {i} on {device:?}, residual {}: relative error {err:e}",
                    residual.is_some()
                );
            }
            // VGG's layers: a convolution with a bias, then a ReLU.
            let (conv, _) = layers(case, 10 * i as u64, true, &device);
            let conv = conv.no_grad();
            let fused = grafter_kernels::conv_relu_layer(&conv, x.clone(), None);
            let err = rel_err(fused, relu(conv.forward(x)));
            assert!(
                err <= 1e-5,
                "case {i} conv + bias + ReLU: relative error {err:e}"
            );
        }
    }
}

#[test]
fn anything_needing_a_gradient_takes_the_separate_ops_exactly() {
    let device = Device::flex().autodiff();
    for (i, case) in CASES.iter().enumerate() {
        // Trainable layers, training BatchNorm.
        let (conv, bn) = layers(case, 20 * i as u64, false, &device);
        let x = random(case.0, 300 + i as u64, &device).require_grad();
        let r = random(out_shape(case), 400 + i as u64, &device).require_grad();
        let fused = grafter_kernels::conv_bn_relu_layer(&conv, &bn, x.clone(), Some(r.clone()));
        let y =
            grafter_kernels::batch_norm_layer(&bn, grafter_kernels::conv2d_layer(&conv, x.clone()));
        let separate = grafter_kernels::relu(y + r.clone());
        assert_eq!(
            fused.clone().into_data(),
            separate.clone().into_data(),
            "case {i}"
        );
        let (g1, g2) = (fused.sum().backward(), separate.sum().backward());
        for t in [&x, &r] {
            assert_eq!(
                t.grad(&g1).unwrap().into_data(),
                t.grad(&g2).unwrap().into_data()
            );
        }
        assert_eq!(
            conv.weight.grad(&g1).unwrap().into_data(),
            conv.weight.grad(&g2).unwrap().into_data()
        );

        // Frozen layers, but an input that needs a gradient (a frozen stage after a trained
        // one): the gradient flows through the folded convolution, addition and ReLU.
        let (conv, mut bn) = layers(case, 20 * i as u64, false, &device);
        bn.training = bn.training.with_value(false);
        let (conv, bn) = (conv.no_grad(), bn.no_grad());
        let fused = grafter_kernels::conv_bn_relu_layer(&conv, &bn, x.clone(), Some(r.clone()));
        let separate = relu(bn.forward(conv.forward(x.clone())) + r.clone());
        assert!(
            rel_err(fused.clone(), separate.clone()) <= 1e-5,
            "case {i}: frozen"
        );
        let (g1, g2) = (fused.sum().backward(), separate.sum().backward());
        for t in [&x, &r] {
            let (a, b) = (t.grad(&g1).unwrap(), t.grad(&g2).unwrap());
            let scale: f32 = b.clone().abs().max().into_scalar();
            let diff: f32 = (a - b).abs().max().into_scalar();
            assert!(
                diff <= 1e-4 * scale.max(1.0),
                "case {i}: gradient difference {diff}"
            );
        }
    }
}
