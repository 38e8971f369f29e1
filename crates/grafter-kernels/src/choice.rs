//! Which implementation grafter's layers run: its own CPU kernels (the default) or Burn's
//! reference ops, for bisecting a numerical difference or measuring the kernels' gain.

use std::sync::atomic::{AtomicU8, Ordering};

/// The implementation behind [`crate::conv2d`] and [`crate::max_pool2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// grafter's kernels on flex f32 tensors, Burn's ops everywhere else.
    Grafter,
    /// Burn's ops everywhere.
    Reference,
}

const UNSET: u8 = 0;
const GRAFTER: u8 = 1;
const REFERENCE: u8 = 2;

static CHOICE: AtomicU8 = AtomicU8::new(UNSET);

/// The implementation in force: the last [`set_kernels`], else the environment variable
/// `GRAFTER_KERNELS` (`reference` for Burn's ops; anything else, or unset, for grafter's).
pub fn kernels() -> Kernels {
    match CHOICE.load(Ordering::Relaxed) {
        GRAFTER => Kernels::Grafter,
        REFERENCE => Kernels::Reference,
        _ => {
            let from_env = match std::env::var("GRAFTER_KERNELS").as_deref() {
                Ok("reference") => Kernels::Reference,
                _ => Kernels::Grafter,
            };
            set_kernels(from_env);
            from_env
        }
    }
}

/// Chooses the implementation for the whole process (overrides `GRAFTER_KERNELS`).
pub fn set_kernels(kernels: Kernels) {
    let value = match kernels {
        Kernels::Grafter => GRAFTER,
        Kernels::Reference => REFERENCE,
    };
    CHOICE.store(value, Ordering::Relaxed);
}
