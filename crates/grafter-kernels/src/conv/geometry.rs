//! The sizes of one 2-D convolution, derived once from the input, weight and options.

use burn::tensor::ops::ConvOptions;

/// Every size the convolution kernels need, for NCHW input `[n, c_in, h, w]` and weight
/// `[c_out, c_in / groups, kh, kw]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub groups: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Padding before the first row / column (the end padding only changes the output size).
    pub pad: [usize; 2],
    pub out_h: usize,
    pub out_w: usize,
}

impl ConvGeometry {
    /// The geometry, or `None` when the shapes do not form a convolution these kernels compute
    /// (then the caller uses Burn's own op, which reports the problem its own way).
    pub fn new(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> Option<Self> {
        let [batch, c_in, h, w] = x;
        let [c_out, c_per_group, kh, kw] = weight;
        let groups = options.groups;
        if groups == 0
            || c_in % groups != 0
            || c_out % groups != 0
            || c_in / groups != c_per_group
            || options.stride.contains(&0)
            || options.dilation.contains(&0)
            || [batch, c_in, h, w, c_out, kh, kw].contains(&0)
        {
            return None;
        }
        let out = |size: usize, k: usize, d: usize, s: usize, (begin, end): (usize, usize)| {
            let span = d.checked_mul(k - 1)? + 1;
            let padded = size.checked_add(begin)?.checked_add(end)?;
            padded.checked_sub(span).map(|room| room / s + 1)
        };
        let out_h = out(
            h,
            kh,
            options.dilation[0],
            options.stride[0],
            options.padding[0],
        )?;
        let out_w = out(
            w,
            kw,
            options.dilation[1],
            options.stride[1],
            options.padding[1],
        )?;
        batch
            .checked_mul(c_out)?
            .checked_mul(out_h)?
            .checked_mul(out_w)?;
        Some(Self {
            batch,
            c_in,
            h,
            w,
            c_out,
            groups,
            kh,
            kw,
            stride: options.stride,
            dilation: options.dilation,
            pad: [options.padding[0].0, options.padding[1].0],
            out_h,
            out_w,
        })
    }

    /// Input channels per group.
    pub fn c_in_g(&self) -> usize {
        self.c_in / self.groups
    }

    /// Output channels per group.
    pub fn c_out_g(&self) -> usize {
        self.c_out / self.groups
    }

    /// Rows of the im2col matrix per group: `c_in_g · kh · kw`.
    pub fn k(&self) -> usize {
        self.c_in_g() * self.kh * self.kw
    }

    /// Output positions per image.
    pub fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Input elements per image plane.
    pub fn plane(&self) -> usize {
        self.h * self.w
    }

    /// A 1×1 convolution with stride 1 and no padding reads the input as its own im2col matrix.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && self.out_h == self.h
            && self.out_w == self.w
    }

    /// Depthwise convolutions (one input channel per group) are left to flex's direct kernel,
    /// which is faster there than any GEMM formulation.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.c_in_g() == 1
    }
}
