//! Output buffers whose every page is first touched by a write.
//!
//! Why: `vec![0.0; n]` gets fresh zero pages from the kernel; a kernel that then adds onto them
//! (`+=`, as Winograd's output transform and col2im do) reads each page first, which maps the
//! shared zero page, and its first write then swaps in a private page and flushes the TLB of
//! every core running the process (an inter-processor interrupt per 4 KiB page). Profiled on a
//! 2-vCPU box, those flushes took 13% of a ResNet-18 training step. Filling the buffer in
//! parallel writes every page first: one ordinary page fault each, spread over the threads.

use core::mem::MaybeUninit;

use rayon::prelude::*;

/// `planes · plane_len` elements, plane `i` filled with `value(i)`.
pub(crate) fn planes_filled(
    planes: usize,
    plane_len: usize,
    value: impl Fn(usize) -> f32 + Sync,
) -> Vec<f32> {
    chunks_filled(planes * plane_len, plane_len, |i, plane| {
        plane.fill(MaybeUninit::new(value(i)))
    })
}

/// `len` elements written in parallel chunks of `chunk` elements (the last may be shorter):
/// `fill(i, chunk_i)` must initialise every element of chunk `i`.
pub(crate) fn chunks_filled(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    chunks_filled_beside(len, chunk, &mut [(); 0], |i, c, _| fill(i, c))
}

/// As [`chunks_filled`], with chunk `i` of `beside` (cut into chunks of the same length, so
/// `beside` is as long as the output or empty) handed to `fill` too, for kernels with a second
/// output.
pub(crate) fn chunks_filled_beside<T: Send>(
    len: usize,
    chunk: usize,
    beside: &mut [T],
    fill: impl Fn(usize, &mut [MaybeUninit<f32>], &mut [T]) + Sync,
) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if len > 0 {
        // (`par_chunks_mut` panics on a zero `chunk`.)
        let chunks = out.spare_capacity_mut()[..len].par_chunks_mut(chunk);
        if beside.is_empty() {
            chunks.enumerate().for_each(|(i, c)| fill(i, c, &mut []));
        } else {
            assert_eq!(beside.len(), len, "one element beside each output element");
            chunks
                .zip(beside.par_chunks_mut(chunk))
                .enumerate()
                .for_each(|(i, (c, b))| fill(i, c, b));
        }
    }
    // SAFETY: `fill` initialised every element of every chunk, and the chunks cover `len`.
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_plane_holds_its_value() {
        let v = super::planes_filled(3, 4, |i| i as f32);
        assert_eq!(v, [0., 0., 0., 0., 1., 1., 1., 1., 2., 2., 2., 2.]);
        assert!(super::planes_filled(0, 5, |_| 1.0).is_empty());
        assert!(super::planes_filled(5, 0, |_| 1.0).is_empty());
    }
}
