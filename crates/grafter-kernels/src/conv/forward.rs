//! Convolution forward: im2col + one GEMM per (image, group, block of output positions),
//! written straight into the NCHW output with the bias as the GEMM's starting value.
//!
//! The weight `[c_out, c_in_g·kh·kw]` is the GEMM's left operand exactly as Burn stores it, the
//! im2col block its right operand, and the output plane `[c_out_g, positions]` of the image its
//! destination: no layout conversion of input, weight or output, and no separate bias pass.
//! Blocks run one per rayon thread with a single-threaded GEMM (one level of parallelism); a
//! convolution with too few blocks for that (batch 1, small maps) instead runs its blocks in
//! turn, the threads splitting each block's im2col by input channels and its GEMM by output
//! channels. 3×3 stride-1 convolutions take Winograd
//! F(4×4, 3×3) instead ([`super::winograd`], [`super::winograd4`]).
//!
//! An [`Epilogue`] fuses what follows a convolution in a ResNet block at inference — the
//! residual added and the ReLU — into the kernel: the residual joins the bias as the output's
//! starting value (a pass the convolution makes anyway) and the ReLU runs over each block of
//! output right after its GEMM, while it is in cache, instead of two more passes over memory.

use rayon::prelude::*;

use super::geometry::ConvGeometry;
use super::im2col::{im2col, im2col_channel};
use super::plan::{Block, blocks, channel_chunk, threads_for};
use crate::gemm::{Mat, SendPtr, Threads, matmul, rows, rows_mut};
use crate::output::{chunks_filled, planes_filled};
use crate::scratch::with_scratch;

/// What the kernel does to the convolution's output `y` before storing it:
/// `relu(y + residual)`, either part optional.
#[derive(Clone, Copy, Default)]
pub(crate) struct Epilogue<'a> {
    /// Added to the output (NCHW, the output's shape).
    pub residual: Option<&'a [f32]>,
    /// ReLU after the addition.
    pub relu: bool,
}

impl Epilogue<'_> {
    /// ReLU over `rows` rows of `len` elements, `stride` apart, from `ptr` (when asked for).
    ///
    /// # Safety
    /// The rows must be valid and accessed by nothing else during the call.
    pub(super) unsafe fn finish_rows(&self, ptr: *mut f32, rows: usize, len: usize, stride: usize) {
        if !self.relu {
            return;
        }
        for r in 0..rows {
            // SAFETY: forwarded from the caller.
            let row = unsafe { core::slice::from_raw_parts_mut(ptr.add(r * stride), len) };
            crate::activation::relu_slice(row);
        }
    }
}

/// `epilogue(conv2d(x, weight·scale, bias))` for contiguous NCHW `x`, `[c_out, c_in_g, kh, kw]`
/// weight and, when given, a factor `scale[co]` of each output channel's kernels (a folded
/// BatchNorm's). Winograd applies the factor in its weight transform. im2col scales a copy of
/// the weight (in a kept buffer) when the weight is no larger than the output — at batch 32 a
/// pass over the weight costs less than one over the output — and otherwise each block's
/// product as it is added to the output, in cache: at batch 1 the weight is many times the
/// output, and a pass over it in memory took longer than the convolution's own reading of it.
pub(crate) fn conv2d_forward(
    geo: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    scale: Option<&[f32]>,
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
) -> Vec<f32> {
    if super::winograd::applies(geo) {
        return super::winograd::conv2d_winograd_any(geo, x, weight, scale, bias, epilogue);
    }
    match scale {
        Some(scale) if geo.k() <= geo.batch * geo.positions() => {
            with_scratch([weight.len()], |[scaled]| {
                let row = weight.len() / geo.c_out;
                scaled
                    .par_chunks_mut(row)
                    .zip(weight.par_chunks(row))
                    .zip(scale)
                    .for_each(|((dst, src), &s)| {
                        for (d, &w) in dst.iter_mut().zip(src) {
                            *d = w * s;
                        }
                    });
                im2col_forward(geo, x, (scaled, None), bias, epilogue)
            })
        }
        _ => im2col_forward(geo, x, (weight, scale), bias, epilogue),
    }
}

