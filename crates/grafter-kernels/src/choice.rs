//! Which implementation grafter's layers run: its own CPU kernels (the default) or Burn's
//! reference ops, for bisecting a numerical difference or measuring the kernels' gain.

use crate::setting::Setting;

/// The implementation behind [`crate::conv2d`] and [`crate::max_pool2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// grafter's kernels on flex f32 tensors, Burn's ops everywhere else.
    Grafter,
    /// Burn's ops everywhere.
    Reference,
}

const GRAFTER: u8 = 1;
const REFERENCE: u8 = 2;

static CHOICE: Setting = Setting::new("GRAFTER_KERNELS");

/// The implementation in force: the last [`set_kernels`], else the environment variable
/// `GRAFTER_KERNELS` (`reference` for Burn's ops; anything else, or unset, for grafter's).
pub fn kernels() -> Kernels {
    let from_env = |var: Option<&str>| match var {
        Some("reference") => REFERENCE,
        _ => GRAFTER,
    };
    match CHOICE.get(from_env) {
        REFERENCE => Kernels::Reference,
        _ => Kernels::Grafter,
    }
}

/// Chooses the implementation for the whole process (overrides `GRAFTER_KERNELS`).
pub fn set_kernels(kernels: Kernels) {
    CHOICE.set(match kernels {
        Kernels::Grafter => GRAFTER,
        Kernels::Reference => REFERENCE,
    });
}
