//! The input gradient of a stride-1, undilated, ungrouped convolution is itself a convolution:
//! of the output gradient with the weight flipped in space and with input and output channels
//! swapped, padded by `k − 1 − p`. Running it through the forward kernels (Winograd included)
//! replaces the GEMM + col2im scatter of the general input gradient.

use burn::tensor::ops::ConvOptions;

use super::geometry::ConvGeometry;

/// The forward convolution computing `geo`'s input gradient, and its weight; `None` where the
/// identity does not hold (stride or dilation above 1, groups, padding of `k` or more).
pub(crate) fn input_grad_as_forward(
    geo: &ConvGeometry,
    options: &ConvOptions<2>,
    weight: &[f32],
) -> Option<(ConvGeometry, Vec<f32>)> {
    if geo.stride != [1, 1] || geo.dilation != [1, 1] || geo.groups != 1 {
        return None;
    }
    let k = [geo.kh, geo.kw];
    let mut padding = [(0, 0); 2];
    for axis in 0..2 {
        let (begin, end) = options.padding[axis];
        padding[axis] = (
            k[axis].checked_sub(1 + begin)?,
            k[axis].checked_sub(1 + end)?,
        );
    }
    let flipped_options = ConvOptions::new_with_padding([1, 1], padding, [1, 1], 1);
    let flipped = ConvGeometry::new(
        [geo.batch, geo.c_out, geo.out_h, geo.out_w],
        [geo.c_in, geo.c_out, geo.kh, geo.kw],
        &flipped_options,
    )?;
    if [flipped.out_h, flipped.out_w] != [geo.h, geo.w] {
        return None;
    }
    let taps = geo.kh * geo.kw;
    let mut w = vec![0.0f32; weight.len()];
    for co in 0..geo.c_out {
        for ci in 0..geo.c_in {
            let src = &weight[(co * geo.c_in + ci) * taps..][..taps];
            let dst = &mut w[(ci * geo.c_out + co) * taps..][..taps];
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    }
    Some((flipped, w))
}
