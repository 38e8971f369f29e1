//! `auto_pad` SAME_UPPER / SAME_LOWER, what tf2onnx writes for Keras' `padding="same"`: the
//! output is `ceil(input / stride)`, padded evenly with the odd pixel at the end (UPPER) or
//! the start (LOWER). With stride 1 the total padding is `(k − 1)·d` whatever the input size,
//! so it becomes fixed explicit pads and the graph runs at any size. With a larger stride the
//! padding depends on the input size modulo the stride, which a graph of dynamic size only
//! knows at run time (and fixing it for one size would be silently wrong at another): that
//! is refused. Keras' own applications pad their strided convolutions explicitly
//! (`ZeroPadding2D` + `valid`), which tf2onnx writes as explicit pads or a `Pad`.

use onnx_ir::padding::{AutoPad, PaddingConfig2d};

use crate::graph::Pads;

/// The explicit `[top, left, bottom, right]` pads of a Conv or pool, or what cannot be
/// translated (the caller records it as an unsupported operator).
pub(super) fn resolve(
    auto_pad: &AutoPad,
    explicit: &PaddingConfig2d,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> Result<Pads, &'static str> {
    let upper = match auto_pad {
        AutoPad::NotSet => return Ok(super::pads4(explicit)),
        AutoPad::Valid => return Ok([0; 4]),
        AutoPad::SameUpper => true,
        AutoPad::SameLower => false,
    };
    if stride != [1, 1] {
        return Err("auto_pad SAME with a stride > 1 (padding depends on the input size)");
    }
    let mut pads = [0; 4];
    for axis in 0..2 {
        // the span of the dilated kernel less one; absurd sizes are refused by the pad check
        let total = kernel[axis]
            .saturating_sub(1)
            .saturating_mul(dilation[axis]);
        let (small, large) = (total / 2, total - total / 2);
        (pads[axis], pads[axis + 2]) = if upper {
            (small, large)
        } else {
            (large, small)
        };
    }
    Ok(pads)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: PaddingConfig2d = PaddingConfig2d::Valid;

    #[test]
    fn same_at_stride_one_pads_the_dilated_kernel_span_odd_pixel_last_or_first() {
        let same = |a, k, d| resolve(&a, &NONE, k, [1, 1], d).unwrap();
        assert_eq!(same(AutoPad::SameUpper, [3, 5], [1, 1]), [1, 2, 1, 2]);
        assert_eq!(same(AutoPad::SameUpper, [1, 1], [1, 1]), [0; 4]);
        // even kernels (and dilation) leave an odd total: UPPER puts it at the end
        assert_eq!(same(AutoPad::SameUpper, [2, 4], [1, 1]), [0, 1, 1, 2]);
        assert_eq!(same(AutoPad::SameLower, [2, 4], [1, 1]), [1, 2, 0, 1]);
        assert_eq!(same(AutoPad::SameUpper, [3, 2], [2, 3]), [2, 1, 2, 2]);
    }

    #[test]
    fn explicit_and_valid_pads_pass_through_and_strided_same_is_refused() {
        let explicit = PaddingConfig2d::Explicit(0, 0, 1, 1);
        let p = resolve(&AutoPad::NotSet, &explicit, [3, 3], [2, 2], [1, 1]);
        assert_eq!(p.unwrap(), [0, 0, 1, 1]);
        assert_eq!(
            resolve(&AutoPad::Valid, &explicit, [3, 3], [1, 1], [1, 1]).unwrap(),
            [0; 4]
        );
        let err = resolve(&AutoPad::SameUpper, &NONE, [3, 3], [2, 1], [1, 1]).unwrap_err();
        assert!(err.contains("stride > 1"), "{err}");
        let huge = resolve(
            &AutoPad::SameUpper,
            &NONE,
            [usize::MAX; 2],
            [1, 1],
            [usize::MAX; 2],
        );
        assert!(crate::validate::pads(&huge.unwrap()).is_err());
    }
}
