//! grafter's convolution against Burn's reference op on the same tensors: forward output and
//! the gradients of input, weight and bias, over strides, paddings (symmetric and not), odd
//! sizes, groups (depthwise included), dilation, 1×1 and 7×7 kernels, stride 2, batch 1 and 41,
//! and the Winograd path of 3×3 stride-1 convolutions.

use burn::tensor::ops::ConvOptions;
use std::sync::Mutex;

use burn::tensor::{Device, Tensor, TensorData};
use grafter_kernels::{ConvPrecision, set_conv_precision};

/// Largest |a − b| over the largest |b|: the relative error the kernels are held to.
fn rel_err(a: Tensor<4>, b: Tensor<4>) -> f32 {
    let scale = b.clone().abs().max().into_scalar::<f32>().max(1e-12);
    a.sub(b).abs().max().into_scalar::<f32>() / scale
}

fn rel_err1(a: Tensor<1>, b: Tensor<1>) -> f32 {
    rel_err(a.reshape([1, 1, 1, -1]), b.reshape([1, 1, 1, -1]))
}

struct Case {
    x: [usize; 4],
    w: [usize; 4],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
    dilation: [usize; 2],
    groups: usize,
    bias: bool,
}

impl Case {
    fn new(x: [usize; 4], w: [usize; 4], stride: usize, pad: usize) -> Self {
        Self {
            x,
            w,
            stride: [stride; 2],
            padding: [(pad, pad); 2],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        }
    }

    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new_with_padding(self.stride, self.padding, self.dilation, self.groups)
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case::new([2, 3, 9, 11], [5, 3, 3, 3], 1, 1),
        Case::new([33, 4, 7, 7], [6, 4, 3, 3], 2, 1),
        Case {
            groups: 2,
            dilation: [2, 2],
            ..Case::new([1, 8, 10, 9], [8, 4, 3, 3], 1, 2)
        },
        Case {
            groups: 16,
            ..Case::new([2, 16, 8, 8], [16, 1, 3, 3], 1, 1)
        },
        Case {
            bias: false,
            ..Case::new([3, 8, 6, 6], [12, 8, 1, 1], 1, 0)
        },
        Case::new([3, 8, 7, 7], [12, 8, 1, 1], 2, 0),
        Case::new([1, 3, 32, 32], [8, 3, 7, 7], 2, 3),
        // Stride 2 (im2col's pairwise gather): odd widths whose last tap ends the row, no
        // padding, asymmetric padding, and a stem whose blocks split output rows.
        Case::new([2, 3, 23, 25], [8, 3, 7, 7], 2, 3),
        Case::new([2, 5, 9, 11], [4, 5, 3, 3], 2, 0),
        Case {
            padding: [(0, 1), (1, 0)],
            ..Case::new([1, 6, 10, 13], [5, 6, 3, 3], 2, 0)
        },
        Case::new([1, 3, 230, 230], [16, 3, 7, 7], 2, 3),
        Case {
            padding: [(1, 2), (0, 1)],
            bias: false,
            ..Case::new([2, 5, 8, 9], [4, 5, 2, 3], 1, 0)
        },
        Case {
            stride: [2, 1],
            dilation: [1, 3],
            ..Case::new([2, 6, 11, 13], [7, 6, 3, 2], 1, 1)
        },
        // More output positions than one im2col block holds: several blocks per image.
        Case::new([2, 64, 40, 40], [32, 64, 3, 3], 1, 1),
        // One image, a 1×1 map: a single block, the threads splitting its output channels
        // (40: a short last run).
        Case::new([1, 32, 3, 3], [40, 32, 3, 3], 1, 1),
        // Winograd F(2×2, 3×3) (from 1024 output positions): odd output sizes (clipped edge
        // tiles), no padding, asymmetric padding, and blocks of tiles spanning several of 41
        // images.
        Case::new([17, 16, 7, 9], [16, 16, 3, 3], 1, 1),
        Case::new([15, 24, 9, 8], [20, 24, 3, 3], 1, 0),
        Case {
            padding: [(2, 0), (0, 2)],
            ..Case::new([25, 16, 6, 7], [16, 16, 3, 3], 1, 0)
        },
        Case::new([41, 16, 5, 5], [32, 16, 3, 3], 1, 1),
        // Winograd with more padding than input: tile rows of padding only, lines shorter
        // than the padding.
        Case::new([25, 16, 3, 2], [16, 16, 3, 3], 1, 3),
        // Winograd F(4×4, 3×3) (maps of 28 and more at `ConvPrecision::High`): edge tiles
        // clipped in both directions, no padding, asymmetric padding, blocks spanning images.
        Case::new([2, 16, 29, 31], [16, 16, 3, 3], 1, 1),
        Case::new([3, 24, 31, 30], [20, 24, 3, 3], 1, 0),
        Case {
            padding: [(2, 0), (0, 2)],
            ..Case::new([2, 16, 30, 29], [16, 16, 3, 3], 1, 0)
        },
        // ... and at VGG's and ResNet's widths, where the sums are longest and so is the
        // transforms' error (one 32×32 image: a single block of tiles, the threads splitting
        // the channels; a batch-1 ResNet layer at 7×7: im2col, the channels split).
        Case::new([2, 64, 56, 56], [64, 64, 3, 3], 1, 1),
        Case::new([1, 512, 32, 32], [512, 512, 3, 3], 1, 1),
        Case::new([6, 256, 14, 14], [256, 256, 3, 3], 1, 1),
        Case::new([1, 512, 7, 7], [512, 512, 3, 3], 1, 1),
        // Padding of k or more: the input gradient cannot be a flipped convolution.
        Case::new([2, 4, 5, 5], [3, 4, 1, 1], 1, 1),
    ]
}

