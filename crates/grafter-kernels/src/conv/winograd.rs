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
const MIN_TILES: usize = 48;

/// Whether Winograd computes this convolution, and is worth it: enough channels for the
/// GEMMs to dominate the transforms, enough positions ([`MIN_POSITIONS`]) for them to
/// dominate the weight transform.
pub(crate) fn applies(geo: &ConvGeometry) -> bool {
    geo.kh == 3
        && geo.kw == 3
        && geo.stride == [1, 1]
        && geo.dilation == [1, 1]
        && geo.groups == 1
        && geo.c_in >= 16
        && geo.c_out >= 16
        && geo.batch * geo.out_h * geo.out_w >= MIN_POSITIONS
}

/// Fewest output positions (batch × height × width) for which Winograd beats direct
/// convolution: below, the weight transform each call makes ((m + 2)² values per weight tap
/// triple, written and read back) and GEMMs of a few dozen tiles cost more than the
/// multiplications saved. Measured on ResNet-18's layers (2 threads, Winograd against im2col,
/// ms): 49 positions (7×7, batch 1) 2.9 vs 1.2; 196 (14×14, batch 1) 1.4 vs 1.2; 392 (7×7,
/// batch 8) 9.5 vs 7.5; 784 (28×28, batch 1) equal; 1568 (14×14 batch 8, 7×7 batch 32) 5.2 vs
/// 6.8 and 22 vs 31.
const MIN_POSITIONS: usize = 1024;

/// The transform of one output channel's kernels: `(c_in, w, u)` writes `u[e · c_in + ci]`, the
/// `elems` positions `e` of the transformed kernel of input channel `ci`, from the channel's
/// weights `w[ci · 9 + tap]`.
type WeightTransform = fn(usize, &[f32], &mut [f32]);

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

/// Input channels transformed together: the loops below run across them, so they vectorise,
/// and each row of `U` is written as a contiguous run.
const LANES: usize = 8;

/// Writes `u[e · c_in + ci] = (G·g·Gᵀ)[e / R][e % R]` for the 3×3 kernels `g` of one output
/// channel (`w_co[ci · 9 + tap]`), `LANES` input channels at a time; `g_times` applies `G`
/// (R×3) to a column. Both tilings' weight transforms.
#[inline(always)]
pub(super) fn transform_kernels<const R: usize>(
    c_in: usize,
    w_co: &[f32],
    u_co: &mut [f32],
    g_times: impl Fn(f32, f32, f32) -> [f32; R],
) {
    for ci0 in (0..c_in).step_by(LANES) {
        let lanes = LANES.min(c_in - ci0);
        let mut g = [[0.0f32; LANES]; 9];
        for (l, taps) in w_co[ci0 * 9..][..lanes * 9].chunks_exact(9).enumerate() {
            for (tap, &v) in taps.iter().enumerate() {
                g[tap][l] = v;
            }
        }
        // G·g (R×3), a column at a time, then (G·g)·Gᵀ (R×R), a row at a time.
        let mut gg = [[[0.0f32; LANES]; 3]; R];
        for c in 0..3 {
            for l in 0..LANES {
                let col = g_times(g[c][l], g[3 + c][l], g[6 + c][l]);
                for (r, v) in col.into_iter().enumerate() {
                    gg[r][c][l] = v;
                }
            }
        }
        for (r, row) in gg.iter().enumerate() {
            let mut out = [[0.0f32; LANES]; R];
            for l in 0..LANES {
                let t = g_times(row[0][l], row[1][l], row[2][l]);
                for (c, v) in t.into_iter().enumerate() {
                    out[c][l] = v;
                }
            }
            for (c, lane) in out.iter().enumerate() {
                let dst = &mut u_co[(r * R + c) * c_in + ci0..][..lanes];
                if let Ok(dst) = <&mut [f32; LANES]>::try_from(&mut *dst) {
                    // A whole group: a fixed-size store, not a call to memmove.
                    *dst = *lane;
                } else {
                    dst.copy_from_slice(&lane[..lanes]);
                }
            }
        }
    }
}

/// Writes `u[e · c_in + ci]` for the 16 positions `e` of the 4×4 transformed kernels of one
/// output channel: `G·g·Gᵀ` with `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]`.
fn transform_weight(c_in: usize, w_co: &[f32], u_co: &mut [f32]) {
    transform_kernels(c_in, w_co, u_co, |a, b, c| {
        [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]
    });
}

/// Writes `U[co][e][ci]` for every output channel of `weight` (`[c_out, c_in, 3, 3]`), one
/// output channel per task, each channel's kernels times `scale[co]` when given.
pub(super) fn transform_weights(
    tiling: &Tiling,
    c_in: usize,
    weight: &[f32],
    scale: Option<&[f32]>,
    u: &mut [f32],
) {
    let per_co = tiling.elems * c_in;
    assert_eq!(u.len() / per_co, weight.len() / (9 * c_in));
    u.par_chunks_mut(per_co)
        .zip(weight.par_chunks(9 * c_in))
        .enumerate()
        .for_each(|(co, (u_co, w_co))| {
            transform_channel(tiling, c_in, w_co, scale.map(|s| s[co]), u_co);
        });
}

