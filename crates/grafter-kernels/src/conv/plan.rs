//! How one convolution is cut into independent GEMM blocks and spread over threads.

use super::geometry::ConvGeometry;
use crate::gemm::Threads;

/// Elements of one im2col block (1 MiB of f32): small enough to stay in a core's L2 cache
/// between being written by im2col and read by the GEMM.
const COL_BLOCK_ELEMS: usize = 1 << 18;

/// Fewest output positions per block: below this the GEMM's packing of the weight costs more
/// than the cache misses a larger block would.
const MIN_POSITIONS: usize = 256;

/// One unit of work: output positions `p0 .. p0 + t` of image `n`, group `g`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub n: usize,
    pub g: usize,
    pub p0: usize,
    pub t: usize,
}

impl Block {
    /// The input planes of the block's image and group, in NCHW `x`.
    pub fn input<'a>(&self, geo: &ConvGeometry, x: &'a [f32]) -> &'a [f32] {
        let (c, plane) = (geo.c_in_g(), geo.plane());
        &x[(self.n * geo.c_in + self.g * c) * plane..][..c * plane]
    }

    /// The rows of the block's group in the weight `[c_out, k]`.
    pub fn weight<'a>(&self, geo: &ConvGeometry, weight: &'a [f32]) -> &'a [f32] {
        let (c, k) = (geo.c_out_g(), geo.k());
        &weight[self.g * c * k..][..c * k]
    }

    /// Where the block's first position of output channel `co` of its group lies in the NCHW
    /// output.
    pub fn output_at(&self, geo: &ConvGeometry, co: usize) -> usize {
        (self.n * geo.c_out + self.g * geo.c_out_g() + co) * geo.positions() + self.p0
    }
}

/// Positions per block for im2col rows of length `k`.
pub(crate) fn block_positions(geo: &ConvGeometry, k: usize) -> usize {
    let positions = geo.positions();
    let t = (COL_BLOCK_ELEMS / k.max(1)).max(MIN_POSITIONS);
    if t >= positions {
        positions
    } else {
        // Equal blocks: no short tail block.
        positions.div_ceil(positions.div_ceil(t))
    }
}

/// Every block of the convolution, image-major.
pub(crate) fn blocks(geo: &ConvGeometry, k: usize) -> Vec<Block> {
    let positions = geo.positions();
    let t = block_positions(geo, k);
    let mut out = Vec::with_capacity(geo.batch * geo.groups * positions.div_ceil(t));
    for n in 0..geo.batch {
        for g in 0..geo.groups {
            let mut p0 = 0;
            while p0 < positions {
                let len = t.min(positions - p0);
                out.push(Block { n, g, p0, t: len });
                p0 += len;
            }
        }
    }
    out
}

/// One block per thread when there are enough blocks to keep every thread busy; otherwise the
/// blocks run in turn and each GEMM uses every thread.
pub(crate) fn threads_for(tasks: usize) -> Threads {
    if tasks >= 2 * rayon::current_num_threads() {
        Threads::One
    } else {
        Threads::All
    }
}

/// Output channels per task when a convolution has too few blocks for one per thread and the
/// threads split its output channels instead: about two tasks per thread (rayon balances the
/// rest), a multiple of 16 (the GEMM micro-kernel's rows) and at most `most`.
pub(crate) fn channel_chunk(c_out: usize, most: usize) -> usize {
    let tasks = 2 * rayon::current_num_threads();
    c_out
        .div_ceil(tasks)
        .next_multiple_of(16)
        .min(most.max(16))
        .min(c_out)
        .max(1)
}
