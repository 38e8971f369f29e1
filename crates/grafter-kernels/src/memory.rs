//! Freed memory kept by the process for its next allocations instead of handed back to the OS.
//!
//! Why: an activation of a ResNet-50 at batch 32 is up to 100 MB. glibc serves every
//! allocation above its mmap threshold (at most 32 MiB) with a fresh `mmap` and hands it back
//! with `munmap` when it is freed, so every layer writes its output into new pages: a page
//! fault and a page zeroed by the kernel for each 4 KiB, every layer, every batch. On the
//! project's 2-vCPU box a ResNet-50 forward at batch 32 took 1370 ms under glibc's policy and
//! 1174 ms under this one (same binary; page faults of the profile run 5.2 → 2.1 million, the
//! rest being the first growth of the heap; docs/BENCHMARKS.md). onnxruntime's arena and
//! PyTorch's caching allocators keep freed memory for the same reason. Here allocations are
//! served from the heap (`M_MMAP_MAX` 0) and its top is trimmed only beyond
//! [`TRIM_THRESHOLD`], so a freed activation's pages are reused by the next one: blocks of any
//! size allocated by the main thread, blocks up to a thread arena's 64 MiB heap by other
//! threads (glibc maps larger ones there whatever its settings).
//!
//! The setting is the process's (the C allocator has one policy), so it is applied once, when
//! grafter's kernels first run on the CPU, unless [`set_keep_freed_memory`] chose otherwise or
//! `GRAFTER_KEEP_FREED_MEMORY=0` is set. The resident size stays at its peak after a large
//! batch; [`release_freed_memory`] hands the kept memory back. Only glibc has these controls:
//! elsewhere the functions do nothing.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::setting::Setting;

/// Free memory at the top of the heap beyond which glibc still hands it back to the OS (2 GiB,
/// the most `mallopt` takes): an allocation spike far above the working set is not kept.
pub const TRIM_THRESHOLD: usize = i32::MAX as usize;

const KEEP: u8 = 1;
const RETURN: u8 = 2;

static SETTING: Setting = Setting::new("GRAFTER_KEEP_FREED_MEMORY");
static APPLIED: Once = Once::new();
/// Whether glibc's parameters are the keeping ones now.
static KEPT: AtomicBool = AtomicBool::new(false);

/// Whether freed memory is kept for reuse (the default; see the module docs). Reads
/// `GRAFTER_KEEP_FREED_MEMORY` (`0`, `false` or `off`: hand it back) on first use.
pub fn keeps_freed_memory() -> bool {
    SETTING.get(|var| match var.map(str::trim) {
        Some("0" | "false" | "off") => RETURN,
        _ => KEEP,
    }) == KEEP
}

/// Keeps freed memory for reuse (`true`, the default) or leaves glibc's own policy (`false`),
/// for the whole process, from now on. Turned off after it was in force, large blocks go
/// straight back to the OS again (glibc's starting thresholds; its adaptive mmap threshold
/// does not come back).
///
/// ```
/// grafter_kernels::set_keep_freed_memory(false);
/// assert!(!grafter_kernels::keeps_freed_memory());
/// grafter_kernels::set_keep_freed_memory(true);
/// assert!(grafter_kernels::keeps_freed_memory());
/// ```
pub fn set_keep_freed_memory(keep: bool) {
    SETTING.set(if keep { KEEP } else { RETURN });
    // A later first kernel call must not apply the setting again over this one.
    APPLIED.call_once(|| {});
    if keep || KEPT.load(Ordering::Relaxed) {
        apply(keep);
    }
}

/// Hands the memory kept by [`set_keep_freed_memory`] back to the OS (glibc's `malloc_trim`),
/// e.g. after a training run in a process that goes on with other work. Returns whether any was.
pub fn release_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Applies the setting in force once per process (called on the kernels' first use): keeping
/// changes glibc's parameters, not keeping leaves them alone.
pub(crate) fn apply_once() {
    APPLIED.call_once(|| {
        if keeps_freed_memory() {
            apply(true);
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply(keep: bool) {
    KEPT.store(keep, Ordering::Relaxed);
    // glibc's defaults: up to 65 536 mmap'd blocks, 128 KiB trim threshold (its dynamic
    // thresholds are not restored; these are the values it starts from).
    let (mmap_max, trim) = if keep {
        (0, TRIM_THRESHOLD as libc::c_int)
    } else {
        (65_536, 128 * 1024)
    };
    // SAFETY: mallopt only sets the allocator's parameters; it takes the allocator's lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, mmap_max);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply(keep: bool) {
    KEPT.store(keep, Ordering::Relaxed);
}
