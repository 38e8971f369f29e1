//! Freed memory is kept for reuse once the kernels have run on the CPU, and handed back to the
//! OS when asked (its own test binary: the allocator's policy is process-wide).

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};

/// Page faults this process has taken so far.
fn minor_faults() -> i64 {
    // SAFETY: getrusage writes the struct it is given.
    unsafe {
        let mut usage: libc::rusage = core::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage.ru_minflt
    }
}

/// Page faults taken by writing a fresh 48 MiB buffer (over glibc's largest mmap threshold,
/// within a thread arena's 64 MiB heap: tests run on their own threads), right after one was
/// freed.
fn faults_of_a_reallocated_buffer() -> i64 {
    const LEN: usize = 12 << 20;
    drop(std::hint::black_box(vec![1.0f32; LEN]));
    let before = minor_faults();
    drop(std::hint::black_box(vec![2.0f32; LEN]));
    minor_faults() - before
}

#[test]
fn the_kernels_keep_freed_memory_until_told_otherwise() {
    if std::env::var_os("GRAFTER_KEEP_FREED_MEMORY").is_none() {
        assert!(grafter_kernels::keeps_freed_memory());
    }
    // glibc's own policy: the block is mapped afresh each time, 12 288 pages to fault.
    let untouched = faults_of_a_reallocated_buffer();
    assert!(
        untouched > 10_000,
        "{untouched} page faults under glibc's policy"
    );

    // The first kernel call applies the setting (chosen here only when the environment
    // turned it off).
    if !grafter_kernels::keeps_freed_memory() {
        grafter_kernels::set_keep_freed_memory(true);
    }
    let device = Device::flex();
    let x = Tensor::<4>::random([1, 4, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<4>::random([4, 4, 3, 3], Distribution::Normal(0.0, 1.0), &device);
    drop(grafter_kernels::conv2d(
        x,
        w,
        None,
        ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
    ));
    let kept = faults_of_a_reallocated_buffer();
    assert!(
        kept < untouched / 10,
        "{kept} page faults with freed memory kept, {untouched} without"
    );
    assert!(grafter_kernels::release_freed_memory());

    grafter_kernels::set_keep_freed_memory(false);
    assert!(!grafter_kernels::keeps_freed_memory());
    let returned = faults_of_a_reallocated_buffer();
    assert!(
        returned > 10_000,
        "{returned} page faults after turning it off"
    );
}
