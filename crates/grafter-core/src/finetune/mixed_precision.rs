//! Mixed-precision training: PyTorch's `autocast` + `GradScaler`, Keras' `mixed_float16`.
//!
//! Burn 0.22 has no autocast switch, but its autodiff tracks `cast`. So the loop keeps the
//! f32 parameters as the *master* weights and, for every step, casts a copy of the model to
//! f16 or bf16 (the cast is part of the graph): forward and backward run in half precision,
//! the gradients arrive on the f32 masters in f32, and the optimiser updates f32 weights and
//! f32 moments. The logits are cast back to f32 before the loss.
//!
//! f16's range is small (largest 65504, smallest normal 6.1e-5), so small gradients would
//! flush to zero: the loss is multiplied by a scale before backward and the gradients divided
//! by it after. A step whose gradients overflow is skipped and the scale halved; after
//! [`LOSS_SCALE_GROWTH_INTERVAL`] good steps in a row it doubles (PyTorch's defaults).
//! bf16 has f32's range and runs unscaled.
//!
//! Running statistics (BatchNorm's mean and variance) are shared between a module and its
//! clones, so the cast copy casts them in place. At the end of each epoch they are put back
//! into f32: those of frozen stages from an f32 copy taken at the start of the epoch (bit for
//! bit: a frozen stage stays untouched), the ones trainable BatchNorms updated by a cast of
//! the half-precision estimate. Evaluation, checkpoints and export therefore stay f32.
//!
//! This module holds the public pieces (the [`Precision`] setting, the casts, the
//! [`LossScale`]); the loop's use of them is its precision component (`finetune/precision.rs`).

use std::fmt;
use std::str::FromStr;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

pub use super::loss_scale::{DEFAULT_LOSS_SCALE, LOSS_SCALE_GROWTH_INTERVAL, LossScale};
use crate::{GrafterError, Result};

/// The precision of the training forward and backward passes.
///
/// ```
/// use grafter_core::finetune::Precision;
///
/// let p: Precision = "fp16".parse().unwrap();
/// assert_eq!(p, Precision::F16);
/// assert!(p.is_mixed() && p.needs_loss_scaling());
/// assert!(!Precision::Bf16.needs_loss_scaling());
/// assert!("f8".parse::<Precision>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// f16 forward/backward, f32 master weights, dynamic loss scaling.
    F16,
    /// bf16 forward/backward, f32 master weights (no scaling needed).
    Bf16,
}

impl Precision {
    /// Every precision, for help texts.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

    /// The float type the forward and backward run in.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// True for the half-precision modes.
    pub fn is_mixed(self) -> bool {
        self != Precision::F32
    }

    /// True when gradients need loss scaling to stay inside the type's range (f16).
    pub fn needs_loss_scaling(self) -> bool {
        self == Precision::F16
    }

    /// Errors, naming the device, when it cannot compute in this precision (a wgpu adapter
    /// without `shader-f16`, say).
    pub fn check_device(self, device: &Device) -> Result<()> {
        if device.supports_dtype(self.dtype()) {
            Ok(())
        } else {
            Err(GrafterError::Config(format!(
                "precision {self}: the device {device:?} cannot compute in {self}; use f32{}",
                if self == Precision::F16 {
                    " or bf16"
                } else {
                    ""
                }
            )))
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = GrafterError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" | "full" => Ok(Precision::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => Err(GrafterError::Config(format!(
                "unknown precision '{other}': expected f32, f16 or bf16"
            ))),
        }
    }
}

/// A copy of `model` computing in `precision` whose parameters are casts of `model`'s (on an
/// autodiff device the casts are in the graph, so gradients reach the f32 parameters): the
/// training loop's step.
///
/// Burn shares running statistics (BatchNorm's mean and variance) between a module and its
/// clones, so they are cast **in place**, in `model` too; the loop puts them back into f32 at
/// the end of each epoch. For inference use [`cast_for_inference`], which leaves `model` as it
/// is.
pub fn autocast<M: Module>(model: &M, precision: Precision) -> M {
    model.clone().map(&mut CastFloats {
        to: precision.dtype(),
    })
}

/// A copy of `model` for inference in `precision` (feed it inputs cast with
/// `Tensor::cast(precision.dtype())`); `model` itself is left untouched, running statistics
/// included.
///
/// ```
/// use burn::nn::{BatchNorm, BatchNormConfig};
/// use burn::tensor::{DType, Device, Tensor};
/// use grafter_core::finetune::Precision;
/// use grafter_core::finetune::mixed_precision::cast_for_inference;
///
/// let device = Device::flex();
/// let bn: BatchNorm = BatchNormConfig::new(3).init(&device);
/// let half = cast_for_inference(&bn, Precision::F16);
/// let x = Tensor::<4>::ones([1, 3, 2, 2], &device).cast(Precision::F16.dtype());
/// assert_eq!(half.forward(x).dtype(), DType::F16);
/// assert_eq!(bn.running_mean.value().dtype(), DType::F32); // the original is still f32
/// ```
pub fn cast_for_inference<M: Module>(model: &M, precision: Precision) -> M {
    // `valid()` re-creates the running statistics, so the in-place cast does not reach `model`
    autocast(&model.valid(), precision)
}

/// The input batch in `precision` (unchanged in f32).
pub fn cast_input(images: Tensor<4>, precision: Precision) -> Tensor<4> {
    if precision.is_mixed() {
        images.cast(precision.dtype())
    } else {
        images
    }
}

/// Casts every float tensor not already in `to`.
struct CastFloats {
    to: FloatDType,
}

impl ModuleMapper for CastFloats {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if param.val().dtype() == DType::from(self.to) {
            return param;
        }
        let to = self.to;
        param.map(|t| t.cast(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn names_parse_and_print() {
        for p in Precision::ALL {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        let err = "int8".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("int8") && err.contains("bf16"), "{err}");
    }

    #[test]
    fn autocast_keeps_ids_and_casts_only_the_copy() {
        let device = Device::flex();
        let model: Linear = LinearConfig::new(3, 2).init(&device);
        let half = autocast(&model, Precision::F16);
        assert_eq!(half.weight.id, model.weight.id);
        assert_eq!(half.weight.val().dtype(), DType::F16);
        assert_eq!(model.weight.val().dtype(), DType::F32);
        // the copy really computes in f16
        let x = cast_input(Tensor::<4>::ones([1, 1, 1, 3], &device), Precision::F16);
        let y = half.forward(x.reshape([1, 3]));
        assert_eq!(y.dtype(), DType::F16);
    }
}
