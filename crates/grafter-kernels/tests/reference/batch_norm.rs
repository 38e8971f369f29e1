//! grafter's BatchNorm against Burn's `BatchNorm::forward` on identical layers: inference,
//! training (output, the three gradients, the running statistics it leaves), a frozen layer on
//! the training device, and an input whose mean is far from zero.

use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Tensor, TensorData};

fn random<const D: usize>(shape: [usize; D], seed: u64, offset: f32, device: &Device) -> Tensor<D> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| offset + rng.random_range(-1.0..1.0))
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn rel_err<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    let scale = b.clone().abs().max().into_scalar::<f32>().max(1e-12);
    a.sub(b).abs().max().into_scalar::<f32>() / scale
}

/// A layer with random affine parameters and running statistics (each call builds its own, so
/// two layers never share running state).
fn layer(channels: usize, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(channels).init(device);
    bn.gamma = Param::from_tensor(random([channels], 1, 1.0, device));
    bn.beta = Param::from_tensor(random([channels], 2, 0.0, device));
    bn.running_mean = burn::module::RunningState::new(random([channels], 3, 0.0, device));
    bn.running_var = burn::module::RunningState::new(random([channels], 4, 2.0, device));
    bn
}

/// [`layer`] on the autodiff device `ad`, its parameters tracking gradients.
fn training_layer(channels: usize, ad: &Device) -> BatchNorm {
    layer(channels, &Device::flex()).fork(ad).train()
}

#[test]
fn inference_matches_burn() {
    let device = Device::flex();
    for (shape, offset) in [
        ([2, 5, 7, 9], 0.0),
        ([33, 8, 4, 4], 0.0),
        ([3, 6, 5, 5], 100.0),
    ] {
        let bn = layer(shape[1], &device);
        let x = random(shape, 7, offset, &device);
        let err = rel_err(
            grafter_kernels::batch_norm_layer(&bn, x.clone()),
            bn.forward(x),
        );
        assert!(
            err <= 1e-5,
            "{shape:?} offset {offset}: relative error {err:e}"
        );
    }
}

#[test]
fn training_matches_burn_in_output_gradients_and_running_statistics() {
    let device = Device::flex().autodiff();
    for (shape, offset) in [
        ([4, 6, 5, 7], 0.0),
        ([33, 3, 4, 4], 0.0),
        ([2, 4, 6, 6], 50.0),
    ] {
        let run = |fast: bool| {
            let bn = training_layer(shape[1], &device);
            let x = random(shape, 9, offset, &device).require_grad();
            let out = if fast {
                grafter_kernels::batch_norm_layer(&bn, x.clone())
            } else {
                bn.forward(x.clone())
            };
            let r = random(shape, 10, 0.0, &device);
            let grads = out.clone().mul(r).sum().backward();
            (
                out.inner(),
                x.grad(&grads).unwrap(),
                bn.gamma.grad(&grads).unwrap(),
                bn.beta.grad(&grads).unwrap(),
                bn.running_mean.value_sync().inner(),
                bn.running_var.value_sync().inner(),
            )
        };
        let (o, dx, dg, db, rm, rv) = run(true);
        let (ro, rdx, rdg, rdb, rrm, rrv) = run(false);
        for (what, err) in [
            ("output", rel_err(o, ro)),
            ("x gradient", rel_err(dx, rdx)),
            ("gamma gradient", rel_err(dg, rdg)),
            ("beta gradient", rel_err(db, rdb)),
            ("running mean", rel_err(rm, rrm)),
            ("running variance", rel_err(rv, rrv)),
        ] {
            assert!(
                err <= 1e-5,
                "{shape:?} offset {offset}: {what} relative error {err:e}"
            );
        }
    }
}

#[test]
fn frozen_layer_on_the_training_device_keeps_its_statistics_and_passes_the_gradient() {
    let device = Device::flex().autodiff();
    let shape = [3, 4, 5, 5];
    let grad = |fast: bool| {
        let bn = training_layer(shape[1], &device).freeze();
        let before = bn.running_mean.value_sync().into_data();
        let x = random(shape, 11, 0.0, &device).require_grad();
        let out = if fast {
            grafter_kernels::batch_norm_layer(&bn, x.clone())
        } else {
            bn.forward(x.clone())
        };
        let grads = out.sum().backward();
        assert!(
            bn.gamma.grad(&grads).is_none(),
            "a frozen gamma got a gradient"
        );
        assert_eq!(bn.running_mean.value_sync().into_data(), before);
        x.grad(&grads).unwrap()
    };
    let err = rel_err(grad(true), grad(false));
    assert!(err <= 1e-5, "input gradient relative error {err:e}");
}
