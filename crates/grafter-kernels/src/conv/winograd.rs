//! Winograd convolution for 3×3 kernels with stride 1 and dilation 1 (one group): the block
//! driver shared by the two tilings, and F(2×2, 3×3)'s weight and output transforms.
//!
//! F(m×m, 3×3) computes an m×m output tile from an (m+2)×(m+2) input tile with (m+2)²
//! multiplications per (input, output) channel pair instead of 9·m²: F(2×2, 3×3) does 2.25×
//! fewer, F(4×4, 3×3) ([`super::winograd4`]) 4× fewer (Lavin & Gray, 2016). The forward (and
//! the input gradient, a forward on the flipped weight) uses F(4×4, 3×3) on large maps where
//! [`crate::conv_precision`] allows it, F(2×2, 3×3) elsewhere; the weight gradient
//! ([`super::winograd_grad`]) always F(2×2, 3×3), whose sums over many tiles stay closer to
//! direct convolution.
//!
//! Layout: the weight transform `U = G·g·Gᵀ` is stored `[c_out, E, c_in]` (E = (m+2)²
//! matrices `[c_out, c_in]` whose rows are `E·c_in` apart, filled one output channel per task);
//! a block of whole tile rows (an image's output rows `m·ty .. m·ty + m`, consecutive across
//! images) becomes E matrices `V = Bᵀ·d·B`, `[c_in, t]`; E GEMMs give `M = U·V`, `[c_out, t]`;
//! the output transform `Aᵀ·M·A` adds each m×m tile onto the bias in the NCHW output (edges
//! clipped).
//!
//! Both transforms run a whole tile row at a time with the tiles as the innermost, contiguous
//! index (the input lines split into column phases first), so they vectorise; done tile
//! by tile they cost as much as the GEMMs for 64-channel layers.

use rayon::prelude::*;

use super::forward::Epilogue;
use super::geometry::ConvGeometry;
use super::winograd_input;
use crate::gemm::{SendPtr, Threads, matmul, rows, rows_mut};
use crate::scratch::with_scratch;

/// Elements of the per-block transformed input and product (each `elems · channels · t`): 512 KiB,
/// so a block's `V` is still in the core's L2 cache when its GEMMs read it (measured: 5% faster
/// 3×3 convolutions in a ResNet-18 forward than 2 MiB blocks; 256 KiB blocks were slower).
const BLOCK_ELEMS: usize = 1 << 17;

/// Fewest tiles per block: the block's GEMMs (one per transformed element) each pack their `U`
/// slice once per block.
const MIN_TILES: usize = 64;

/// Whether Winograd computes this convolution, and is worth it: enough channels for the
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

/// The transform that writes `U[co][e][ci]` for the `elems` positions `e` of the transformed
/// kernel.
type WeightTransform = fn(&ConvGeometry, &[f32], &mut [f32]);

/// Transforms tile rows `ty0 .. ty0 + rows` of the plane `src` (padding read as zeros), with
/// `scratch` of the tiling's `input_scratch_len`, writing transformed element `e` of tile
/// `(i, tx)` (`i` counted from `ty0`) to `v[e · stride + offset + i · tw + tx]`; the
/// arguments are `(geo, src, (ty0, rows), scratch, v, (offset, stride))`.
type InputTransform =
    fn(&ConvGeometry, &[f32], (usize, usize), &mut [f32], &mut [f32], (usize, usize));

/// `Aᵀ·M·A` of every tile of tile row `ty`, added onto output rows `m·ty ..` (those inside
/// the output) starting at `out`; `m[e · stride + tx]` is product `e` of tile `tx`; the
/// arguments are `(geo, m, stride, tw, scratch, out, ty)`, `scratch` of the tiling's
/// `output_scratch_len`.
///
/// # Safety
/// `out` must address the tile row's output rows that lie inside the output, which nothing
/// else accesses during the call.
type OutputTransform = unsafe fn(&ConvGeometry, &[f32], usize, usize, &mut [f32], *mut f32, usize);

