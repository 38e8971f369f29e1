//! Winograd for convolutions with too few tile blocks to give every thread its own (a map of
//! 32×32 to about 48×48 at batch 1): the threads split the output channels instead.
//!
//! Why: with blocks of tiles as the only unit of work, such a convolution has one to three
//! blocks. They ran in turn, their transforms on one thread and their GEMMs (16 or 36 products
//! of a few dozen tiles each) too small for gemm's own threading, and the transformed weights —
//! 16 or 36 matrices `[c_out, c_in]`, 1.8–4× the weight — were written to memory and read back
//! for a few dozen tiles.
//!
//! Here each block's input transform is split over input channels, then each task takes a run
//! of output channels through its GEMMs and output transform. With a single block the task
//! transforms its own channels' weights too, into a buffer that stays in its core's cache
//! until the GEMMs read it (the weights cross memory once, as in a direct convolution); with
//! several blocks the weights are transformed once for all of them, as in the block-parallel
//! driver. The transforms are that driver's; the GEMMs' sums may group differently (gemm
//! blocks a product by its shape), so the two agree to rounding.

use rayon::prelude::*;

use super::forward::Epilogue;
use super::geometry::ConvGeometry;
use super::plan::channel_chunk;
use super::winograd::{Tiling, image_runs, transform_channel, transform_weights, write_outputs};
use crate::gemm::{SendPtr, Threads, matmul, rows, rows_mut};
use crate::scratch::with_scratch;

/// Most bytes of transformed weights one task holds: about a core's share of L2.
const TASK_WEIGHT_BYTES: usize = 1 << 20;

/// `conv2d` by Winograd with the threads splitting each block's output channels: the weight
/// (each output channel's kernels times `scale[co]` when given), `blocks` as ranges of tile
/// rows (numbered image-major) and `out` the output, already holding the bias and residual.
///
/// # Safety
/// `out` must address the whole output, which nothing else accesses during the call.
pub(super) unsafe fn conv2d(
    tiling: &Tiling,
    geo: &ConvGeometry,
    x: &[f32],
    (weight, scale): (&[f32], Option<&[f32]>),
    blocks: &[(usize, usize)],
    out: SendPtr,
    epilogue: &Epilogue<'_>,
) {
    let (c_in, c_out, elems) = (geo.c_in, geo.c_out, tiling.elems);
    let per_channel = elems * c_in;
    let chunk = channel_chunk(c_out, TASK_WEIGHT_BYTES / (4 * per_channel));
    let shared = blocks.len() > 1;
    with_scratch([if shared { per_channel * c_out } else { 0 }], |[u_all]| {
        if shared {
            transform_weights(tiling, c_in, weight, scale, u_all);
        }
        let u_all = &*u_all;
        for &(r0, r) in blocks {
            let t = r * tiling.tiles(geo).1;
            with_scratch([elems * c_in * t], |[v]| {
                transform_input(tiling, geo, x, (r0, r), v);
                let v = &*v;
                let starts: Vec<usize> = (0..c_out).step_by(chunk).collect();
                starts.into_par_iter().for_each(|co0| {
                    let channels = co0..(co0 + chunk).min(c_out);
                    let cs = channels.len();
                    let lens = [
                        if shared { 0 } else { per_channel * cs },
                        elems * cs * t,
                        (tiling.output_scratch_len)(t / r),
                    ];
                    with_scratch(lens, |[u_own, m, y]| {
                        let u = if shared {
                            &u_all[co0 * per_channel..][..per_channel * cs]
                        } else {
                            let w = &weight[co0 * 9 * c_in..][..9 * c_in * cs];
                            let own = u_own.chunks_exact_mut(per_channel);
                            for (co, (u_co, w_co)) in own.zip(w.chunks_exact(9 * c_in)).enumerate()
                            {
                                let s = scale.map(|s| s[co0 + co]);
                                transform_channel(tiling, c_in, w_co, s, u_co);
                            }
                            &*u_own
                        };
                        for e in 0..elems {
                            // SAFETY: views sized to the buffers; `m` is this task's own.
                            unsafe {
                                matmul(
                                    cs,
                                    t,
                                    c_in,
                                    rows_mut(m[e * cs * t..].as_mut_ptr(), t),
                                    false,
                                    rows(u[e * c_in..].as_ptr(), per_channel),
                                    rows(v[e * t..].as_ptr(), elems * t),
                                    Threads::One,
                                );
                            }
                        }
                        // SAFETY: these channels' outputs in this block's tile rows are this
                        // task's alone.
                        unsafe {
                            write_outputs(tiling, geo, m, channels, (r0, r), y, out, epilogue)
                        };
                    });
                });
            });
        }
    });
}

/// `V[ci][e][j]` for the tiles `j` of tile rows `r0 .. r0 + r`, one input channel per task.
fn transform_input(
    tiling: &Tiling,
    geo: &ConvGeometry,
    x: &[f32],
    (r0, r): (usize, usize),
    v: &mut [f32],
) {
    let (th, tw) = tiling.tiles(geo);
    let (t, plane, c_in) = (r * tw, geo.plane(), geo.c_in);
    let scratch = (tiling.input_scratch_len)(tw, r.min(th));
    v.par_chunks_mut(tiling.elems * t)
        .enumerate()
        .for_each(|(ci, v_ci)| {
            with_scratch([scratch], |[input]| {
                for (row, n, ty, rows) in image_runs(th, r0, r) {
                    let src = &x[(n * c_in + ci) * plane..][..plane];
                    (tiling.transform_input_rows)(geo, src, (ty, rows), input, v_ci, (row * tw, t));
                }
            })
        });
}