/// [`conv2d_forward`] by im2col + GEMM, `scale` applied to each block's product.
fn im2col_forward(
    geo: &ConvGeometry,
    x: &[f32],
    (weight, scale): (&[f32], Option<&[f32]>),
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
) -> Vec<f32> {
    let mut out = output_start(geo, bias, epilogue.residual);
    let work = blocks(geo, geo.k());
    let threads = threads_for(work.len());
    let dst = SendPtr(out.as_mut_ptr());
    let col_len = if geo.is_pointwise() {
        0
    } else {
        geo.k() * work.iter().map(|b| b.t).max().unwrap_or(0)
    };
    let accumulate = bias.is_some() || epilogue.residual.is_some();
    let weight = (weight, scale);
    match threads {
        Threads::One => work.par_iter().for_each(|block| {
            with_scratch([col_len], |[col]| {
                // SAFETY: each block writes only its own rows (group's channels of its image)
                // and columns (its positions) of `out`; the inputs are read-only.
                unsafe { forward_block(geo, x, weight, accumulate, dst, block, col, &epilogue) }
            })
        }),
        Threads::All => work.iter().for_each(|block| {
            // SAFETY: the blocks run in turn; the output is this call's.
            unsafe { split_block(geo, x, weight, accumulate, dst, block, &epilogue) }
        }),
    }
    out
}

/// The NCHW output buffer, every plane filled with its channel's bias (zeros without one) plus
/// the residual's plane: the starting value the GEMMs (or Winograd's output transform) add onto.
pub(super) fn output_start(
    geo: &ConvGeometry,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let positions = geo.positions();
    // Plane i is channel i mod c_out of image i / c_out.
    let b = |i: usize| bias.map_or(0.0, |bias| bias[i % geo.c_out]);
    match residual {
        None => planes_filled(geo.batch * geo.c_out, positions, b),
        Some(r) => chunks_filled(geo.batch * geo.c_out * positions, positions, |i, plane| {
            let (b, r) = (b(i), &r[i * positions..][..plane.len()]);
            for (d, &r) in plane.iter_mut().zip(r) {
                d.write(b + r);
            }
        }),
    }
}

/// One block: `out[n, g·c_out_g .., p0 .. p0+t] (+)= W_g · im2col(x[n, g], p0 .. p0+t)`, the
/// product times `scale[co]` per row when given, then the epilogue.
#[allow(clippy::too_many_arguments)]
unsafe fn forward_block(
    geo: &ConvGeometry,
    x: &[f32],
    (weight, scale): (&[f32], Option<&[f32]>),
    accumulate: bool,
    out: SendPtr,
    block: &Block,
    col: &mut [f32],
    epilogue: &Epilogue<'_>,
) {
    let (k, positions, c_out_g) = (geo.k(), geo.positions(), geo.c_out_g());
    let (x_group, w_group) = (block.input(geo, x), block.weight(geo, weight));
    let rhs = if geo.is_pointwise() {
        rows(x_group[block.p0..].as_ptr(), geo.plane())
    } else {
        im2col(geo, x_group, block.p0, block.t, &mut col[..k * block.t]);
        rows(col.as_ptr(), block.t)
    };
    let lhs = rows(w_group.as_ptr(), k);
    let scale = scale.map(|s| &s[block.g * c_out_g..][..c_out_g]);
    // SAFETY: sizes match the views; the destination region belongs to this block alone.
    unsafe {
        let dst = out.0.add(block.output_at(geo, 0));
        multiply_into(
            [c_out_g, block.t, k],
            (dst, positions),
            accumulate,
            lhs,
            rhs,
            scale,
        );
        epilogue.finish_rows(dst, c_out_g, block.t, positions);
    }
}