/// One tiling F(m×m, 3×3): its transforms, and the sizes the block driver needs.
pub(super) struct Tiling {
    /// Output tile side m.
    pub m: usize,
    /// Transformed elements per tile, (m + 2)².
    pub elems: usize,
    pub transform_weight: WeightTransform,
    /// Scratch elements `transform_input_rows` needs for `rows` tile rows of `tw` tiles.
    pub input_scratch_len: fn(tw: usize, rows: usize) -> usize,
    pub transform_input_rows: InputTransform,
    /// Scratch elements `transform_output_row` needs for a tile row of `tw` tiles.
    pub output_scratch_len: fn(tw: usize) -> usize,
    pub transform_output_row: OutputTransform,
}

impl Tiling {
    /// Tiles per image along each axis.
    pub fn tiles(&self, geo: &ConvGeometry) -> (usize, usize) {
        (geo.out_h.div_ceil(self.m), geo.out_w.div_ceil(self.m))
    }
}

/// F(2×2, 3×3).
pub(super) const F2: Tiling = Tiling {
    m: 2,
    elems: 16,
    transform_weight,
    input_scratch_len: winograd_input::scratch_len,
    transform_input_rows: winograd_input::transform_input_rows,
    output_scratch_len: |tw| 4 * tw,
    transform_output_row,
};

/// Writes `U[co][e][ci]` for the 16 positions `e` of the 4×4 transformed kernel, one output
/// channel per task.
fn transform_weight(geo: &ConvGeometry, weight: &[f32], u: &mut [f32]) {
    let (c_in, c_out) = (geo.c_in, geo.c_out);
    assert_eq!(u.len(), 16 * c_out * c_in);
    u.par_chunks_mut(16 * c_in)
        .enumerate()
        .for_each(|(co, u_co)| {
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
                        u_co[(r * 4 + col) * c_in + ci] = v;
                    }
                }
            }
        });
}

/// The blocks, as ranges of tile rows (numbered image-major): about `BLOCK_ELEMS` of
/// transformed data each, but at least two per thread where that leaves `MIN_TILES` per block.
fn blocks(tiling: &Tiling, geo: &ConvGeometry) -> Vec<(usize, usize)> {
    let (th, tw) = tiling.tiles(geo);
    let total_rows = geo.batch * th;
    let per_tiles = (BLOCK_ELEMS / (tiling.elems * geo.c_in.max(geo.c_out))).max(MIN_TILES);
    let mut count = total_rows.div_ceil(per_tiles.div_ceil(tw));
    let wanted = 2 * rayon::current_num_threads();
    if count < wanted {
        count = wanted.min(total_rows * tw / MIN_TILES).max(count);
    }
    let per_rows = total_rows.div_ceil(count.max(1));
    (0..total_rows)
        .step_by(per_rows)
        .map(|r0| (r0, per_rows.min(total_rows - r0)))
        .collect()
}

/// Shortest output side from which `High` precision takes F(4×4, 3×3). Measured on ResNet-18's
/// layers (batch 32, 2 threads, the two tilings alternated): F(4×4) is 5–25% faster on 56×56
/// and 28×28 maps and 5–40% slower on 14×14 and 7×7, where a grid of 4×4 tiles wastes up to a
/// third of its outputs and the 36 transformed weight matrices are used by too few tiles.
const F4_MIN_SIDE: usize = 28;

/// `conv2d` by Winograd: F(4×4, 3×3) at [`crate::ConvPrecision::High`] on maps of at least
/// [`F4_MIN_SIDE`], F(2×2, 3×3) otherwise.
pub(crate) fn conv2d_winograd_any(
    geo: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
) -> Vec<f32> {
    let f4 = crate::conv_precision() == crate::ConvPrecision::High
        && geo.out_h.min(geo.out_w) >= F4_MIN_SIDE;
    let tiling = if f4 { &super::winograd4::F4 } else { &F2 };
    conv2d_winograd(tiling, geo, x, weight, bias, epilogue)
}

