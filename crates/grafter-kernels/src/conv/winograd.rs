//! Winograd F(2×2, 3×3) for 3×3 convolutions with stride 1 and dilation 1 (one group): each
//! 2×2 output tile takes 16 multiplications per (input, output) channel pair instead of 36, so
//! the GEMMs do 2.25× fewer FLOPs (Lavin & Gray, 2016). With the transforms below the results
//! agree with direct convolution to a few ulps of the accumulated sums (checked against Burn's
//! op in the tests).
//!
//! Layout: the weight transform `U = G·g·Gᵀ` is stored as 16 matrices `[c_out, c_in]`; a
//! block of output tiles (consecutive across images) becomes 16 matrices `V = Bᵀ·d·B`,
//! `[c_in, t]`; 16 GEMMs give `M = U·V`, `[c_out, t]`; the output transform `Aᵀ·M·A` writes each
//! 2×2 tile into the NCHW output (edges clipped), on top of the bias.

use rayon::prelude::*;

use super::geometry::ConvGeometry;
use crate::gemm::{SendPtr, Threads, matmul, rows, rows_mut};

/// Elements of the per-block transformed input and product (each `16 · channels · t`).
const BLOCK_ELEMS: usize = 1 << 19;

/// Fewest tiles per block: the 16 GEMMs each pack their `U` slice once per block.
const MIN_TILES: usize = 64;

/// Whether F(2×2, 3×3) computes this convolution, and is worth it: enough channels for the
/// GEMMs to dominate the transforms.
pub(crate) fn applies(geo: &ConvGeometry) -> bool {
    geo.kh == 3
        && geo.kw == 3
        && geo.stride == [1, 1]
        && geo.dilation == [1, 1]
        && geo.groups == 1
        && geo.c_in >= 16
        && geo.c_out >= 16
}

/// `U[e][co][ci]` for the 16 positions `e` of the 4×4 transformed kernel.
fn transform_weight(geo: &ConvGeometry, weight: &[f32]) -> Vec<f32> {
    let (c_in, c_out) = (geo.c_in, geo.c_out);
    let mut u = vec![0.0f32; 16 * c_out * c_in];
    let plane = c_out * c_in;
    for co in 0..c_out {
        for ci in 0..c_in {
            let g = &weight[(co * c_in + ci) * 9..][..9];
            // G·g (4×3), then (G·g)·Gᵀ (4×4); G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]].
            let mut gg = [[0.0f32; 3]; 4];
            for c in 0..3 {
                let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
                gg[0][c] = g0;
                gg[1][c] = 0.5 * (g0 + g1 + g2);
                gg[2][c] = 0.5 * (g0 - g1 + g2);
                gg[3][c] = g2;
            }
            for (r, row) in gg.iter().enumerate() {
                let (a, b, c) = (row[0], row[1], row[2]);
                let t = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                for (col, v) in t.into_iter().enumerate() {
                    u[(r * 4 + col) * plane + co * c_in + ci] = v;
                }
            }
        }
    }
    u
}

/// `Bᵀ·d·B` of one 4×4 input tile; Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]].
#[inline]
fn transform_tile(d: &[[f32; 4]; 4]) -> [f32; 16] {
    let mut t = [[0.0f32; 4]; 4];
    for c in 0..4 {
        t[0][c] = d[0][c] - d[2][c];
        t[1][c] = d[1][c] + d[2][c];
        t[2][c] = d[2][c] - d[1][c];
        t[3][c] = d[1][c] - d[3][c];
    }
    let mut v = [0.0f32; 16];
    for r in 0..4 {
        v[r * 4] = t[r][0] - t[r][2];
        v[r * 4 + 1] = t[r][1] + t[r][2];
        v[r * 4 + 2] = t[r][2] - t[r][1];
        v[r * 4 + 3] = t[r][1] - t[r][3];
    }
    v
}

/// Tiles per image along each axis.
fn tiles(geo: &ConvGeometry) -> (usize, usize) {
    (geo.out_h.div_ceil(2), geo.out_w.div_ceil(2))
}