/// `dst (+)= lhs · rhs` for a `[m, n]` destination whose rows are `ld` apart (`+=` with
/// `accumulate`); with `scale`, `dst += scale[r] · (lhs · rhs)[r]`, the product computed into a
/// scratch block first.
///
/// # Safety
/// As [`matmul`]'s.
unsafe fn multiply_into(
    [m, n, k]: [usize; 3],
    (dst, ld): (*mut f32, usize),
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    scale: Option<&[f32]>,
) {
    let one = Threads::One;
    match scale {
        // SAFETY: forwarded from the caller.
        None => unsafe { matmul(m, n, k, rows_mut(dst, ld), accumulate, lhs, rhs, one) },
        Some(scale) => with_scratch([m * n], |[prod]| {
            // SAFETY: `prod` is this call's; the rest is forwarded from the caller.
            unsafe {
                matmul(
                    m,
                    n,
                    k,
                    rows_mut(prod.as_mut_ptr(), n),
                    false,
                    lhs,
                    rhs,
                    one,
                );
                add_scaled_rows(dst, ld, prod, n, scale);
            }
        }),
    }
}

/// `dst[r][j] += scale[r] · src[r · t + j]` for the rows `r` of `scale`, `dst`'s rows `ld`
/// apart: a product whose weight rows carry a factor, added onto the output's starting values.
///
/// # Safety
/// `dst` must address `scale.len()` rows of `t` elements, `ld` apart, that nothing else accesses.
unsafe fn add_scaled_rows(dst: *mut f32, ld: usize, src: &[f32], t: usize, scale: &[f32]) {
    for (r, (&s, src)) in scale.iter().zip(src.chunks_exact(t)).enumerate() {
        // SAFETY: forwarded from the caller.
        let row = unsafe { core::slice::from_raw_parts_mut(dst.add(r * ld), t) };
        for (d, &v) in row.iter_mut().zip(src) {
            *d += s * v;
        }
    }
}

/// One block with the threads splitting its output channels, for convolutions with too few
/// blocks to give each thread its own (batch 1, small maps): the im2col is split over input
/// channels, then each task multiplies its run of the weight's rows by the whole block and
/// finishes those output rows. The weights cross memory once, each row by one task.
///
/// # Safety
/// The block's region of `out` must be the caller's alone.
unsafe fn split_block(
    geo: &ConvGeometry,
    x: &[f32],
    (weight, scale): (&[f32], Option<&[f32]>),
    accumulate: bool,
    out: SendPtr,
    block: &Block,
    epilogue: &Epilogue<'_>,
) {
    let (k, positions, plane, c_out_g) = (geo.k(), geo.positions(), geo.plane(), geo.c_out_g());
    let (x_group, w_group) = (block.input(geo, x), block.weight(geo, weight));
    let col_len = if geo.is_pointwise() { 0 } else { k * block.t };
    with_scratch([col_len], |[col]| {
        if !geo.is_pointwise() {
            let taps = geo.kh * geo.kw;
            col.par_chunks_mut(taps * block.t)
                .zip(x_group.par_chunks(plane))
                .for_each(|(rows, src)| im2col_channel(geo, src, block.p0, block.t, rows));
        }
        let col = &*col;
        let chunk = channel_chunk(c_out_g, usize::MAX);
        let starts: Vec<usize> = (0..c_out_g).step_by(chunk).collect();
        starts.into_par_iter().for_each(|co0| {
            let cs = chunk.min(c_out_g - co0);
            let rhs = if geo.is_pointwise() {
                rows(x_group[block.p0..].as_ptr(), plane)
            } else {
                rows(col.as_ptr(), block.t)
            };
            let first = block.output_at(geo, co0);
            let (lhs, t) = (rows(w_group[co0 * k..].as_ptr(), k), block.t);
            let scale = scale.map(|s| &s[block.g * c_out_g + co0..][..cs]);
            // SAFETY: sizes match the views; rows `co0 .. co0 + cs` of the block are this
            // task's alone.
            unsafe {
                // `get()`, not the field: the closure must capture the whole (Sync) `out`.
                let dst = out.get().add(first);
                multiply_into([cs, t, k], (dst, positions), accumulate, lhs, rhs, scale);
                epilogue.finish_rows(dst, cs, t, positions);
            }
        });
    });
}