/// `conv2d` by Winograd with `tiling`; same contract as [`super::forward::conv2d_forward`].
fn conv2d_winograd(
    tiling: &Tiling,
    geo: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
) -> Vec<f32> {
    let mut out = super::forward::output_start(geo, bias, epilogue.residual);
    let (th, tw) = tiling.tiles(geo);
    let blocks = blocks(tiling, geo);
    let t_max = tw * blocks.iter().map(|b| b.1).max().unwrap_or(0);
    let lens = [
        tiling.elems * geo.c_in * t_max,
        tiling.elems * geo.c_out * t_max,
        (tiling.input_scratch_len)(tw, (t_max / tw.max(1)).min(th)),
        (tiling.output_scratch_len)(tw),
    ];
    with_scratch([tiling.elems * geo.c_out * geo.c_in], |[u]| {
        (tiling.transform_weight)(geo, weight, u);
        let u = &*u;
        let dst = SendPtr(out.as_mut_ptr());
        let run = |&(r0, r): &(usize, usize), threads: Threads| {
            with_scratch(lens, |[v, m, input, y]| {
                let mut buf = Scratch { v, m, input, y };
                // SAFETY: each block writes only the output tiles of its own tile rows.
                unsafe { block(tiling, geo, x, u, dst, r0, r, &mut buf, threads, &epilogue) }
            })
        };
        match super::plan::threads_for(blocks.len()) {
            Threads::One => blocks.par_iter().for_each(|b| run(b, Threads::One)),
            Threads::All => blocks.iter().for_each(|b| run(b, Threads::All)),
        }
    });
    out
}

/// One block's buffers (see [`with_scratch`]; each is fully written before it is read).
struct Scratch<'a> {
    /// Transformed input `V[e][ci][j]`.
    v: &'a mut [f32],
    /// Products `M[e][co][j]`.
    m: &'a mut [f32],
    /// The input transform's working space ([`Tiling::input_scratch_len`]).
    input: &'a mut [f32],
    /// The output transform's working space ([`Tiling::output_scratch_len`]).
    y: &'a mut [f32],
}

/// The tile rows `r0 .. r0 + r` (numbered image-major) as runs within one image:
/// `(first row counted from r0, image, its first tile row, rows)`.
pub(super) fn image_runs(
    th: usize,
    r0: usize,
    r: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let mut row = 0;
    core::iter::from_fn(move || {
        (row < r).then(|| {
            let (n, ty) = ((r0 + row) / th, (r0 + row) % th);
            let rows = (th - ty).min(r - row);
            let run = (row, n, ty, rows);
            row += rows;
            run
        })
    })
}

/// Tile rows `r0 .. r0 + r` (numbered image-major).
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    tiling: &Tiling,
    geo: &ConvGeometry,
    x: &[f32],
    u: &[f32],
    out: SendPtr,
    r0: usize,
    r: usize,
    buf: &mut Scratch<'_>,
    threads: Threads,
    epilogue: &Epilogue<'_>,
) {
    let (c_in, c_out) = (geo.c_in, geo.c_out);
    let (th, tw) = tiling.tiles(geo);
    let t = r * tw;
    let plane = geo.plane();
    for ci in 0..c_in {
        for (row, n, ty, rows) in image_runs(th, r0, r) {
            let src = &x[(n * c_in + ci) * plane..][..plane];
            let at = (ci * t + row * tw, c_in * t);
            (tiling.transform_input_rows)(geo, src, (ty, rows), buf.input, buf.v, at);
        }
    }
    // One GEMM per transformed element: M[e] = U[e] · V[e].
    for e in 0..tiling.elems {
        // SAFETY: views sized to the buffers; `m` is this block's own.
        unsafe {
            matmul(
                c_out,
                t,
                c_in,
                rows_mut(buf.m[e * c_out * t..].as_mut_ptr(), t),
                false,
                rows(u[e * c_in..].as_ptr(), tiling.elems * c_in),
                rows(buf.v[e * c_in * t..].as_ptr(), t),
                threads,
            );
        }
    }
    let positions = geo.positions();
    for co in 0..c_out {
        for row in 0..r {
            let (n, ty) = ((r0 + row) / th, (r0 + row) % th);
            let m = &buf.m[co * t + row * tw..];
            let first = (n * c_out + co) * positions + tiling.m * ty * geo.out_w;
            // SAFETY: output rows `m·ty ..` of plane (n, co) belong to this block.
            unsafe {
                (tiling.transform_output_row)(geo, m, c_out * t, tw, buf.y, out.0.add(first), ty);
                let rows = tiling.m.min(geo.out_h - tiling.m * ty);
                epilogue.finish_rows(out.0.add(first), 1, rows * geo.out_w, 0);
            };
        }
    }
}

