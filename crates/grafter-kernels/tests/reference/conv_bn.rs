//! `conv_bn_layer` against Burn's two layers run one after the other: folded where the
//! BatchNorm uses running statistics and nothing is trained (≤ 1e-5 relative), and exactly the
//! separate path where the BatchNorm trains or a parameter needs a gradient.

use burn::module::{Module, Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};

fn random<const D: usize>(shape: [usize; D], seed: u64, lo: f32, device: &Device) -> Tensor<D> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(lo..1.0)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A BatchNorm with non-trivial γ, β and running statistics.
fn batch_norm(c: usize, seed: u64, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(c).init(device);
    bn.gamma = Param::from_tensor(random([c], seed, -1.0, device));
    bn.beta = Param::from_tensor(random([c], seed + 1, -1.0, device));
    bn.running_mean = RunningState::new(random([c], seed + 2, -1.0, device));
    bn.running_var = RunningState::new(random([c], seed + 3, 0.1, device));
    bn
}

/// (input, c_out, kernel, stride, padding, bias)
type Case = ([usize; 4], usize, usize, usize, usize, bool);

fn cases() -> Vec<Case> {
    vec![
        // Winograd (3×3 stride 1: F(2×2) a block per task, F(4×4) the channels split),
        // im2col (stride 2: few blocks and a block per task, each with the weight scaled in a
        // copy and — weight larger than the output — with each product scaled; 7×7 stem),
        // pointwise, with a conv bias.
        ([5, 16, 15, 15], 32, 3, 1, 1, false),
        ([1, 16, 36, 36], 24, 3, 1, 1, false),
        ([3, 8, 11, 10], 16, 3, 2, 1, false),
        ([8, 8, 20, 20], 16, 3, 2, 1, false),
        ([4, 64, 9, 9], 16, 3, 2, 1, false),
        ([1, 3, 20, 20], 8, 7, 2, 3, false),
        ([2, 16, 6, 6], 24, 1, 1, 0, true),
    ]
}

fn layers(case: &Case, seed: u64, device: &Device) -> (Conv2d, BatchNorm) {
    let &([_, c_in, _, _], c_out, k, s, p, bias) = case;
    let conv = Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(bias)
        .init(device);
    (conv, batch_norm(c_out, seed, device))
}

fn rel_err(a: Tensor<4>, b: Tensor<4>) -> f32 {
    let scale: f32 = b.clone().abs().max().into_scalar();
    let diff: f32 = (a - b).abs().max().into_scalar();
    diff / scale.max(f32::MIN_POSITIVE)
}

#[test]
fn folded_matches_the_two_layers_in_inference() {
    for device in [Device::flex(), Device::flex().autodiff()] {
        for (i, case) in cases().iter().enumerate() {
            let (conv, mut bn) = layers(case, 10 * i as u64, &device);
            if device.is_autodiff() {
                // A frozen stage: no parameter needs a gradient, BatchNorm in inference mode.
                bn = bn.no_grad();
                bn.training = bn.training.with_value(false);
            }
            let conv = conv.no_grad();
            let x = random(case.0, 100 + i as u64, -1.0, &device);
            let fused = grafter_kernels::conv_bn_layer(&conv, &bn, x.clone());
            let separate = bn.forward(conv.forward(x));
            let err = rel_err(fused, separate);
            assert!(
                err <= 1e-5,
                "case {i} on {device:?}: relative error {err:e}"
            );
        }
    }
}

#[test]
fn training_batch_norm_or_trained_parameters_take_the_separate_layers_exactly() {
    let device = Device::flex().autodiff();
    for (i, case) in cases().iter().enumerate() {
        let (conv, bn) = layers(case, 20 * i as u64, &device);
        let x = random(case.0, 200 + i as u64, -1.0, &device);
        // Training BatchNorm, trainable convolution: the separate layers on grafter's kernels.
        let fused = grafter_kernels::conv_bn_layer(&conv, &bn, x.clone());
        let separate =
            grafter_kernels::batch_norm_layer(&bn, grafter_kernels::conv2d_layer(&conv, x.clone()));
        assert_eq!(
            fused.into_data(),
            separate.into_data(),
            "case {i}: training"
        );
    }
}
