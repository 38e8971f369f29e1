//! The max-pooling forward that keeps its argmax, by rows as [`crate::pool_rows`]: the
//! vertical pass keeps, per input column, the first row holding the column's maximum, the
//! horizontal pass picks among the window's columns by value and then by tap index.
//!
//! The tap index of `(ty, tx)` is `ty · kw + tx`, and the result is the one a scan of the
//! window in that order gives: a NaN over any number, the first NaN among NaNs, the first tap
//! among equal maxima. Column by column, the vertical pass gives each column's first winner;
//! among the columns' winners the smallest index then breaks ties.

use core::mem::MaybeUninit;

use crate::pool::{PoolGeometry, taps};

/// Whether the tap `(v, iv)` beats the best so far `(m, im)` in a scan by tap index (see the
/// module docs). Non-short-circuit operators, so that it compiles to selects.
#[inline(always)]
fn beats(v: f32, iv: u32, m: f32, im: u32) -> bool {
    (v > m) | ((v == m) & (iv < im)) | (v.is_nan() & (!m.is_nan() | (iv < im)))
}

/// Max-pools one input plane `src` into `dst` and `arg` (the winning tap of each window),
/// using `line` and `line_row` (`w` elements each) as scratch for the vertical pass; `cols`
/// from [`crate::pool_rows::column_taps`].
pub(crate) fn pool_plane_rows_argmax(
    geo: &PoolGeometry,
    cols: &[(usize, usize)],
    src: &[f32],
    dst: &mut [MaybeUninit<f32>],
    arg: &mut [u8],
    line: &mut [f32],
    line_row: &mut [u32],
) {
    let [kh, sh, ph, dh] = [geo.kernel[0], geo.stride[0], geo.pad[0], geo.dilation[0]];
    let [kw, sw, pw, dw] = [geo.kernel[1], geo.stride[1], geo.pad[1], geo.dilation[1]];
    let w = geo.w;
    let full = |&(lo, hi): &(usize, usize)| lo == 0 && hi == kw;
    let first = cols.iter().position(full).unwrap_or(geo.out_w);
    let end = first + cols[first..].iter().take_while(|c| full(c)).count();
    // Interior outputs (every tap inside the line) of the common windows, compiled for them.
    type Windows = fn(&[f32], &[u32], &mut [MaybeUninit<f32>], &mut [u8]);
    let compiled = match (kw, sw, dw) {
        (3, 2, 1) => Some(windows::<3, 2> as Windows),
        (2, 2, 1) => Some(windows::<2, 2> as Windows),
        (3, 1, 1) => Some(windows::<3, 1> as Windows),
        _ => None,
    }
    .filter(|_| end > first);
    let (skip_from, skip_to) = match compiled {
        Some(_) => (first, end),
        None => (geo.out_w, geo.out_w),
    };
    let rows_out = dst
        .chunks_exact_mut(geo.out_w)
        .zip(arg.chunks_exact_mut(geo.out_w));
    for (oy, (out, at)) in rows_out.enumerate() {
        let (ty0, ty1) = taps(oy, kh, sh, ph, dh, geo.h);
        let row = |ty: usize| {
            let iy = oy * sh + ty * dh - ph;
            &src[iy * w..(iy + 1) * w]
        };
        line_row.fill(ty0 as u32);
        if ty0 == ty1 {
            line.fill(f32::NEG_INFINITY);
        } else {
            line.copy_from_slice(row(ty0));
            for ty in ty0 + 1..ty1 {
                let ty = ty as u32;
                for ((m, r), &v) in line
                    .iter_mut()
                    .zip(line_row.iter_mut())
                    .zip(row(ty as usize))
                {
                    // The later row wins only when strictly better: first maximum, first NaN.
                    let wins = (v > *m) | (v.is_nan() & !m.is_nan());
                    *m = if wins { v } else { *m };
                    *r = if wins { ty } else { *r };
                }
            }
        }
        let tap = |x: usize, tx: usize| (line[x], line_row[x] * kw as u32 + tx as u32);
        // Outputs outside the compiled windows' run: their taps `cols[ox]`, any window.
        for ox in (0..skip_from).chain(skip_to..geo.out_w) {
            let (lo, hi) = cols[ox];
            let x0 = ox * sw;
            let mut best = (f32::NEG_INFINITY, (ty0 * kw + lo) as u32);
            for tx in lo..hi {
                let (v, iv) = tap(x0 + tx * dw - pw, tx);
                if tx == lo || beats(v, iv, best.0, best.1) {
                    best = (v, iv);
                }
            }
            out[ox] = MaybeUninit::new(best.0);
            at[ox] = best.1 as u8;
        }
        if let Some(windows) = compiled {
            let start = first * sw - pw;
            let (out, at) = (&mut out[first..end], &mut at[first..end]);
            windows(&line[start..], &line_row[start..], out, at);
        }
    }
}

/// The outputs whose taps all lie in `line` (which starts at the first tap of the first
/// output; `line_row` holds each column's winning row): windows of `K` consecutive columns,
/// `S` apart, sizes known at compile time so the loop has no bounds checks inside.
fn windows<const K: usize, const S: usize>(
    line: &[f32],
    line_row: &[u32],
    out: &mut [MaybeUninit<f32>],
    at: &mut [u8],
) {
    let n = out.len();
    let (line, line_row) = (&line[..(n - 1) * S + K], &line_row[..(n - 1) * S + K]);
    for (ox, (o, a)) in out.iter_mut().zip(at.iter_mut()).enumerate() {
        let values: &[f32; K] = line[ox * S..ox * S + K].try_into().expect("K elements");
        let rows: &[u32; K] = line_row[ox * S..ox * S + K].try_into().expect("K elements");
        let mut best = (values[0], rows[0] * K as u32);
        for tx in 1..K {
            let (v, iv) = (values[tx], rows[tx] * K as u32 + tx as u32);
            if beats(v, iv, best.0, best.1) {
                best = (v, iv);
            }
        }
        *o = MaybeUninit::new(best.0);
        *a = best.1 as u8;
    }
}