/// One output channel's transformed kernels `u[e · c_in + ci]`, times `scale` when given: `U`
/// is linear in the kernel, so a per-channel factor of the weight (a folded BatchNorm's) costs
/// one pass over `u` while it is in cache instead of one over the weight in memory.
pub(super) fn transform_channel(
    tiling: &Tiling,
    c_in: usize,
    w_co: &[f32],
    scale: Option<f32>,
    u_co: &mut [f32],
) {
    (tiling.transform_weight)(c_in, w_co, u_co);
    if let Some(s) = scale {
        u_co.iter_mut().for_each(|v| *v *= s);
    }
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
    // Rows spread evenly (sizes differing by one at most), so that the last block is not
    // the short one a thread waits for alone.
    let count = count.clamp(1, total_rows.max(1));
    (0..count)
        .map(|i| {
            let r0 = total_rows * i / count;
            (r0, total_rows * (i + 1) / count - r0)
        })
        .filter(|&(_, r)| r > 0)
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
    scale: Option<&[f32]>,
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
) -> Vec<f32> {
    let f4 = crate::conv_precision() == crate::ConvPrecision::High
        && geo.out_h.min(geo.out_w) >= F4_MIN_SIDE;
    let tiling = if f4 { &super::winograd4::F4 } else { &F2 };
    conv2d_winograd(tiling, geo, x, (weight, scale), bias, epilogue, None)
}

/// How the threads share a Winograd convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// One block of tile rows per task, the weights transformed once up front.
    Blocks,
    /// The blocks in turn, each block's output channels split over the threads
    /// ([`super::winograd_split`]): for convolutions with too few blocks to go round.
    Channels,
}

/// `conv2d` by Winograd with `tiling` and `driver` (by default: [`Driver::Blocks`] when there
/// are enough blocks to keep every thread busy); same contract as
/// [`super::forward::conv2d_forward`].
fn conv2d_winograd(
    tiling: &Tiling,
    geo: &ConvGeometry,
    x: &[f32],
    (weight, scale): (&[f32], Option<&[f32]>),
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
    driver: Option<Driver>,
) -> Vec<f32> {
    let mut out = super::forward::output_start(geo, bias, epilogue.residual);
    let (th, tw) = tiling.tiles(geo);
    let blocks = blocks(tiling, geo);
    let driver = driver.unwrap_or(match super::plan::threads_for(blocks.len()) {
        Threads::One => Driver::Blocks,
        Threads::All => Driver::Channels,
    });
    let t_max = tw * blocks.iter().map(|b| b.1).max().unwrap_or(0);
    let lens = [
        tiling.elems * geo.c_in * t_max,
        tiling.elems * geo.c_out * t_max,
        (tiling.input_scratch_len)(tw, (t_max / tw.max(1)).min(th)),
        (tiling.output_scratch_len)(tw),
    ];
    let dst = SendPtr(out.as_mut_ptr());
    if driver == Driver::Channels {
        let weight = (weight, scale);
        // SAFETY: `dst` is the whole output, which nothing else accesses.
        unsafe { super::winograd_split::conv2d(tiling, geo, x, weight, &blocks, dst, &epilogue) };
        return out;
    }
    with_scratch([tiling.elems * geo.c_out * geo.c_in], |[u]| {
        transform_weights(tiling, geo.c_in, weight, scale, u);
        let u = &*u;
        blocks.par_iter().for_each(|&(r0, r)| {
            with_scratch(lens, |[v, m, input, y]| {
                let mut buf = Scratch { v, m, input, y };
                // SAFETY: each block writes only the output tiles of its own tile rows.
                unsafe { block(tiling, geo, x, u, dst, r0, r, &mut buf, &epilogue) }
            })
        });
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
                Threads::One,
            );
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { write_outputs(tiling, geo, buf.m, 0..c_out, (r0, r), buf.y, out, epilogue) };
}

/// The output transform of tile rows `r0 .. r0 + r` (numbered image-major) for the output
/// channels `channels`, from their products `m[e][co − channels.start][j]`, then the epilogue.
///
/// # Safety
/// The output rows of those tile rows and channels must be the caller's alone.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn write_outputs(
    tiling: &Tiling,
    geo: &ConvGeometry,
    m: &[f32],
    channels: core::ops::Range<usize>,
    (r0, r): (usize, usize),
    y: &mut [f32],
    out: SendPtr,
    epilogue: &Epilogue<'_>,
) {
    let (th, tw) = tiling.tiles(geo);
    let (t, positions) = (r * tw, geo.positions());
    let stride = channels.len() * t;
    for (i, co) in channels.enumerate() {
        for row in 0..r {
            let (n, ty) = ((r0 + row) / th, (r0 + row) % th);
            let m = &m[i * t + row * tw..];
            let first = (n * geo.c_out + co) * positions + tiling.m * ty * geo.out_w;
            // SAFETY: output rows `m·ty ..` of plane (n, co) are the caller's.
            unsafe {
                (tiling.transform_output_row)(geo, m, stride, tw, y, out.0.add(first), ty);
                let rows = tiling.m.min(geo.out_h - tiling.m * ty);
                epilogue.finish_rows(out.0.add(first), 1, rows * geo.out_w, 0);
            };
        }
    }
}