/// `conv2d` by F(2×2, 3×3); same contract as [`super::forward::conv2d_forward`].
pub(crate) fn conv2d_winograd(
    geo: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut out = super::forward::output_with_bias(geo, bias);
    let u = transform_weight(geo, weight);
    let (th, tw) = tiles(geo);
    let total = geo.batch * th * tw;
    let per = (BLOCK_ELEMS / (16 * geo.c_in.max(geo.c_out))).max(MIN_TILES);
    let blocks: Vec<(usize, usize)> = (0..total)
        .step_by(per)
        .map(|t0| (t0, per.min(total - t0)))
        .collect();
    let dst = SendPtr(out.as_mut_ptr());
    let threads = super::plan::threads_for(blocks.len());
    let run = |buf: &mut (Vec<f32>, Vec<f32>), &(t0, t): &(usize, usize), threads: Threads| {
        // SAFETY: each block writes only the output tiles it owns.
        unsafe { block(geo, x, &u, dst, t0, t, buf, threads) }
    };
    match threads {
        Threads::One => blocks.par_iter().for_each_init(
            || (Vec::new(), Vec::new()),
            |buf, b| run(buf, b, Threads::One),
        ),
        Threads::All => {
            let mut buf = (Vec::new(), Vec::new());
            for b in &blocks {
                run(&mut buf, b, Threads::All);
            }
        }
    }
    out
}

/// Tiles `t0 .. t0 + t` (numbered image-major, then row, then column).
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    geo: &ConvGeometry,
    x: &[f32],
    u: &[f32],
    out: SendPtr,
    t0: usize,
    t: usize,
    (v, m): &mut (Vec<f32>, Vec<f32>),
    threads: Threads,
) {
    let (c_in, c_out) = (geo.c_in, geo.c_out);
    let (th, tw) = tiles(geo);
    let per_image = th * tw;
    let plane = geo.plane();
    let [ph, pw] = geo.pad;
    v.resize(16 * c_in * t, 0.0);
    m.resize(16 * c_out * t, 0.0);
    // Input transform: V[e][ci][j].
    for ci in 0..c_in {
        for j in 0..t {
            let tile = t0 + j;
            let (n, ty, tx) = (tile / per_image, (tile % per_image) / tw, tile % tw);
            let src = &x[(n * c_in + ci) * plane..][..plane];
            let mut d = [[0.0f32; 4]; 4];
            let y0 = (2 * ty) as isize - ph as isize;
            let x0 = (2 * tx) as isize - pw as isize;
            for (r, row) in d.iter_mut().enumerate() {
                let iy = y0 + r as isize;
                if iy < 0 || iy >= geo.h as isize {
                    continue;
                }
                let line = &src[iy as usize * geo.w..][..geo.w];
                for (c, cell) in row.iter_mut().enumerate() {
                    let ix = x0 + c as isize;
                    if ix >= 0 && ix < geo.w as isize {
                        *cell = line[ix as usize];
                    }
                }
            }
            let vt = transform_tile(&d);
            for (e, val) in vt.into_iter().enumerate() {
                v[(e * c_in + ci) * t + j] = val;
            }
        }
    }
    // 16 GEMMs: M[e] = U[e] · V[e].
    for e in 0..16 {
        // SAFETY: views sized to the buffers; `m` is this block's own.
        unsafe {
            matmul(
                c_out,
                t,
                c_in,
                rows_mut(m[e * c_out * t..].as_mut_ptr(), t),
                false,
                rows(u[e * c_out * c_in..].as_ptr(), c_in),
                rows(v[e * c_in * t..].as_ptr(), t),
                threads,
            );
        }
    }
    // Output transform Aᵀ·M·A (Aᵀ = [[1,1,1,0],[0,1,−1,−1]]), added onto the bias.
    let positions = geo.positions();
    for co in 0..c_out {
        for j in 0..t {
            let tile = t0 + j;
            let (n, ty, tx) = (tile / per_image, (tile % per_image) / tw, tile % tw);
            let mut s = [0.0f32; 16];
            for (e, val) in s.iter_mut().enumerate() {
                *val = m[(e * c_out + co) * t + j];
            }
            let mut r = [[0.0f32; 4]; 2];
            for c in 0..4 {
                r[0][c] = s[c] + s[4 + c] + s[8 + c];
                r[1][c] = s[4 + c] - s[8 + c] - s[12 + c];
            }
            let y = [
                [r[0][0] + r[0][1] + r[0][2], r[0][1] - r[0][2] - r[0][3]],
                [r[1][0] + r[1][1] + r[1][2], r[1][1] - r[1][2] - r[1][3]],
            ];
            let base = (n * c_out + co) * positions;
            for (dy, row) in y.iter().enumerate() {
                let oy = 2 * ty + dy;
                if oy >= geo.out_h {
                    continue;
                }
                for (dx, val) in row.iter().enumerate() {
                    let ox = 2 * tx + dx;
                    if ox < geo.out_w {
                        // SAFETY: (n, co, oy, ox) is inside the output and in this block's tile.
                        unsafe { *out.0.add(base + oy * geo.out_w + ox) += *val };
                    }
                }
            }
        }
    }
}
