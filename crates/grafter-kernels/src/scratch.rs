//! Per-thread scratch buffers kept from call to call.
//!
//! Why: the kernels' working buffers (im2col blocks, Winograd's transformed tiles and weights)
//! are megabytes each. Allocated per call, glibc serves them with `mmap` and returns them with
//! `munmap`, and every `munmap` in a multi-threaded process interrupts the other cores to flush
//! their TLBs: profiled on a 2-vCPU box, those interrupts took 13% of a ResNet-18 training
//! step. Kept per thread, each buffer is allocated once.
//!
//! Buffers are taken out of the thread's pool for the duration of a call and put back after,
//! so nested or re-entered kernels (a rayon thread that steals another kernel's task while it
//! waits) get buffers of their own. The contents are whatever the last user left: every
//! kernel overwrites what it reads.

use std::cell::RefCell;

/// Most bytes of scratch a thread keeps between calls; beyond it the largest buffers are freed.
const KEEP_BYTES: usize = 64 << 20;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `N` scratch slices of the given lengths (arbitrary contents).
pub(crate) fn with_scratch<const N: usize, R>(
    lens: [usize; N],
    f: impl FnOnce([&mut [f32]; N]) -> R,
) -> R {
    let mut buffers: [Vec<f32>; N] = lens.map(take);
    let slices = {
        let mut iter = buffers.iter_mut().zip(lens);
        core::array::from_fn(|_| {
            let (buffer, len) = iter.next().expect("one buffer per length");
            &mut buffer[..len]
        })
    };
    let result = f(slices);
    POOL.with_borrow_mut(|pool| {
        pool.extend(buffers.into_iter().filter(|b| b.capacity() > 0));
        pool.sort_by_key(Vec::capacity);
        let mut bytes: usize = pool.iter().map(|b| b.capacity() * 4).sum();
        while bytes > KEEP_BYTES {
            let Some(largest) = pool.pop() else { break };
            bytes -= largest.capacity() * 4;
        }
    });
    result
}

/// The smallest pooled buffer holding `len` elements, else a new one in place of the largest
/// (whose contents nobody reads: growing it would copy them), with length at least `len`; an
/// empty vector for `len` 0, leaving the pool's buffers to the requests that need them.
fn take(len: usize) -> Vec<f32> {
    if len == 0 {
        return Vec::new();
    }
    let mut buffer = POOL.with_borrow_mut(|pool| {
        // The pool is sorted by capacity.
        let fit = pool.iter().position(|b| b.capacity() >= len);
        match fit {
            Some(i) => pool.remove(i),
            None => pool.pop().unwrap_or_default(),
        }
    });
    if buffer.capacity() < len {
        buffer = Vec::new();
    }
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_calls_get_distinct_buffers_of_the_asked_lengths() {
        with_scratch([10, 3], |[a, b]| {
            a.fill(1.0);
            b.fill(2.0);
            with_scratch([10], |[c]| {
                c.fill(3.0);
                assert_eq!(c.len(), 10);
            });
            assert!(a.iter().all(|v| *v == 1.0));
            assert!(b.iter().all(|v| *v == 2.0));
        });
    }

    #[test]
    fn an_empty_request_leaves_the_pooled_buffer_to_the_one_that_needs_it() {
        let first = with_scratch([1000], |[a]| a.as_ptr() as usize);
        let again = with_scratch([0, 1000], |[empty, a]| {
            assert!(empty.is_empty());
            a.as_ptr() as usize
        });
        assert_eq!(first, again);
    }

    #[test]
    fn buffers_are_reused() {
        let first = with_scratch([1000], |[a]| a.as_ptr() as usize);
        let again = with_scratch([1000], |[a]| a.as_ptr() as usize);
        assert_eq!(first, again);
    }
}
