//! grafter's ReLU against Burn's: the same values (NaN propagates, −0 becomes +0) in place or
//! not, an input someone else holds is never overwritten, and under autodiff the output and
//! input gradient are Burn's exactly, also when the ReLU's input is a shared tensor.

use burn::tensor::{Device, Tensor, TensorData};

/// Values over several of the kernel's parallel chunks, with NaN, ±0 and ±∞ among them.
fn values(shape: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    with_values(shape, seed, device, f32::NAN)
}

/// [`values`] with `nan` where the NaNs were.
fn with_values(shape: [usize; 4], seed: u64, device: &Device, nan: f32) -> Tensor<4> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|i| match i % 101 {
            0 => nan,
            1 => -0.0,
            2 => 0.0,
            3 => f32::INFINITY,
            4 => f32::NEG_INFINITY,
            _ => rng.random_range(-1.0..1.0),
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn bits(t: Tensor<4>) -> Vec<u32> {
    let v = t.into_data().try_to_vec::<f32>().unwrap();
    v.into_iter().map(f32::to_bits).collect()
}

const SHAPES: [[usize; 4]; 3] = [[2, 3, 5, 7], [4, 16, 33, 31], [1, 1, 1, 1]];

#[test]
fn forward_matches_burn_and_leaves_a_shared_input_alone() {
    let device = Device::flex();
    for (i, shape) in SHAPES.into_iter().enumerate() {
        let x = values(shape, i as u64, &device);
        let want = bits(burn::tensor::activation::relu(x.clone()));
        let before = bits(x.clone());
        // `x` is shared with the clone passed in: the copying path.
        assert_eq!(
            bits(grafter_kernels::relu(x.clone())),
            want,
            "shape {shape:?}"
        );
        assert_eq!(bits(x.clone()), before, "a shared input was overwritten");
        // `x` itself, held by nothing else: the in-place path.
        assert_eq!(
            bits(grafter_kernels::relu(x)),
            want,
            "shape {shape:?} in place"
        );
    }
}

#[test]
fn strided_inputs_take_the_copying_path() {
    let device = Device::flex();
    let x = values([2, 3, 8, 6], 7, &device);
    let t = x.clone().swap_dims(2, 3);
    let want = bits(burn::tensor::activation::relu(t.clone()));
    assert_eq!(bits(grafter_kernels::relu(t)), want);
}

/// Output and input gradient of `sum(relu(x) · r)`, through grafter's ReLU and Burn's.
fn gradients(x: &Tensor<4>, seed: u64, share_input: bool) -> [Vec<u32>; 4] {
    let run = |fast: bool| {
        let x = x.clone().require_grad();
        // Something else depending on `x` too (a residual's identity branch).
        let other = x.clone().mul_scalar(0.5);
        let pre = x.clone().mul_scalar(2.0); // ReLU's input, held by nothing else
        let input = if share_input { x.clone() } else { pre };
        let out = if fast {
            grafter_kernels::relu(input)
        } else {
            burn::tensor::activation::relu(input)
        };
        let r = with_values(out.dims(), seed, &x.device(), 0.5).clamp(-1.0, 1.0);
        let loss = out.clone().mul(r).sum().add(other.sum());
        let dx = x.grad(&loss.backward()).unwrap();
        (bits(out), bits(dx))
    };
    let ((out, dx), (ref_out, ref_dx)) = (run(true), run(false));
    [out, ref_out, dx, ref_dx]
}

#[test]
fn tracked_forward_and_gradient_match_burn_exactly() {
    let device = Device::flex().autodiff();
    for (i, shape) in SHAPES.into_iter().enumerate() {
        // Finite inputs: an infinity times zero in the loss would make gradients NaN.
        let x = with_values(shape, 30 + i as u64, &device, 0.25).clamp(-1e3, 1e3);
        for share in [false, true] {
            let [out, ref_out, dx, ref_dx] = gradients(&x, 40 + i as u64, share);
            assert_eq!(out, ref_out, "shape {shape:?} share {share}: output");
            assert_eq!(dx, ref_dx, "shape {shape:?} share {share}: input gradient");
        }
    }
}

#[test]
fn untracked_autodiff_input_matches() {
    let device = Device::flex().autodiff();
    let x = values([3, 4, 9, 9], 5, &device);
    let want = bits(burn::tensor::activation::relu(x.clone()));
    assert_eq!(bits(grafter_kernels::relu(x)), want);
}
