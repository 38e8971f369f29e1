//! The dynamic loss scale of f16 training (PyTorch's `GradScaler`).
//!
//! f16's range is small (largest 65504, smallest normal 6.1e-5), so small gradients would
//! flush to zero: the loss is multiplied by a scale before backward and the gradients divided
//! by it after. A step whose gradients overflow is skipped and the scale halved; after
//! [`LOSS_SCALE_GROWTH_INTERVAL`] good steps in a row it doubles. bf16 has f32's range and
//! runs unscaled.

use burn::module::Module;
use burn::optim::GradientsParams;
use serde::{Deserialize, Serialize};

use super::mixed_precision::Precision;
use crate::optimizer::{grad_norm, scale_grads};
use crate::{GrafterError, Result};

/// The scale a run starts with (2^16, as PyTorch's `GradScaler`).
pub const DEFAULT_LOSS_SCALE: f64 = 65536.0;
/// Good steps in a row after which the loss scale doubles.
pub const LOSS_SCALE_GROWTH_INTERVAL: usize = 2000;
/// The scale never goes below this: gradients that overflow at scale 1 are a divergence.
const MIN_LOSS_SCALE: f64 = 1.0;

/// Dynamic loss scale, saved with each checkpoint so a resumed run continues with it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    /// The factor the loss is multiplied by before backward.
    pub scale: f64,
    /// Good steps since the scale last changed.
    pub good_steps: usize,
    /// Steps skipped so far because their gradients overflowed.
    pub skipped_steps: usize,
}

impl LossScale {
    /// A scale starting at `scale` (1 and never changing for bf16 and f32).
    pub fn new(precision: Precision, scale: f64) -> Self {
        Self {
            scale: if precision.needs_loss_scaling() {
                scale
            } else {
                1.0
            },
            good_steps: 0,
            skipped_steps: 0,
        }
    }

    /// Removes the scale (and the accumulation `divisor`, 1 without accumulation) from
    /// `grads` and says whether the step may be taken: false (and the scale halved) when some
    /// gradient is not finite. For the half-precision modes only.
    pub(crate) fn unscale<M: Module>(
        &mut self,
        precision: Precision,
        model: &M,
        grads: &mut GradientsParams,
        divisor: f64,
    ) -> Result<bool> {
        let factor = self.scale * divisor;
        if factor != 1.0 {
            scale_grads(model, grads, 1.0 / factor);
        }
        let finite = grad_norm(model, grads).is_finite();
        if finite {
            self.good_steps += 1;
            if precision.needs_loss_scaling() && self.good_steps >= LOSS_SCALE_GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
            return Ok(true);
        }
        self.skipped_steps += 1;
        self.good_steps = 0;
        if !precision.needs_loss_scaling() || self.scale <= MIN_LOSS_SCALE {
            return Err(GrafterError::Config(format!(
                "{precision} gradients are not finite even at loss scale {}: train in f32",
                self.scale
            )));
        }
        self.scale = (self.scale * 0.5).max(MIN_LOSS_SCALE);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, Tensor};

    #[test]
    fn loss_scale_backs_off_on_overflow_and_grows_after_good_steps() {
        let device = Device::flex().autodiff();
        let model: Linear = LinearConfig::new(2, 1).init(&device);
        let grads_of = |value: f32| {
            let x = Tensor::<2>::from_floats([[value, 1.0]], &device);
            let loss = model.forward(x).sum();
            GradientsParams::from_grads(loss.backward(), &model)
        };
        let mut ls = LossScale::new(Precision::F16, 1024.0);
        let mut grads = grads_of(f32::INFINITY);
        assert!(!ls.unscale(Precision::F16, &model, &mut grads, 1.0).unwrap());
        assert_eq!((ls.scale, ls.skipped_steps), (512.0, 1));

        // a finite gradient is divided by the scale
        let mut grads = grads_of(512.0);
        assert!(ls.unscale(Precision::F16, &model, &mut grads, 1.0).unwrap());
        let g = grads.get::<2>(model.weight.id).unwrap().into_data();
        assert_eq!(g.try_to_vec::<f32>().unwrap()[0], 1.0);

        ls.good_steps = LOSS_SCALE_GROWTH_INTERVAL - 1;
        let mut grads = grads_of(1.0);
        assert!(ls.unscale(Precision::F16, &model, &mut grads, 1.0).unwrap());
        assert_eq!((ls.scale, ls.good_steps), (1024.0, 0));

        // bf16 is never scaled; overflow there is an error, not a skipped step
        let mut bf = LossScale::new(Precision::Bf16, 1024.0);
        assert_eq!(bf.scale, 1.0);
        let mut grads = grads_of(f32::NAN);
        assert!(
            bf.unscale(Precision::Bf16, &model, &mut grads, 1.0)
                .is_err()
        );
    }
}
