//! Convolution backward: the weight gradient as GEMMs of the output gradient with the im2col
//! blocks (accumulated over images), the input gradient as the transposed weight times the
//! output gradient followed by col2im.
//!
//! Both read the operands where they lie (transposes are strides, not copies). The weight
//! gradient is summed over fixed chunks of images in a fixed order ([`super::partials`]), so
//! it is the same bit for bit from run to run whatever rayon's scheduling.

use rayon::prelude::*;

use super::geometry::ConvGeometry;
use super::im2col::{col2im_add, im2col};
use super::partials::{WEIGHT_CHUNKS, sum_in_order};
use super::plan::{block_positions, blocks, threads_for};
use crate::gemm::{SendPtr, Threads, matmul, rows, rows_mut, rows_t};
use crate::output::planes_filled;
use crate::scratch::with_scratch;

/// Gradient of the weight `[c_out, c_in_g, kh, kw]` given the output gradient `dy` (NCHW).
pub(crate) fn conv2d_weight_grad(geo: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    if super::winograd::applies(geo) {
        return super::winograd_grad::weight_grad_winograd(geo, x, dy);
    }
    let k = geo.k();
    let threads = threads_for(blocks(geo, k).len());
    // Few blocks: one pass over every image with every thread inside the GEMMs.
    let chunks = match threads {
        Threads::All => geo.batch.min(1),
        Threads::One => geo.batch.min(WEIGHT_CHUNKS),
    };
    sum_in_order(geo.c_out * k, chunks, threads, |c, threads, dw| {
        let images = c * geo.batch / chunks..(c + 1) * geo.batch / chunks;
        weight_grad_images(geo, x, dy, images, dw, threads);
    })
}

/// Adds the weight gradient of `images` onto `dw`, one im2col block at a time.
fn weight_grad_images(
    geo: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    images: core::ops::Range<usize>,
    dw: &mut [f32],
    threads: Threads,
) {
    let (k, positions, plane) = (geo.k(), geo.positions(), geo.plane());
    let (c_in_g, c_out_g) = (geo.c_in_g(), geo.c_out_g());
    let t_max = block_positions(geo, k);
    let col_len = if geo.is_pointwise() { 0 } else { k * t_max };
    with_scratch([col_len], |[col]| {
        for n in images.clone() {
            for g in 0..geo.groups {
                let x_group = &x[(n * geo.c_in + g * c_in_g) * plane..][..c_in_g * plane];
                let dy_group =
                    &dy[(n * geo.c_out + g * c_out_g) * positions..][..c_out_g * positions];
                let dw_group = &mut dw[g * c_out_g * k..][..c_out_g * k];
                let mut p0 = 0;
                while p0 < positions {
                    let t = t_max.min(positions - p0);
                    // dW_g[c_out_g, k] += dY[c_out_g, t] · colᵀ[t, k]
                    let rhs = if geo.is_pointwise() {
                        rows_t(x_group[p0..].as_ptr(), plane)
                    } else {
                        im2col(geo, x_group, p0, t, &mut col[..k * t]);
                        rows_t(col.as_ptr(), t)
                    };
                    // SAFETY: views sized to the slices above; `dw_group` is exclusively borrowed.
                    unsafe {
                        matmul(
                            c_out_g,
                            k,
                            t,
                            rows_mut(dw_group.as_mut_ptr(), k),
                            true,
                            rows(dy_group[p0..].as_ptr(), positions),
                            rhs,
                            threads,
                        );
                    }
                    p0 += t;
                }
            }
        }
    });
}

/// Gradient of the NCHW input given the weight and the output gradient `dy`.
pub(crate) fn conv2d_input_grad(geo: &ConvGeometry, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = planes_filled(geo.batch * geo.c_in, geo.plane(), |_| 0.0);
    let tasks: Vec<(usize, usize)> = (0..geo.batch)
        .flat_map(|n| (0..geo.groups).map(move |g| (n, g)))
        .collect();
    let dst = SendPtr(dx.as_mut_ptr());
    // SAFETY (both arms): each (image, group) task writes only its own input planes.
    let col_len = if geo.is_pointwise() {
        0
    } else {
        geo.k() * block_positions(geo, geo.k())
    };
    let run = |&(n, g): &(usize, usize), threads: Threads| {
        with_scratch([col_len], |[col]| unsafe {
            input_grad_group(geo, weight, dy, dst, n, g, col, threads)
        })
    };
    match threads_for(tasks.len()) {
        Threads::One => tasks.par_iter().for_each(|task| run(task, Threads::One)),
        Threads::All => tasks.iter().for_each(|task| run(task, Threads::All)),
    }
    dx
}

/// `dx[n, g] = col2im(W_gᵀ · dY[n, g])`, one block of positions at a time.
#[allow(clippy::too_many_arguments)]
unsafe fn input_grad_group(
    geo: &ConvGeometry,
    weight: &[f32],
    dy: &[f32],
    dx: SendPtr,
    n: usize,
    g: usize,
    col: &mut [f32],
    threads: Threads,
) {
    let (k, positions, plane) = (geo.k(), geo.positions(), geo.plane());
    let (c_in_g, c_out_g) = (geo.c_in_g(), geo.c_out_g());
    let w_group = &weight[g * c_out_g * k..][..c_out_g * k];
    let dy_group = &dy[(n * geo.c_out + g * c_out_g) * positions..][..c_out_g * positions];
    // SAFETY: this task is the only writer of image n, group g's input planes.
    let dx_group = unsafe {
        core::slice::from_raw_parts_mut(
            dx.0.add((n * geo.c_in + g * c_in_g) * plane),
            c_in_g * plane,
        )
    };
    let lhs = rows_t(w_group.as_ptr(), k); // W_gᵀ: [k, c_out_g]
    if geo.is_pointwise() {
        // SAFETY: views sized to the slices above.
        unsafe {
            matmul(
                k,
                positions,
                c_out_g,
                rows_mut(dx_group.as_mut_ptr(), plane),
                false,
                lhs,
                rows(dy_group.as_ptr(), positions),
                threads,
            );
        }
        return;
    }
    let t_max = block_positions(geo, k);
    let mut p0 = 0;
    while p0 < positions {
        let t = t_max.min(positions - p0);
        // SAFETY: views sized to the slices above; `col` is this task's own buffer.
        unsafe {
            matmul(
                k,
                t,
                c_out_g,
                rows_mut(col.as_mut_ptr(), t),
                false,
                lhs,
                rows(dy_group[p0..].as_ptr(), positions),
                threads,
            );
        }
        col2im_add(geo, &col[..k * t], p0, t, dx_group);
        p0 += t;
    }
}
