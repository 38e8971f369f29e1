//! grafter's max-pooling against Burn's op: plain, padded, dilated, ceil mode, batch 1, odd
//! sizes, ties, NaN and ±∞ inputs; under autodiff the forward with a byte argmax and its
//! backward give Burn's output and input gradient exactly.

use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor, TensorData};

fn random(shape: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Small integers (ties within and across windows' rows and columns) with −∞, +∞ and, with
/// `nan`, NaN sprinkled in.
fn special(shape: [usize; 4], seed: u64, nan: bool, device: &Device) -> Tensor<4> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| match rng.random_range(0..40) {
            0 if nan => f32::NAN,
            1 | 2 => f32::NEG_INFINITY,
            3 => f32::INFINITY,
            _ => rng.random_range(-2..3) as f32,
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Equal element by element, a NaN equal to a NaN.
fn assert_same(a: &TensorData, b: &TensorData, what: &str) {
    let (a, b) = (
        a.try_to_vec::<f32>().unwrap(),
        b.try_to_vec::<f32>().unwrap(),
    );
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            x == y || (x.is_nan() && y.is_nan()),
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

fn cases() -> Vec<([usize; 4], MaxPoolOptions<2>)> {
    vec![
        (
            [2, 3, 9, 9],
            MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1]),
        ),
        (
            [1, 4, 8, 8],
            MaxPoolOptions::new([2, 2]).with_stride([2, 2]),
        ),
        (
            [2, 2, 10, 7],
            MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_ceil_mode(true),
        ),
        (
            [1, 3, 12, 12],
            MaxPoolOptions::new([3, 2])
                .with_stride([1, 2])
                .with_padding([1, 1])
                .with_dilation([2, 1]),
        ),
        // Batch 1, odd sizes, ceil mode with padding.
        (
            [1, 5, 11, 13],
            MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_ceil_mode(true),
        ),
        (
            [1, 3, 9, 10],
            MaxPoolOptions::new([3, 3]).with_padding([1, 1]),
        ),
        (
            [2, 2, 7, 9],
            MaxPoolOptions::new([2, 2]).with_stride([2, 2]),
        ),
        // Dilated along the rows: the horizontal pass's general loop.
        (
            [1, 2, 12, 15],
            MaxPoolOptions::new([2, 3])
                .with_stride([2, 3])
                .with_padding([1, 1])
                .with_dilation([1, 2]),
        ),
        (
            [1, 1, 13, 17],
            MaxPoolOptions::new([5, 5])
                .with_stride([3, 3])
                .with_padding([2, 2])
                .with_ceil_mode(true),
        ),
        (
            [33, 8, 14, 14],
            MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1]),
        ),
    ]
}

#[test]
fn forward_matches_burn_exactly() {
    let device = Device::flex();
    for (i, (shape, options)) in cases().into_iter().enumerate() {
        let x = random(shape, i as u64, &device);
        let ours = grafter_kernels::max_pool2d(x.clone(), options.clone());
        let reference = burn::tensor::module::max_pool2d(x, options);
        assert_eq!(ours.into_data(), reference.into_data(), "case {i}");
    }
}

#[test]
fn ties_nan_and_infinities_match_burn() {
    let device = Device::flex();
    for (i, (shape, options)) in cases().into_iter().enumerate() {
        let x = special(shape, 40 + i as u64, true, &device);
        let ours = grafter_kernels::max_pool2d(x.clone(), options.clone());
        let reference = burn::tensor::module::max_pool2d(x, options);
        assert_same(
            &ours.into_data(),
            &reference.into_data(),
            &format!("case {i}"),
        );
    }
}

#[test]
fn nan_wins_and_negative_infinity_survives() {
    let device = Device::flex();
    let mut values = vec![f32::NEG_INFINITY; 16];
    values[5] = f32::NAN;
    let x = Tensor::<4>::from_data(TensorData::new(values, [1, 1, 4, 4]), &device);
    let options = MaxPoolOptions::new([2, 2]).with_stride([2, 2]);
    let out: Vec<f32> = grafter_kernels::max_pool2d(x, options)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(out[0].is_nan(), "the window holding NaN must give NaN");
    assert_eq!(&out[1..], &[f32::NEG_INFINITY; 3]);
}

#[test]
fn untracked_autodiff_input_matches() {
    let device = Device::flex().autodiff();
    let (shape, options) = cases().remove(0);
    let x = random(shape, 3, &device);
    let ours = grafter_kernels::max_pool2d(x.clone(), options.clone());
    let reference = burn::tensor::module::max_pool2d(x, options);
    assert_eq!(ours.into_data(), reference.into_data());
}

/// The input gradient of `sum(max_pool(x) · r)` by grafter's kernels and by Burn's op.
fn gradients(x: &Tensor<4>, options: &MaxPoolOptions<2>, seed: u64) -> [TensorData; 4] {
    let run = |fast: bool| {
        let x = x.clone().require_grad();
        let out = if fast {
            grafter_kernels::max_pool2d(x.clone(), options.clone())
        } else {
            burn::tensor::module::max_pool2d(x.clone(), options.clone())
        };
        let r = random(out.dims(), seed, &x.device());
        let dx = x.grad(&out.clone().mul(r).sum().backward()).unwrap();
        (out.into_data(), dx.into_data())
    };
    let ((out, dx), (ref_out, ref_dx)) = (run(true), run(false));
    [out, ref_out, dx, ref_dx]
}

#[test]
fn tracked_forward_and_gradient_match_burn_exactly() {
    let device = Device::flex().autodiff();
    for (i, (shape, options)) in cases().into_iter().enumerate() {
        let x = random(shape, 10 + i as u64, &device);
        let [out, ref_out, dx, ref_dx] = gradients(&x, &options, 20 + i as u64);
        assert_eq!(out, ref_out, "case {i}: output");
        assert_eq!(dx, ref_dx, "case {i}: input gradient");
    }
}

/// Without NaN: where a window holds a NaN, both give NaN, but flex's index does not point at
/// it (its gradient goes to another tap) while grafter's points at the window's first NaN.
#[test]
fn tracked_ties_and_infinities_match_burn() {
    let device = Device::flex().autodiff();
    for (i, (shape, options)) in cases().into_iter().enumerate() {
        let x = special(shape, 60 + i as u64, false, &device);
        let [out, ref_out, dx, ref_dx] = gradients(&x, &options, 80 + i as u64);
        assert_same(&out, &ref_out, &format!("case {i}: output"));
        assert_same(&dx, &ref_dx, &format!("case {i}: input gradient"));
    }
}

#[test]
fn ties_send_the_gradient_to_the_first_maximum_as_burn_does() {
    let device = Device::flex().autodiff();
    // Constant planes: every window ties; overlapping windows (stride 1) share inputs.
    let x = Tensor::<4>::ones([2, 3, 7, 6], &device);
    let options = MaxPoolOptions::new([3, 3]).with_padding([1, 1]);
    let [out, ref_out, dx, ref_dx] = gradients(&x, &options, 5);
    assert_eq!(out, ref_out);
    assert_eq!(dx, ref_dx);
}

#[test]
fn a_window_too_large_for_a_byte_argmax_takes_burns_path() {
    let device = Device::flex().autodiff();
    let x = random([1, 2, 20, 20], 6, &device);
    let options = MaxPoolOptions::new([17, 17]);
    let [out, ref_out, dx, ref_dx] = gradients(&x, &options, 7);
    assert_eq!(out, ref_out);
    assert_eq!(dx, ref_dx);
}