/// `Aᵀ·M·A` (Aᵀ = [[1,1,1,0],[0,1,−1,−1]]) of every tile of one tile row, added onto output
/// rows `2·ty` and `2·ty + 1` (those inside the output) starting at `out`; `m[e · stride + tx]`
/// is product `e` of tile `tx`; `y` is scratch of `4 · tw`.
///
/// # Safety
/// `out` must address the two output rows (only the first when `2·ty + 1` is past the end),
/// which nothing else accesses during the call.
unsafe fn transform_output_row(
    geo: &ConvGeometry,
    m: &[f32],
    stride: usize,
    tw: usize,
    y: &mut [f32],
    out: *mut f32,
    ty: usize,
) {
    let s = |e: usize| &m[e * stride..][..tw];
    let (y00, rest) = y.split_at_mut(tw);
    let (y01, rest) = rest.split_at_mut(tw);
    let (y10, y11) = rest.split_at_mut(tw);
    let y11 = &mut y11[..tw];
    // One column c of A at a time would need 8 rows of r; per tile the 16 loads are contiguous
    // across tiles, so the loop vectorises.
    let (s0, s1, s2, s3) = (s(0), s(1), s(2), s(3));
    let (s4, s5, s6, s7) = (s(4), s(5), s(6), s(7));
    let (s8, s9, s10, s11) = (s(8), s(9), s(10), s(11));
    let (s12, s13, s14, s15) = (s(12), s(13), s(14), s(15));
    for tx in 0..tw {
        let r00 = s0[tx] + s4[tx] + s8[tx];
        let r01 = s1[tx] + s5[tx] + s9[tx];
        let r02 = s2[tx] + s6[tx] + s10[tx];
        let r03 = s3[tx] + s7[tx] + s11[tx];
        let r10 = s4[tx] - s8[tx] - s12[tx];
        let r11 = s5[tx] - s9[tx] - s13[tx];
        let r12 = s6[tx] - s10[tx] - s14[tx];
        let r13 = s7[tx] - s11[tx] - s15[tx];
        y00[tx] = r00 + r01 + r02;
        y01[tx] = r01 - r02 - r03;
        y10[tx] = r10 + r11 + r12;
        y11[tx] = r11 - r12 - r13;
    }
    let w = geo.out_w;
    for (dy, (left, right)) in [(&*y00, &*y01), (&*y10, &*y11)].into_iter().enumerate() {
        if 2 * ty + dy >= geo.out_h {
            break;
        }
        // SAFETY: row `2·ty + dy` is inside the output (checked above) and this caller's.
        let line = unsafe { core::slice::from_raw_parts_mut(out.add(dy * w), w) };
        let pairs = w / 2;
        for (tx, pair) in line[..2 * pairs].chunks_exact_mut(2).enumerate() {
            pair[0] += left[tx];
            pair[1] += right[tx];
        }
        if w % 2 == 1 {
            line[w - 1] += left[pairs];
        }
    }
}
