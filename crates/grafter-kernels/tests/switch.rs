//! `set_kernels(Kernels::Reference)` routes every call to Burn's op (its own test binary: the
//! choice is process-wide).

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use grafter_kernels::{Kernels, kernels, set_kernels};

#[test]
fn reference_choice_gives_burns_result_bit_for_bit() {
    let device = Device::flex();
    let x = Tensor::<4>::random([2, 8, 12, 12], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<4>::random([16, 8, 3, 3], Distribution::Normal(0.0, 1.0), &device);
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let reference = burn::tensor::module::conv2d(x.clone(), w.clone(), None, options.clone());

    set_kernels(Kernels::Reference);
    assert_eq!(kernels(), Kernels::Reference);
    let routed = grafter_kernels::conv2d(x.clone(), w.clone(), None, options.clone());
    assert_eq!(routed.into_data(), reference.clone().into_data());

    set_kernels(Kernels::Grafter);
    let ours = grafter_kernels::conv2d(x.clone(), w.clone(), None, options.clone());
    // grafter's kernels again: the same values up to summation order, and (72-term sums in
    // another order) not the same bits — which shows the kernels really ran.
    assert_ne!(ours.clone().into_data(), reference.clone().into_data());
    let diff = ours.sub(reference).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-4, "max difference {diff}");

    // The same on the autodiff device, for the weight gradient (the backward kernels).
    let ad = device.autodiff();
    let weight_grad = |fast: bool| {
        let w = Tensor::<4>::from_data(w.clone().into_data(), &ad).require_grad();
        let x = Tensor::<4>::from_data(x.clone().into_data(), &ad);
        let out = if fast {
            grafter_kernels::conv2d(x, w.clone(), None, options.clone())
        } else {
            burn::tensor::module::conv2d(x, w.clone(), None, options.clone())
        };
        w.grad(&out.sum().backward()).unwrap()
    };
    let (ours, reference) = (weight_grad(true), weight_grad(false));
    assert_ne!(ours.clone().into_data(), reference.clone().into_data());
    let scale = reference.clone().abs().max().into_scalar::<f32>();
    let diff = ours.sub(reference).abs().max().into_scalar::<f32>();
    assert!(
        diff <= 1e-5 * scale,
        "weight gradient difference {diff} (scale {scale})"
    );
}