fn random<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The precision is a process-wide setting: tests that set it run one at a time.
static PRECISION: Mutex<()> = Mutex::new(());

/// Largest relative error each precision is held to: F(2×2, 3×3) stays within a few 1e-7 of
/// direct convolution, F(4×4, 3×3) within about 1e-5 at 512 channels.
fn bound(precision: ConvPrecision) -> f32 {
    match precision {
        ConvPrecision::Highest => 1e-5,
        ConvPrecision::High => 3e-5,
    }
}

#[test]
fn forward_matches_burn() {
    let _lock = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex();
    for precision in [ConvPrecision::Highest, ConvPrecision::High] {
        set_conv_precision(precision);
        for (i, case) in cases().into_iter().enumerate() {
            let x = random(case.x, 10 + i as u64, &device);
            let w = random(case.w, 20 + i as u64, &device);
            let b = case
                .bias
                .then(|| random([case.w[0]], 30 + i as u64, &device));
            let ours = grafter_kernels::conv2d(x.clone(), w.clone(), b.clone(), case.options());
            let reference = burn::tensor::module::conv2d(x, w, b, case.options());
            assert_eq!(ours.dims(), reference.dims(), "case {i}");
            let err = rel_err(ours, reference);
            eprintln!("{precision:?} case {i}: forward relative error {err:e}");
            assert!(
                err <= bound(precision),
                "{precision:?} case {i}: forward relative error {err:e}"
            );
        }
    }
}

#[test]
fn gradients_match_burn() {
    let _lock = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    for precision in [ConvPrecision::Highest, ConvPrecision::High] {
        set_conv_precision(precision);
        for (i, case) in cases().into_iter().enumerate() {
            let x = random(case.x, 10 + i as u64, &device);
            let w = random(case.w, 20 + i as u64, &device);
            let b = case
                .bias
                .then(|| random([case.w[0]], 30 + i as u64, &device));
            let run = |fast: bool| {
                let (x, w) = (x.clone().require_grad(), w.clone().require_grad());
                let b = b.clone().map(Tensor::require_grad);
                let out = if fast {
                    grafter_kernels::conv2d(x.clone(), w.clone(), b.clone(), case.options())
                } else {
                    burn::tensor::module::conv2d(x.clone(), w.clone(), b.clone(), case.options())
                };
                // A loss whose output gradient is not constant, so every position matters.
                let r = random(out.dims(), 40 + i as u64, &device);
                let grads = out.mul(r).sum().backward();
                (
                    x.grad(&grads).expect("x gradient"),
                    w.grad(&grads).expect("weight gradient"),
                    b.map(|b| b.grad(&grads).expect("bias gradient")),
                )
            };
            let (dx, dw, db) = run(true);
            let (rx, rw, rb) = run(false);
            let ex = rel_err(dx, rx);
            let ew = rel_err(dw, rw);
            eprintln!("{precision:?} case {i}: input gradient {ex:e}, weight gradient {ew:e}");
            assert!(
                ex <= bound(precision),
                "{precision:?} case {i}: input gradient relative error {ex:e}"
            );
            assert!(
                ew <= 1e-5,
                "case {i}: weight gradient relative error {ew:e}"
            );
            if let (Some(db), Some(rb)) = (db, rb) {
                let eb = rel_err1(db, rb);
                assert!(eb <= 1e-5, "case {i}: bias gradient relative error {eb:e}");
            }
        }
    }
}

#[test]
fn frozen_weights_get_no_gradient_and_the_input_still_does() {
    let device = Device::flex().autodiff();
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let x = random([2, 4, 6, 6], 1, &device);
    let w = random([3, 4, 3, 3], 2, &device); // not tracked: a frozen layer
    let input_grad = |fast: bool| {
        let x = x.clone().require_grad();
        let out = if fast {
            grafter_kernels::conv2d(x.clone(), w.clone(), None, options.clone())
        } else {
            burn::tensor::module::conv2d(x.clone(), w.clone(), None, options.clone())
        };
        let grads = out.sum().backward();
        assert!(w.grad(&grads).is_none(), "a frozen weight got a gradient");
        x.grad(&grads).expect("input gradient")
    };
    let err = rel_err(input_grad(true), input_grad(false));
    assert!(err <= 1e-5, "input gradient relative error {err:e}");
}

#[test]
fn weight_gradient_is_the_same_bit_for_bit_every_time() {
    let device = Device::flex().autodiff();
    let case = Case::new([32, 16, 12, 12], [16, 16, 3, 3], 1, 1);
    let x = random(case.x, 5, &device);
    let w = random(case.w, 6, &device);
    let grad = || {
        let w = w.clone().require_grad();
        let out = grafter_kernels::conv2d(x.clone(), w.clone(), None, case.options());
        let r = random(out.dims(), 7, &device);
        w.grad(&out.mul(r).sum().backward()).unwrap().into_data()
    };
    let first = grad();
    for _ in 0..3 {
        assert_eq!(grad(), first);
    }
}
