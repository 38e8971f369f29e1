//! The weight gradient of a Winograd-eligible convolution (3×3, stride 1, dilation 1, one
//! group) by F(2×2, 3×3): 2.25× fewer multiplications than the im2col GEMM.
//!
//! The forward is `Y = Aᵀ·[(G·g·Gᵀ) ⊙ (Bᵀ·d·B)]·A` per 2×2 output tile, so the gradient of
//! the 3×3 kernel `g` is `Gᵀ·[Σ_tiles (A·dY·Aᵀ) ⊙ (Bᵀ·d·B)]·G`: the input tiles transformed as
//! in the forward (`V[e][ci][j]`), the output-gradient tiles by `A·dY·Aᵀ` (`W[e][co][j]`), 16
//! GEMMs `dU[e] += W[e]·V[e]ᵀ` summing over the tiles, and one `Gᵀ·dU·G` per channel pair at the
//! end. Output positions the forward clipped (odd output sizes) have no gradient: zeros.
//!
//! As for the im2col weight gradient, images are cut into fixed chunks whose gradients are
//! added in index order ([`super::partials`]), so the result is the same bit for bit from run
//! to run whatever rayon's scheduling.

use super::geometry::ConvGeometry;
use super::partials::{WEIGHT_CHUNKS, sum_in_order};
use super::winograd::{F2, image_runs};
use super::winograd_input::{self, transform_input_rows};
use crate::gemm::{Threads, matmul, rows, rows_mut, rows_t};
use crate::scratch::with_scratch;

/// Transformed tiles per block (each of `V` and `W` holds `16 · channels · t`).
const BLOCK_ELEMS: usize = 1 << 19;

/// Gradient of the weight `[c_out, c_in, 3, 3]` given the output gradient `dy` (NCHW).
pub(crate) fn weight_grad_winograd(geo: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let chunks = geo.batch.min(WEIGHT_CHUNKS);
    let threads = super::plan::threads_for(chunks);
    let len = 9 * geo.c_out * geo.c_in;
    sum_in_order(len, chunks, threads, |c, threads, dw| {
        let images = c * geo.batch / chunks..(c + 1) * geo.batch / chunks;
        let du_len = 16 * geo.c_out * geo.c_in;
        with_scratch([du_len], |[du]| {
            du.fill(0.0);
            images_into(geo, x, dy, images, du, threads);
            kernel_grad(geo, du, dw);
        })
    })
}

/// Adds `Σ W[e]·V[e]ᵀ` over the tiles of `images` onto `du[e][co][ci]`, a block of tile rows
/// at a time.
fn images_into(
    geo: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    images: core::ops::Range<usize>,
    du: &mut [f32],
    threads: Threads,
) {
    let (c_in, c_out) = (geo.c_in, geo.c_out);
    let (th, tw) = F2.tiles(geo);
    let rows_per = (BLOCK_ELEMS / (16 * c_in.max(c_out) * tw)).max(1);
    let t_max = rows_per * tw;
    let lens = [
        16 * c_in * t_max,
        16 * c_out * t_max,
        8 * (tw + 1),
        8 * (tw + 1),
        winograd_input::scratch_len(tw, rows_per.min(th)),
    ];
    with_scratch(lens, |[v, w, lines, cols, input]| {
        let (first, end) = (images.start * th, images.end * th);
        let mut r0 = first;
        while r0 < end {
            let r = rows_per.min(end - r0);
            let t = r * tw;
            for (row, n, ty, rows) in image_runs(th, r0, r) {
                for ci in 0..c_in {
                    let src = &x[(n * c_in + ci) * geo.plane()..][..geo.plane()];
                    let at = (ci * t + row * tw, c_in * t);
                    transform_input_rows(geo, src, (ty, rows), input, v, at);
                }
            }
            for row in 0..r {
                let (n, ty) = ((r0 + row) / th, (r0 + row) % th);
                for co in 0..c_out {
                    let grad = &dy[(n * c_out + co) * geo.positions()..][..geo.positions()];
                    grad_row(geo, grad, ty, lines);
                    transform_grad_row(lines, cols, tw, w, (co * t + row * tw, c_out * t));
                }
            }
            for e in 0..16 {
                // SAFETY: views sized to the buffers, `du` exclusively borrowed.
                unsafe {
                    matmul(
                        c_out,
                        c_in,
                        t,
                        rows_mut(du[e * c_out * c_in..].as_mut_ptr(), c_in),
                        true,
                        rows(w[e * c_out * t..].as_ptr(), t),
                        rows_t(v[e * c_in * t..].as_ptr(), t),
                        threads,
                    );
                }
            }
            r0 += r;
        }
    });
}

