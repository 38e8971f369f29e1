//! How closely grafter's 3×3 convolutions follow direct convolution: the trade between
//! Winograd tilings, chosen for the whole process like PyTorch's
//! `torch.set_float32_matmul_precision`.
//!
//! Why a choice: F(4×4, 3×3) does 1.78× fewer multiplications than F(2×2, 3×3) but its larger
//! transform constants cost accuracy — per layer a few 1e-6 (64 channels) to 2e-5 (512
//! channels) of the largest output against direct convolution, where F(2×2, 3×3) stays within
//! about 1e-6 (crates/grafter-kernels/tests/reference/conv.rs). End to end both are within
//! onnxruntime's 1e-4 (the parity tests); `Highest` is for users comparing layer outputs with
//! another engine's closely, or bisecting a difference.

use crate::setting::Setting;

/// The accuracy of the forward (and input-gradient) 3×3 convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvPrecision {
    /// Winograd F(4×4, 3×3) on the maps where it is the faster tiling (28×28 and larger),
    /// F(2×2, 3×3) elsewhere (the default).
    High,
    /// Winograd F(2×2, 3×3) only: results within about 1e-6 of direct convolution.
    Highest,
}

const HIGH: u8 = 1;
const HIGHEST: u8 = 2;

static PRECISION: Setting = Setting::new("GRAFTER_CONV_PRECISION");

/// The precision in force: the last [`set_conv_precision`], else the environment variable
/// `GRAFTER_CONV_PRECISION` (`highest`; anything else, or unset, for `High`).
///
/// ```
/// use grafter_kernels::{ConvPrecision, conv_precision, set_conv_precision};
///
/// set_conv_precision(ConvPrecision::Highest);
/// assert_eq!(conv_precision(), ConvPrecision::Highest);
/// ```
pub fn conv_precision() -> ConvPrecision {
    let from_env = |var: Option<&str>| match var {
        Some("highest") => HIGHEST,
        _ => HIGH,
    };
    match PRECISION.get(from_env) {
        HIGHEST => ConvPrecision::Highest,
        _ => ConvPrecision::High,
    }
}

/// Chooses the precision for the whole process (overrides `GRAFTER_CONV_PRECISION`).
pub fn set_conv_precision(precision: ConvPrecision) {
    PRECISION.set(match precision {
        ConvPrecision::High => HIGH,
        ConvPrecision::Highest => HIGHEST,
    });
}
