//! fastai's `fine_tune`: a few epochs with the backbone frozen, then everything with
//! discriminative learning rates.

use super::{EpochPlan, FreezePolicy, StageSetting};

/// Phase 0 (`freeze_epochs` epochs): only the head trains, at the base learning rate.
/// Phase 1 (the rest): every stage trains; as in fastai the base rate is halved and spread
/// geometrically from `base / 2 / lr_mult` (first stage) up to `base / 2` (head). The schedule
/// restarts at the phase boundary.
#[derive(Clone, Copy, Debug)]
pub struct TwoPhase {
    /// Epochs of phase 0.
    pub freeze_epochs: usize,
    /// Ratio between the head's and the first stage's learning rate in phase 1 (fastai: 100).
    pub lr_mult: f64,
}

impl TwoPhase {
    /// `freeze_epochs` head-only epochs, then discriminative rates spanning `lr_mult`.
    pub fn new(freeze_epochs: usize, lr_mult: f64) -> Self {
        Self {
            freeze_epochs,
            lr_mult,
        }
    }
}

impl FreezePolicy for TwoPhase {
    fn plan(&self, epoch: usize, num_stages: usize) -> EpochPlan {
        if epoch < self.freeze_epochs {
            return EpochPlan::uniform(num_stages, StageSetting::frozen());
        }
        let top = 0.5;
        let ratio = self.lr_mult.max(1.0);
        let stages = (0..num_stages)
            .map(|i| {
                let exponent = (num_stages - i) as f64 / num_stages as f64;
                StageSetting::train(top / ratio.powf(exponent))
            })
            .collect();
        EpochPlan {
            stages,
            head: StageSetting::train(top),
            phase: 1,
        }
    }

    fn name(&self) -> String {
        format!(
            "two-phase(freeze_epochs={}, lr_mult={})",
            self.freeze_epochs, self.lr_mult
        )
    }
}
