//! Winograd F(4×4, 3×3): each 4×4 output tile from a 6×6 input tile, 36 multiplications per
//! (input, output) channel pair instead of 144 — 4× fewer GEMM FLOPs than direct convolution
//! and 1.78× fewer than F(2×2, 3×3) on maps that divide into 4×4 tiles.
//!
//! Interpolation points 0, ±1, ±2 and ∞ (Lavin & Gray, 2016):
//!
//! ```text
//! Bᵀ = [4  0 −5  0 1 0]   G = [ 1/4     0     0 ]   Aᵀ = [1 1  1 1  1 0]
//!      [0 −4 −4  1 1 0]       [−1/6  −1/6  −1/6 ]        [0 1 −1 2 −2 0]
//!      [0  4 −4 −1 1 0]       [−1/6   1/6  −1/6 ]        [0 1  1 4  4 0]
//!      [0 −2 −1  2 1 0]       [1/24  1/12   1/6 ]        [0 1 −1 8 −8 1]
//!      [0  2 −1 −2 1 0]       [1/24 −1/12   1/6 ]
//!      [0  4  0 −5 0 1]       [  0     0      1 ]
//! ```
//!
//! The larger constants cost accuracy: against direct convolution the outputs differ by a few
//! 1e-6 of the largest output at 64 channels and up to 2e-5 at 512 (random weights, checked
//! against Burn's op in the tests; end to end against onnxruntime in the parity tests), about
//! 15× F(2×2, 3×3)'s error.

use super::geometry::ConvGeometry;
use super::winograd::Tiling;
use super::winograd4_input;

/// F(4×4, 3×3).
pub(super) const F4: Tiling = Tiling {
    m: 4,
    elems: 36,
    transform_weight,
    input_scratch_len: winograd4_input::scratch_len,
    transform_input_rows: winograd4_input::transform_input_rows,
    output_scratch_len: |tw| 28 * tw,
    transform_output_row,
};

/// `G = [[1/4,0,0],[−1/6,−1/6,−1/6],[−1/6,1/6,−1/6],[1/24,1/12,1/6],[1/24,−1/12,1/6],[0,0,1]]`
/// applied to a column `(a, b, c)` (multiplications by the reciprocals: no divisions).
#[inline(always)]
fn g_times(a: f32, b: f32, c: f32) -> [f32; 6] {
    const SIXTH: f32 = 1.0 / 6.0;
    const TWELFTH: f32 = 1.0 / 12.0;
    const TWENTY_FOURTH: f32 = 1.0 / 24.0;
    let (ac, b6) = (a + c, b * SIXTH);
    let (outer, inner) = (a * TWENTY_FOURTH + c * SIXTH, b * TWELFTH);
    [
        0.25 * a,
        -ac * SIXTH - b6,
        -ac * SIXTH + b6,
        outer + inner,
        outer - inner,
        c,
    ]
}

/// Writes `u[e · c_in + ci] = (G·g·Gᵀ)[e / 6][e % 6]` for the kernels `g` of one output
/// channel.
fn transform_weight(c_in: usize, w_co: &[f32], u_co: &mut [f32]) {
    super::winograd::transform_kernels(c_in, w_co, u_co, g_times);
}

/// `Aᵀ·(s0 .. s5)`: the four outputs of one line of six products.
#[inline(always)]
fn a_times(s: [f32; 6]) -> [f32; 4] {
    let (sum12, diff12) = (s[1] + s[2], s[1] - s[2]);
    let (sum34, diff34) = (s[3] + s[4], s[3] - s[4]);
    [
        s[0] + sum12 + sum34,
        diff12 + 2.0 * diff34,
        sum12 + 4.0 * sum34,
        diff12 + 8.0 * diff34 + s[5],
    ]
}

/// `Aᵀ·M·A` of every tile of one tile row, added onto output rows `4·ty .. 4·ty + 4` (those
/// inside the output) starting at `out`; `m[e · stride + tx]` is product `e` of tile `tx`;
/// `y` is scratch of `28 · tw`.
///
/// # Safety
/// `out` must address the tile row's output rows inside the output, which nothing else
/// accesses during the call.
unsafe fn transform_output_row(
    geo: &ConvGeometry,
    m: &[f32],
    stride: usize,
    tw: usize,
    y: &mut [f32],
    out: *mut f32,
    ty: usize,
) {
    let (cols, rows) = y.split_at_mut(24 * tw);
    let rows = &mut rows[..4 * tw];
    // Down the columns: cols[(r · 6 + c) · tw + tx] = (Aᵀ·M)[r][c] of tile tx, contiguous
    // across the tiles so the loop vectorises.
    for c in 0..6 {
        let s = |r: usize| &m[(r * 6 + c) * stride..][..tw];
        let (s0, s1, s2, s3, s4, s5) = (s(0), s(1), s(2), s(3), s(4), s(5));
        let (t0, rest) = cols[c * tw..].split_at_mut(6 * tw);
        let (t1, rest) = rest.split_at_mut(6 * tw);
        let (t2, t3) = rest.split_at_mut(6 * tw);
        for tx in 0..tw {
            let r = a_times([s0[tx], s1[tx], s2[tx], s3[tx], s4[tx], s5[tx]]);
            t0[tx] = r[0];
            t1[tx] = r[1];
            t2[tx] = r[2];
            t3[tx] = r[3];
        }
    }
    let w = geo.out_w;
    for r in 0..4 {
        if 4 * ty + r >= geo.out_h {
            break;
        }
        // Along the rows: rows[x · tw + tx] = output column 4·tx + x.
        let s = |c: usize| &cols[(r * 6 + c) * tw..][..tw];
        let (s0, s1, s2, s3, s4, s5) = (s(0), s(1), s(2), s(3), s(4), s(5));
        for tx in 0..tw {
            let o = a_times([s0[tx], s1[tx], s2[tx], s3[tx], s4[tx], s5[tx]]);
            for (x, v) in o.into_iter().enumerate() {
                rows[x * tw + tx] = v;
            }
        }
        // SAFETY: row `4·ty + r` is inside the output (checked above) and this caller's.
        let line = unsafe { core::slice::from_raw_parts_mut(out.add(r * w), w) };
        let quads = w / 4;
        for (tx, quad) in line[..4 * quads].chunks_exact_mut(4).enumerate() {
            for (x, v) in quad.iter_mut().enumerate() {
                *v += rows[x * tw + tx];
            }
        }
        for (x, v) in line[4 * quads..].iter_mut().enumerate() {
            *v += rows[x * tw + quads];
        }
    }
}
