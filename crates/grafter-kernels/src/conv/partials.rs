//! Weight gradients summed over fixed chunks of images, in a fixed order.
//!
//! Each chunk's partial gradient is computed on its own (in parallel, or in turn with every
//! thread inside its GEMMs), then the partials are added element by element in chunk order, so
//! the sum is the same bit for bit whatever rayon's scheduling (resuming a run bit-identically
//! relies on it). All partials live in one buffer allocated by the calling thread and first
//! touched by parallel writes: allocated per chunk inside rayon's workers, each came from the
//! worker's own glibc arena, whose 64 MiB heaps were mapped and unmapped again on every call —
//! fresh pages each time (a million page faults over six ResNet-50 steps).

use rayon::prelude::*;

use crate::gemm::Threads;
use crate::output::chunks_filled;

/// Most partial weight gradients summed at once (memory: one weight-sized buffer each).
pub(super) const WEIGHT_CHUNKS: usize = 8;

/// Elements per parallel task of the final sum.
const SUM_CHUNK: usize = 1 << 15;

/// `Σ_c partial(c)` over `chunks` partials of `len` elements, added in index order.
/// `partial(c, threads, dst)` adds chunk `c`'s gradient onto `dst` (zeros on entry) using
/// `threads` for its products: `Threads::One` when the chunks run in
/// parallel, `Threads::All` when they run in turn.
pub(super) fn sum_in_order(
    len: usize,
    chunks: usize,
    threads: Threads,
    partial: impl Fn(usize, Threads, &mut [f32]) + Sync,
) -> Vec<f32> {
    if chunks <= 1 || len == 0 {
        let mut dw = chunks_filled(len, SUM_CHUNK, |_, c| {
            c.fill(core::mem::MaybeUninit::new(0.0))
        });
        if chunks == 1 {
            partial(0, threads, &mut dw);
        }
        return dw;
    }
    let mut parts = chunks_filled(chunks * len, len, |_, c| {
        c.fill(core::mem::MaybeUninit::new(0.0))
    });
    match threads {
        Threads::One => parts
            .par_chunks_mut(len)
            .enumerate()
            .for_each(|(c, dst)| partial(c, Threads::One, dst)),
        Threads::All => parts
            .chunks_mut(len)
            .enumerate()
            .for_each(|(c, dst)| partial(c, Threads::All, dst)),
    }
    let parts = &parts;
    chunks_filled(len, SUM_CHUNK, |i, dst| {
        let at = i * SUM_CHUNK;
        for (j, d) in dst.iter_mut().enumerate() {
            let mut sum = parts[at + j];
            for c in 1..chunks {
                sum += parts[c * len + at + j];
            }
            d.write(sum);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partials_are_added_in_chunk_order() {
        let len = SUM_CHUNK + 5;
        let value =
            |c: usize, i: usize| ((c * 31 + i) as f32 * 0.37).sin() * 10f32.powi(c as i32 % 5);
        for (chunks, threads) in [(1, Threads::All), (3, Threads::One), (8, Threads::All)] {
            let got = sum_in_order(len, chunks, threads, |c, _, dst| {
                for (i, d) in dst.iter_mut().enumerate() {
                    *d += value(c, i);
                }
            });
            let want: Vec<f32> = (0..len)
                .map(|i| (1..chunks).fold(value(0, i), |s, c| s + value(c, i)))
                .collect();
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
        assert!(sum_in_order(0, 4, Threads::One, |_, _, _| unreachable!()).is_empty());
    }
}
