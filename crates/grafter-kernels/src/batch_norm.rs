//! BatchNorm on f32 `[n, c, spatial…]` tensors in one or two passes per channel: inference
//! (`y = x·scale + shift`), training forward (batch mean and biased variance, then the affine
//! map) and training backward (two per-channel sums, then the input gradient).
//!
//! Burn's default bodies compose these from element-wise ops with broadcasting and channel-
//! swapping copies — six to ten passes over the activation. Per-channel sums are accumulated
//! per plane in f32 lanes and across planes in f64, in a fixed order, so results do not depend
//! on thread scheduling.

use rayon::prelude::*;

/// `[n, c, s]`: images, channels, elements per channel plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BnShape {
    pub n: usize,
    pub c: usize,
    pub s: usize,
}

impl BnShape {
    /// For a tensor of shape `dims` (rank ≥ 2, channels second).
    pub fn new(dims: &[usize]) -> Option<Self> {
        let (&n, rest) = dims.split_first()?;
        let (&c, spatial) = rest.split_first()?;
        let s = spatial.iter().product();
        (n * c * s > 0).then_some(Self { n, c, s })
    }

    /// Elements per channel over the whole batch.
    fn count(&self) -> f64 {
        (self.n * self.s) as f64
    }
}

/// Sum of a plane: eight f32 lanes (vectorised by the compiler), then f64.
fn plane_sum(xs: &[f32]) -> f64 {
    let mut lanes = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += *v;
        }
    }
    lanes.iter().map(|&l| l as f64).sum::<f64>() + tail
}

/// Σ f(x_i, y_i) over a plane pair, eight f32 lanes then f64.
fn plane_dot(xs: &[f32], ys: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut lanes = [0.0f32; 8];
    let (cx, cy) = (xs.chunks_exact(8), ys.chunks_exact(8));
    let tail: f64 = cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .map(|(&a, &b)| f(a, b) as f64)
        .sum();
    for (a, b) in cx.zip(cy) {
        for i in 0..8 {
            lanes[i] += f(a[i], b[i]);
        }
    }
    lanes.iter().map(|&l| l as f64).sum::<f64>() + tail
}

/// The planes of channel `ch`, image by image.
fn planes<'a>(x: &'a [f32], shape: &BnShape, ch: usize) -> impl Iterator<Item = &'a [f32]> {
    (0..shape.n).map(move |i| &x[(i * shape.c + ch) * shape.s..][..shape.s])
}

/// `y = (x − center[c])·scale[c] + shift[c]`, plane by plane in parallel (centring first, as
/// Burn does, so a large mean does not cancel digits away).
fn affine(x: &[f32], shape: &BnShape, center: &[f32], scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(shape.s)
        .zip(x.par_chunks(shape.s))
        .enumerate()
        .for_each(|(plane, (dst, src))| {
            let ch = plane % shape.c;
            let (m, a, b) = (center[ch], scale[ch], shift[ch]);
            for (d, v) in dst.iter_mut().zip(src) {
                *d = (v - m) * a + b;
            }
        });
    y
}

/// Inference: normalise with the given statistics.
pub(crate) fn batch_norm_inference(
    x: &[f32],
    shape: &BnShape,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
) -> Vec<f32> {
    let scale: Vec<f32> = (0..shape.c)
        .map(|ch| (gamma[ch] as f64 / (var[ch] as f64 + epsilon).sqrt()) as f32)
        .collect();
    affine(x, shape, mean, &scale, beta)
}

/// Training forward: `(output, batch mean, biased batch variance)`.
pub(crate) fn batch_norm_train(
    x: &[f32],
    shape: &BnShape,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let stats: Vec<(f64, f64)> = (0..shape.c)
        .into_par_iter()
        .map(|ch| {
            let mean = planes(x, shape, ch).map(plane_sum).sum::<f64>() / shape.count();
            let m = mean as f32;
            let var = planes(x, shape, ch)
                .map(|p| plane_dot(p, p, |a, _| (a - m) * (a - m)))
                .sum::<f64>()
                / shape.count();
            (mean, var)
        })
        .collect();
    let (mean, var): (Vec<f32>, Vec<f32>) =
        stats.iter().map(|&(m, v)| (m as f32, v as f32)).unzip();
    let scale: Vec<f32> = stats
        .iter()
        .zip(gamma)
        .map(|(&(_, v), &g)| (g as f64 / (v + epsilon).sqrt()) as f32)
        .collect();
    let y = affine(x, shape, &mean, &scale, beta);
    (y, mean, var)
}

/// Training backward: `(dx, dgamma, dbeta)` given the statistics the forward returned.
pub(crate) fn batch_norm_train_backward(
    x: &[f32],
    dy: &[f32],
    shape: &BnShape,
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    // Per channel: Σdy and Σdy·(x − mean).
    let sums: Vec<(f64, f64)> = (0..shape.c)
        .into_par_iter()
        .map(|ch| {
            let m = mean[ch];
            let mut sum_dy = 0.0;
            let mut sum_dy_xc = 0.0;
            for (px, pdy) in planes(x, shape, ch).zip(planes(dy, shape, ch)) {
                sum_dy += plane_sum(pdy);
                sum_dy_xc += plane_dot(px, pdy, |a, g| (a - m) * g);
            }
            (sum_dy, sum_dy_xc)
        })
        .collect();
    let count = shape.count();
    let mut dgamma = Vec::with_capacity(shape.c);
    let mut dbeta = Vec::with_capacity(shape.c);
    // dx = γ·inv_std·(dy − mean(dy) − x̂·mean(dy·x̂)), x̂ = (x − mean)·inv_std, written as
    // dx = a·dy + b·(x − mean) + c per channel.
    let mut coeffs = Vec::with_capacity(shape.c);
    for (ch, &(sum_dy, sum_dy_xc)) in sums.iter().enumerate() {
        let inv_std = 1.0 / (var[ch] as f64 + epsilon).sqrt();
        let g = gamma[ch] as f64;
        dgamma.push((sum_dy_xc * inv_std) as f32);
        dbeta.push(sum_dy as f32);
        let a = g * inv_std;
        let b = -g * inv_std * inv_std * inv_std * sum_dy_xc / count;
        let c = -a * sum_dy / count;
        coeffs.push((mean[ch], a as f32, b as f32, c as f32));
    }
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(shape.s)
        .zip(x.par_chunks(shape.s).zip(dy.par_chunks(shape.s)))
        .enumerate()
        .for_each(|(plane, (dst, (px, pdy)))| {
            let (m, a, b, c) = coeffs[plane % shape.c];
            for ((d, xv), g) in dst.iter_mut().zip(px).zip(pdy) {
                *d = a * g + b * (xv - m) + c;
            }
        });
    (dx, dgamma, dbeta)
}
