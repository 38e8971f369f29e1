//! Max-pooling: forward without indices for everything that will not be differentiated
//! (inference, frozen stages), where flex's own `max_pool2d` computes and stores an i64 argmax
//! per output element and then drops it; and for training a forward that keeps the argmax as
//! the tap's index inside its window (one byte instead of flex's eight) with the backward that
//! scatters the output gradient through it.

use rayon::prelude::*;

use crate::output::{chunks_filled, chunks_filled_beside, planes_filled};
use crate::pool_rows::{column_taps, pool_plane_rows};
use crate::pool_rows_argmax::pool_plane_rows_argmax;

/// The sizes of one max-pooling (symmetric padding, Burn's `max_pool2d` semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolGeometry {
    pub batch: usize,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
    pub out_h: usize,
    pub out_w: usize,
}

impl PoolGeometry {
    /// `None` for sizes Burn's op must judge itself (zero kernel or stride, a window larger
    /// than the padded input).
    pub fn new(
        x: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> Option<Self> {
        let [batch, channels, h, w] = x;
        if kernel.contains(&0) || stride.contains(&0) || dilation.contains(&0) || x.contains(&0) {
            return None;
        }
        let out = |size: usize, i: usize| -> Option<usize> {
            let span = dilation[i].checked_mul(kernel[i] - 1)? + 1;
            let room = (size + 2 * pad[i]).checked_sub(span)?;
            let mut out = if ceil_mode {
                room.div_ceil(stride[i]) + 1
            } else {
                room / stride[i] + 1
            };
            // PyTorch's rule: the last window must start inside the input or its left padding.
            if ceil_mode && (out - 1) * stride[i] >= size + pad[i] {
                out -= 1;
            }
            Some(out)
        };
        // Padding beyond half the window would leave windows reading only padding.
        if pad[0] > kernel[0] / 2 || pad[1] > kernel[1] / 2 {
            return None;
        }
        Some(Self {
            batch,
            channels,
            h,
            w,
            kernel,
            stride,
            pad,
            dilation,
            out_h: out(h, 0)?,
            out_w: out(w, 1)?,
        })
    }
}

/// Max over each window; NaN wins (as PyTorch and Burn), padding never does.
pub(crate) fn max_pool2d_forward(geo: &PoolGeometry, x: &[f32]) -> Vec<f32> {
    let (plane_in, plane_out) = (geo.h * geo.w, geo.out_h * geo.out_w);
    let cols = column_taps(geo);
    chunks_filled(geo.batch * geo.channels * plane_out, plane_out, |i, dst| {
        let src = &x[i * plane_in..(i + 1) * plane_in];
        let mut line = vec![0.0; geo.w];
        pool_plane_rows(geo, &cols, src, dst, &mut line);
    })
}

/// Most taps a window may have for its argmax to fit in a byte.
pub(crate) const MAX_ARGMAX_TAPS: usize = 256;

/// Max over each window and where it was: the tap `ty · kw + tx` of the window, for
/// [`max_pool2d_backward`]. Ties go to the first tap, NaN wins (as PyTorch and Burn).
pub(crate) fn max_pool2d_with_argmax(geo: &PoolGeometry, x: &[f32]) -> (Vec<f32>, Vec<u8>) {
    debug_assert!(geo.kernel[0] * geo.kernel[1] <= MAX_ARGMAX_TAPS);
    let (plane_in, plane_out) = (geo.h * geo.w, geo.out_h * geo.out_w);
    let len = geo.batch * geo.channels * plane_out;
    let cols = column_taps(geo);
    let mut argmax = vec![0u8; len];
    let out = chunks_filled_beside(len, plane_out, &mut argmax, |i, dst, arg| {
        let src = &x[i * plane_in..(i + 1) * plane_in];
        let (mut line, mut line_row) = (vec![0.0; geo.w], vec![0; geo.w]);
        pool_plane_rows_argmax(geo, &cols, src, dst, arg, &mut line, &mut line_row);
    });
    (out, argmax)
}

/// The input gradient of [`max_pool2d_with_argmax`]: each output's gradient added onto the
/// input element its window's maximum came from.
pub(crate) fn max_pool2d_backward(geo: &PoolGeometry, argmax: &[u8], dy: &[f32]) -> Vec<f32> {
    let (plane_in, plane_out) = (geo.h * geo.w, geo.out_h * geo.out_w);
    let [kw, sh, sw] = [geo.kernel[1], geo.stride[0], geo.stride[1]];
    let [ph, pw] = geo.pad;
    let [dh, dw] = geo.dilation;
    let mut dx = planes_filled(geo.batch * geo.channels, plane_in, |_| 0.0);
    dx.par_chunks_mut(plane_in)
        .zip(argmax.par_chunks(plane_out))
        .zip(dy.par_chunks(plane_out))
        .for_each(|((dst, arg), grad)| {
            for oy in 0..geo.out_h {
                for ox in 0..geo.out_w {
                    let o = oy * geo.out_w + ox;
                    let tap = arg[o] as usize;
                    let (ty, tx) = (tap / kw, tap % kw);
                    let iy = oy * sh + ty * dh - ph;
                    let ix = ox * sw + tx * dw - pw;
                    dst[iy * geo.w + ix] += grad[o];
                }
            }
        });
    dx
}

/// The valid kernel taps `[lo, hi)` of output index `o` along one axis.
pub(crate) fn taps(
    o: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
    size: usize,
) -> (usize, usize) {
    let start = (o * s) as isize - p as isize;
    let lo = if start < 0 {
        ((-start) as usize).div_ceil(d)
    } else {
        0
    };
    let hi = (0..k)
        .rev()
        .find(|&t| (start + (t * d) as isize) < size as isize)
        .map_or(0, |t| t + 1);
    (lo.min(hi), hi)
}
