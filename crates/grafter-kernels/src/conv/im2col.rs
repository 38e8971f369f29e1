//! im2col and its adjoint col2im, on NCHW planes, for a block of consecutive output positions.
//!
//! The column matrix of one (image, group) block is `[k, t]`, row `(ci, ky, kx)` in the same
//! order as the weight's `[c_out, c_in_g, kh, kw]`, so the weight multiplies it as it is stored
//! (no re-layout), and each row is the input plane shifted by one kernel tap: for stride 1
//! its stretches inside the image are plain copies. Every element is written (zeros for the
//! padding), so the buffer needs no clearing between calls.

use core::ops::Range;

use super::geometry::ConvGeometry;

/// A stretch of output positions (offsets into the block) for one kernel tap.
enum Stretch {
    /// Positions whose input pixel lies in the image; the first reads input row `iy`, column
    /// `ix0`, later ones step by the stride.
    Inside {
        cols: Range<usize>,
        iy: usize,
        ix0: usize,
    },
    /// Positions that read padding.
    Outside(Range<usize>),
}

/// Walks the output positions `p0 .. p0 + t` for the kernel tap `(ky, kx)`, one output row at a
/// time, calling `f` for each [`Stretch`] in order.
fn walk(geo: &ConvGeometry, p0: usize, t: usize, ky: usize, kx: usize, mut f: impl FnMut(Stretch)) {
    let [sh, sw] = geo.stride;
    let [dh, dw] = geo.dilation;
    let [ph, pw] = geo.pad;
    let tap_x = kx * dw;
    // Output columns whose input column `ox·sw + tap_x − pw` lies in [0, w).
    let lo_all = if pw > tap_x {
        (pw - tap_x).div_ceil(sw)
    } else {
        0
    };
    let hi_all = if geo.w + pw > tap_x {
        ((geo.w - 1 + pw - tap_x) / sw + 1).min(geo.out_w)
    } else {
        0
    };
    let end = p0 + t;
    let mut p = p0;
    while p < end {
        let oy = p / geo.out_w;
        let ox0 = p % geo.out_w;
        let ox1 = geo.out_w.min(ox0 + (end - p));
        let base = p - p0;
        let iy = (oy * sh + ky * dh) as isize - ph as isize;
        if iy < 0 || iy as usize >= geo.h {
            f(Stretch::Outside(base..base + (ox1 - ox0)));
        } else {
            let lo = lo_all.clamp(ox0, ox1);
            let hi = hi_all.clamp(lo, ox1);
            if lo > ox0 {
                f(Stretch::Outside(base..base + (lo - ox0)));
            }
            if hi > lo {
                f(Stretch::Inside {
                    cols: base + (lo - ox0)..base + (hi - ox0),
                    iy: iy as usize,
                    ix0: lo * sw + tap_x - pw,
                });
            }
            if ox1 > hi {
                f(Stretch::Outside(base + (hi - ox0)..base + (ox1 - ox0)));
            }
        }
        p += ox1 - ox0;
    }
}

/// Fills `col[k · t]` with the im2col block of positions `p0 .. p0 + t` from `x`, the
/// `c_in_g` input planes of one (image, group).
pub(crate) fn im2col(geo: &ConvGeometry, x: &[f32], p0: usize, t: usize, col: &mut [f32]) {
    let plane = geo.plane();
    let taps = geo.kh * geo.kw;
    for (src, rows) in x.chunks_exact(plane).zip(col.chunks_exact_mut(taps * t)) {
        im2col_channel(geo, src, p0, t, rows);
    }
}

/// The `kh · kw` rows of one input channel's plane `src` in the im2col block of positions
/// `p0 .. p0 + t`, into `rows[kh · kw · t]`.
pub(crate) fn im2col_channel(
    geo: &ConvGeometry,
    src: &[f32],
    p0: usize,
    t: usize,
    rows: &mut [f32],
) {
    let sw = geo.stride[1];
    for ky in 0..geo.kh {
        for kx in 0..geo.kw {
            let row = &mut rows[(ky * geo.kw + kx) * t..][..t];
            walk(geo, p0, t, ky, kx, |stretch| match stretch {
                Stretch::Inside { cols, iy, ix0 } => {
                    let line = &src[iy * geo.w..(iy + 1) * geo.w];
                    gather(&mut row[cols], &line[ix0..], sw);
                }
                Stretch::Outside(cols) => row[cols].fill(0.0),
            });
        }
    }
}

/// `dst[i] = src[i · stride]`: a copy for stride 1, and for stride 2 pairs taken whole, so
/// that the loop vectorises (a runtime stride leaves it a scalar gather).
fn gather(dst: &mut [f32], src: &[f32], stride: usize) {
    match stride {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => {
            // The last element's pair may run past the row: take it alone.
            let Some((last, body)) = dst.split_last_mut() else {
                return;
            };
            let pairs = src[..2 * body.len()].chunks_exact(2);
            for (d, pair) in body.iter_mut().zip(pairs) {
                *d = pair[0];
            }
            *last = src[2 * body.len()];
        }
        _ => {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = src[i * stride];
            }
        }
    }
}

/// Adds the im2col block `col[k · t]` of positions `p0 .. p0 + t` back onto the `c_in_g` input
/// planes `dx` of one (image, group): the adjoint of [`im2col`], i.e. the input gradient.
pub(crate) fn col2im_add(geo: &ConvGeometry, col: &[f32], p0: usize, t: usize, dx: &mut [f32]) {
    let plane = geo.plane();
    let sw = geo.stride[1];
    for ci in 0..geo.c_in_g() {
        let dst = &mut dx[ci * plane..(ci + 1) * plane];
        for ky in 0..geo.kh {
            for kx in 0..geo.kw {
                let r = (ci * geo.kh + ky) * geo.kw + kx;
                let row = &col[r * t..(r + 1) * t];
                walk(geo, p0, t, ky, kx, |stretch| {
                    if let Stretch::Inside { cols, iy, ix0 } = stretch {
                        let line = &mut dst[iy * geo.w..(iy + 1) * geo.w];
                        let src = &row[cols];
                        if sw == 1 {
                            for (d, s) in line[ix0..ix0 + src.len()].iter_mut().zip(src) {
                                *d += *s;
                            }
                        } else {
                            for (i, s) in src.iter().enumerate() {
                                line[ix0 + i * sw] += *s;
                            }
                        }
                    }
                });
            }
        }
    }
}