/// `Aᵀ·M·A` (Aᵀ = [[1,1,1,0],[0,1,−1,−1]]) of every tile of one tile row, added onto
/// output rows `2·ty` and `2·ty + 1` (those inside the output) starting at `out`;
/// `m[e · stride + tx]` is product `e` of tile `tx`; `y` is scratch of `4 · tw`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::ops::ConvOptions;

    /// Values in [−1, 1) from a xorshift generator.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Direct convolution in f64, then `· scale`, `+ bias + residual` and the ReLU.
    fn direct(
        geo: &ConvGeometry,
        x: &[f32],
        (w, scale): (&[f32], Option<&[f32]>),
        bias: &[f32],
        epilogue: &Epilogue<'_>,
    ) -> Vec<f64> {
        let (oh, ow, [ph, pw]) = (geo.out_h, geo.out_w, geo.pad);
        let mut out = vec![0.0f64; geo.batch * geo.c_out * oh * ow];
        for n in 0..geo.batch {
            for co in 0..geo.c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = 0.0f64;
                        for ci in 0..geo.c_in {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let iy = (oy + ky) as isize - ph as isize;
                                    let ix = (ox + kx) as isize - pw as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy as usize >= geo.h
                                        || ix as usize >= geo.w
                                    {
                                        continue;
                                    }
                                    let xv = x[((n * geo.c_in + ci) * geo.h + iy as usize) * geo.w
                                        + ix as usize];
                                    let wv = w[((co * geo.c_in + ci) * 3 + ky) * 3 + kx];
                                    sum += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        let i = ((n * geo.c_out + co) * oh + oy) * ow + ox;
                        let mut y =
                            sum * scale.map_or(1.0, |s| f64::from(s[co])) + f64::from(bias[co]);
                        if let Some(r) = epilogue.residual {
                            y += f64::from(r[i]);
                        }
                        out[i] = if epilogue.relu { y.max(0.0) } else { y };
                    }
                }
            }
        }
        out
    }

    /// Both tilings through both drivers — with one block and several, the weight scaled or
    /// not, with and without the residual and ReLU — against direct convolution, on shapes
    /// below [`MIN_POSITIONS`] too (where the public path takes im2col instead).
    #[test]
    fn both_drivers_and_tilings_match_direct_convolution() {
        // (batch, c_in, h, w, c_out, padding)
        let shapes = [
            (1, 16, 7, 9, 20, 1),
            (2, 24, 9, 8, 40, 0),
            (3, 16, 3, 2, 16, 3),
            (3, 16, 30, 29, 24, 1),
            (1, 32, 32, 32, 48, 1),
        ];
        for (i, &(batch, c_in, h, w, c_out, pad)) in shapes.iter().enumerate() {
            let options = ConvOptions::new([1, 1], [pad, pad], [1, 1], 1);
            let geo = ConvGeometry::new([batch, c_in, h, w], [c_out, c_in, 3, 3], &options)
                .expect("a valid convolution");
            let seed = 10 * i as u64;
            let x = values(batch * c_in * h * w, seed + 1);
            let weight = values(c_out * c_in * 9, seed + 2);
            let scale = values(c_out, seed + 3);
            let bias = values(c_out, seed + 4);
            let residual = values(batch * c_out * geo.out_h * geo.out_w, seed + 5);
            for tiling in [&F2, &super::super::winograd4::F4] {
                let several = blocks(tiling, &geo).len() > 1;
                for driver in [Driver::Blocks, Driver::Channels] {
                    for scaled in [false, true] {
                        for fused in [false, true] {
                            let scale = scaled.then_some(&scale[..]);
                            let epilogue = Epilogue {
                                residual: fused.then_some(&residual[..]),
                                relu: fused,
                            };
                            let ours = conv2d_winograd(
                                tiling,
                                &geo,
                                &x,
                                (&weight, scale),
                                Some(&bias),
                                epilogue,
                                Some(driver),
                            );
                            let want = direct(&geo, &x, (&weight, scale), &bias, &epilogue);
                            let top = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                            let err = ours
                                .iter()
                                .zip(&want)
                                .fold(0.0f64, |m, (a, b)| m.max((f64::from(*a) - b).abs()))
                                / top;
                            let case = format!(
                                "shape {i}, m = {}, {driver:?} (several blocks: {several}), \
                                 scaled {scaled}, residual + ReLU {fused}",
                                tiling.m
                            );
                            assert!(err < 1e-5, "{case}: relative error {err:e}");
                        }
                    }
                }
            }
        }
    }
}
