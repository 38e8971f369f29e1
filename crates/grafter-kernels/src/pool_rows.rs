//! The max-pooling forward of one plane as two passes per output row, both over contiguous
//! memory: the element-wise maximum of the window's input rows, then the strided maximum
//! along that row.
//!
//! Why: a window-by-window loop re-derives each tap's bounds and branches on NaN for every
//! tap, which keeps it scalar. Here the vertical pass is a select over whole rows that LLVM
//! vectorises, and the horizontal pass runs a fixed-size window (compile-time kernel width
//! and stride for the common shapes) over the outputs whose every tap lies inside the row;
//! only the few border outputs check their taps.

use core::mem::MaybeUninit;

use crate::pool::{PoolGeometry, taps};

/// Whichever of `m` (the maximum so far) and `v` wins a max-pooling comparison: the larger,
/// and a NaN over anything. A plain select, so loops of it vectorise.
#[inline(always)]
fn pick(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() { v } else { m }
}

/// The valid taps `[lo, hi)` of every output column, computed once per pooling.
pub(crate) fn column_taps(geo: &PoolGeometry) -> Vec<(usize, usize)> {
    let [kw, sw, pw, dw] = [geo.kernel[1], geo.stride[1], geo.pad[1], geo.dilation[1]];
    (0..geo.out_w)
        .map(|ox| taps(ox, kw, sw, pw, dw, geo.w))
        .collect()
}

/// Max-pools one input plane `src` into `dst`, using `line` (`w` elements) as scratch for
/// the vertical maximum; `cols` from [`column_taps`].
pub(crate) fn pool_plane_rows(
    geo: &PoolGeometry,
    cols: &[(usize, usize)],
    src: &[f32],
    dst: &mut [MaybeUninit<f32>],
    line: &mut [f32],
) {
    let [kh, sh, ph, dh] = [geo.kernel[0], geo.stride[0], geo.pad[0], geo.dilation[0]];
    let w = geo.w;
    // Output columns whose every tap lies inside the row: one contiguous range.
    let full = |&(lo, hi): &(usize, usize)| lo == 0 && hi == geo.kernel[1];
    let first = cols.iter().position(full).unwrap_or(geo.out_w);
    let end = first + cols[first..].iter().take_while(|c| full(c)).count();
    for (oy, out) in dst.chunks_exact_mut(geo.out_w).enumerate() {
        let (ty0, ty1) = taps(oy, kh, sh, ph, dh, geo.h);
        let row = |ty: usize| {
            let iy = oy * sh + ty * dh - ph;
            &src[iy * w..(iy + 1) * w]
        };
        if ty0 == ty1 {
            line.fill(f32::NEG_INFINITY);
        } else {
            line.copy_from_slice(row(ty0));
            for ty in ty0 + 1..ty1 {
                for (m, &v) in line.iter_mut().zip(row(ty)) {
                    *m = pick(*m, v);
                }
            }
        }
        for ox in (0..first).chain(end..geo.out_w) {
            let (lo, hi) = cols[ox];
            let x0 = ox * geo.stride[1];
            let m = (lo..hi)
                .map(|tx| line[x0 + tx * geo.dilation[1] - geo.pad[1]])
                .fold(f32::NEG_INFINITY, pick);
            out[ox] = MaybeUninit::new(m);
        }
        if end > first {
            let start = first * geo.stride[1] - geo.pad[1];
            interior(geo, &line[start..], &mut out[first..end]);
        }
    }
}

/// The horizontal maximum of the outputs whose taps all lie in `line` (which starts at the
/// first tap of the first output).
fn interior(geo: &PoolGeometry, line: &[f32], out: &mut [MaybeUninit<f32>]) {
    match (geo.kernel[1], geo.stride[1], geo.dilation[1]) {
        (3, 2, 1) => windows::<3, 2>(line, out),
        (2, 2, 1) => windows::<2, 2>(line, out),
        (3, 1, 1) => windows::<3, 1>(line, out),
        (kw, sw, dw) => {
            for (ox, o) in out.iter_mut().enumerate() {
                let m = (0..kw)
                    .map(|tx| line[ox * sw + tx * dw])
                    .fold(f32::NEG_INFINITY, pick);
                *o = MaybeUninit::new(m);
            }
        }
    }
}

/// Windows of `K` consecutive elements, `S` apart: sizes known at compile time, so the loop
/// has no bounds checks inside and vectorises with interleaved loads.
fn windows<const K: usize, const S: usize>(line: &[f32], out: &mut [MaybeUninit<f32>]) {
    let n = out.len();
    let line = &line[..(n - 1) * S + K];
    for (ox, o) in out.iter_mut().enumerate() {
        let window: &[f32; K] = line[ox * S..ox * S + K].try_into().expect("K elements");
        let m = window[1..].iter().fold(window[0], |m, &v| pick(m, v));
        *o = MaybeUninit::new(m);
    }
}
