//! ReLU and its gradient on f32 slices, split over the rayon pool.
//!
//! Why: flex's ReLU is one loop on one thread, and under autodiff it allocates a fresh output
//! (Burn keeps the input for the backward step, so the input is shared and cannot be
//! overwritten): on a 2-core box the ReLUs of a ResNet-18 training forward took 190 ms of
//! 890, mostly first touches of new pages. Keeping the output instead (the gradient reads
//! only its sign) lets the forward overwrite its input, and both directions run on every
//! core. Each element gets exactly flex's formula, so results are bit-identical.

use rayon::prelude::*;

use crate::output::chunks_filled;

/// Elements per parallel task: 128 KiB of f32, a few cache-sized pieces per core.
const CHUNK: usize = 1 << 15;

/// flex's ReLU of one element: NaN propagates, as in PyTorch.
#[inline(always)]
fn relu1(x: f32) -> f32 {
    if x.is_nan() || x > 0.0 { x } else { 0.0 }
}

/// flex's ReLU gradient of one element, from the ReLU's output: the gradient passes where the
/// output is positive (or NaN).
#[inline(always)]
fn relu_grad1(out: f32, grad: f32) -> f32 {
    if out.is_nan() || out > 0.0 { grad } else { 0.0 }
}

/// `x ← relu(x)` on the calling thread (a kernel's block of output).
pub(crate) fn relu_slice(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = relu1(*v));
}

/// `x ← relu(x)`.
pub(crate) fn relu_in_place(x: &mut [f32]) {
    x.par_chunks_mut(CHUNK)
        .for_each(|c| c.iter_mut().for_each(|v| *v = relu1(*v)));
}

/// `relu(x)` into a new buffer, every page first touched by its parallel write.
pub(crate) fn relu(x: &[f32]) -> Vec<f32> {
    chunks_filled(x.len(), CHUNK, |i, dst| {
        let src = &x[i * CHUNK..][..dst.len()];
        for (d, &s) in dst.iter_mut().zip(src) {
            d.write(relu1(s));
        }
    })
}

/// `grad ← grad · [output > 0]`.
pub(crate) fn relu_backward_in_place(output: &[f32], grad: &mut [f32]) {
    grad.par_chunks_mut(CHUNK)
        .zip(output.par_chunks(CHUNK))
        .for_each(|(g, o)| {
            g.iter_mut()
                .zip(o)
                .for_each(|(g, &o)| *g = relu_grad1(o, *g))
        });
}

/// `grad · [output > 0]` into a new buffer.
pub(crate) fn relu_backward(output: &[f32], grad: &[f32]) -> Vec<f32> {
    chunks_filled(grad.len(), CHUNK, |i, dst| {
        let (o, g) = (&output[i * CHUNK..], &grad[i * CHUNK..]);
        for ((d, &o), &g) in dst.iter_mut().zip(o).zip(g) {
            d.write(relu_grad1(o, g));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_gives_flexs_formula_on_every_chunk() {
        let n = 3 * CHUNK + 17;
        let x: Vec<f32> = (0..n)
            .map(|i| match i % 7 {
                0 => f32::NAN,
                1 => -0.0,
                2 => 0.0,
                _ => (i as f32 * 0.37).sin(),
            })
            .collect();
        let want: Vec<f32> = x.iter().map(|&v| relu1(v)).collect();
        let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same(&relu(&x), &want));
        let mut y = x.clone();
        relu_in_place(&mut y);
        assert!(same(&y, &want));

        let grad: Vec<f32> = (0..n).map(|i| i as f32 - 5.0).collect();
        let want: Vec<f32> = want
            .iter()
            .zip(&grad)
            .map(|(&o, &g)| relu_grad1(o, g))
            .collect();
        assert!(same(&relu_backward(&y, &grad), &want));
        let mut g = grad.clone();
        relu_backward_in_place(&y, &mut g);
        assert!(same(&g, &want));
        assert!(relu(&[]).is_empty() && relu_backward(&[], &[]).is_empty());
    }
}