/// The two output-gradient lines of tile row `ty` (zero past the output's end), split into
/// even columns (`lines[2·l]`, `tw + 1` long, the last unused) and odd columns
/// (`lines[2·l + 1]`).
fn grad_row(geo: &ConvGeometry, grad: &[f32], ty: usize, lines: &mut [f32]) {
    let len = lines.len() / 8;
    for l in 0..2 {
        let (even, odd) = lines[2 * l * len..][..2 * len].split_at_mut(len);
        let oy = 2 * ty + l;
        if oy >= geo.out_h {
            even.fill(0.0);
            odd.fill(0.0);
            continue;
        }
        let line = &grad[oy * geo.out_w..][..geo.out_w];
        for (k, (e, o)) in even.iter_mut().zip(odd.iter_mut()).enumerate() {
            *e = line.get(2 * k).copied().unwrap_or(0.0);
            *o = line.get(2 * k + 1).copied().unwrap_or(0.0);
        }
    }
}

/// `A·dY·Aᵀ` (A = [[1,0],[1,1],[1,−1],[0,−1]]) of every tile of one tile row, from its
/// [`grad_row`] lines, written to `w[e · stride + offset + tx]`; `cols` is scratch.
fn transform_grad_row(
    lines: &[f32],
    cols: &mut [f32],
    tw: usize,
    w: &mut [f32],
    (offset, stride): (usize, usize),
) {
    let len = tw + 1;
    let line = |l: usize, odd: usize| &lines[(2 * l + odd) * len..][..tw];
    // Along each row (·Aᵀ): z_l[c] for c = 0..3, stored at cols[(4·l + c)·len].
    for l in 0..2 {
        let (even, odd) = (line(l, 0), line(l, 1));
        let (z0, rest) = cols[4 * l * len..][..4 * len].split_at_mut(len);
        let (z1, rest) = rest.split_at_mut(len);
        let (z2, z3) = rest.split_at_mut(len);
        for tx in 0..tw {
            z0[tx] = even[tx];
            z1[tx] = even[tx] + odd[tx];
            z2[tx] = even[tx] - odd[tx];
            z3[tx] = -odd[tx];
        }
    }
    // Down the columns (A·): rows r = 0..3 of the 4×4 tile.
    for c in 0..4 {
        let z0 = &cols[c * len..][..tw];
        let z1 = &cols[(4 + c) * len..][..tw];
        let out = |r: usize| (r * 4 + c) * stride + offset;
        let dst = &mut w[out(0)..][..tw];
        dst.copy_from_slice(z0);
        let dst = &mut w[out(1)..][..tw];
        for tx in 0..tw {
            dst[tx] = z0[tx] + z1[tx];
        }
        let dst = &mut w[out(2)..][..tw];
        for tx in 0..tw {
            dst[tx] = z0[tx] - z1[tx];
        }
        let dst = &mut w[out(3)..][..tw];
        for tx in 0..tw {
            dst[tx] = -z1[tx];
        }
    }
}

/// `Gᵀ·dU·G` (G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]) for every channel pair, written over
/// `dw`: the `[c_out, c_in, 3, 3]` weight gradient.
fn kernel_grad(geo: &ConvGeometry, du: &[f32], dw: &mut [f32]) {
    let (c_in, c_out) = (geo.c_in, geo.c_out);
    let plane = c_out * c_in;
    for (pair, g) in dw.chunks_exact_mut(9).enumerate() {
        let d = |r: usize, c: usize| du[(r * 4 + c) * plane + pair];
        // Gᵀ·dU (3×4), then (Gᵀ·dU)·G (3×3).
        let mut h = [[0.0f32; 4]; 3];
        for (c, col) in (0..4).map(|c| (c, [d(0, c), d(1, c), d(2, c), d(3, c)])) {
            h[0][c] = col[0] + 0.5 * (col[1] + col[2]);
            h[1][c] = 0.5 * (col[1] - col[2]);
            h[2][c] = 0.5 * (col[1] + col[2]) + col[3];
        }
        for (a, row) in h.iter().enumerate() {
            g[a * 3] = row[0] + 0.5 * (row[1] + row[2]);
            g[a * 3 + 1] = 0.5 * (row[1] - row[2]);
            g[a * 3 + 2] = 0.5 * (row[1] + row[2]) + row[3];
        }
    }
}
