//! Freeze policies: which backbone stages train in each epoch, and at what learning rate.
//!
//! A policy is a pure function of the epoch, so a resumed run replays exactly the plan of the
//! uninterrupted one, and the plan of every epoch can be shown before training starts.

mod by_name;
mod fixed;
mod gradual;
mod layer_decay;
mod two_phase;

pub use by_name::PolicyName;
pub use fixed::{FreezeFirst, Frozen, TrainAll};
pub use gradual::GradualUnfreeze;
pub use layer_decay::LayerwiseLrDecay;
pub use two_phase::TwoPhase;

use serde::{Deserialize, Serialize};

/// Whether one stage (or the head) trains, and its learning-rate multiplier.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSetting {
    /// `false`: no gradient, BatchNorm in inference mode, running statistics untouched.
    pub trainable: bool,
    /// Multiplier on the run's scheduled learning rate.
    pub lr_mult: f64,
}

impl StageSetting {
    /// A trainable stage with multiplier `lr_mult`.
    pub fn train(lr_mult: f64) -> Self {
        Self {
            trainable: true,
            lr_mult,
        }
    }

    /// A frozen stage.
    pub fn frozen() -> Self {
        Self {
            trainable: false,
            lr_mult: 0.0,
        }
    }
}

/// What a policy decides for one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochPlan {
    /// One setting per backbone stage, input side first.
    pub stages: Vec<StageSetting>,
    /// The head's setting.
    pub head: StageSetting,
    /// Training phase. The learning-rate schedule restarts at each new phase (fastai's
    /// `fine_tune` runs one one-cycle schedule per phase).
    pub phase: usize,
}

impl EpochPlan {
    /// Every stage set to `setting`, head trainable at multiplier 1, phase 0.
    pub fn uniform(num_stages: usize, setting: StageSetting) -> Self {
        Self {
            stages: vec![setting; num_stages],
            head: StageSetting::train(1.0),
            phase: 0,
        }
    }

    /// Indices of the trainable stages.
    pub fn trainable_stages(&self) -> Vec<usize> {
        (0..self.stages.len())
            .filter(|&i| self.stages[i].trainable)
            .collect()
    }
}

/// Decides, per epoch, which stages train and at what learning-rate multiplier.
///
/// Implement it for your own schedule of freezing; it must be deterministic in its arguments.
///
/// ```
/// use grafter_core::policy::{EpochPlan, FreezePolicy, StageSetting};
///
/// /// Trains only the last stage and the head.
/// #[derive(Debug)]
/// struct LastStageOnly;
///
/// impl FreezePolicy for LastStageOnly {
///     fn plan(&self, _epoch: usize, num_stages: usize) -> EpochPlan {
///         let mut plan = EpochPlan::uniform(num_stages, StageSetting::frozen());
///         if let Some(last) = plan.stages.last_mut() {
///             *last = StageSetting::train(0.1);
///         }
///         plan
///     }
///     fn name(&self) -> String {
///         "last-stage-only".into()
///     }
/// }
/// assert_eq!(LastStageOnly.plan(0, 5).trainable_stages(), vec![4]);
/// ```
pub trait FreezePolicy: Send + Sync + std::fmt::Debug {
    /// The plan for zero-based `epoch` of a backbone with `num_stages` stages.
    fn plan(&self, epoch: usize, num_stages: usize) -> EpochPlan;

    /// A short name for logs and checkpoints.
    fn name(&self) -> String;
}

impl<P: FreezePolicy + ?Sized> FreezePolicy for Box<P> {
    fn plan(&self, epoch: usize, num_stages: usize) -> EpochPlan {
        (**self).plan(epoch, num_stages)
    }

    fn name(&self) -> String {
        (**self).name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trainable(p: &dyn FreezePolicy, epoch: usize) -> Vec<usize> {
        p.plan(epoch, 5).trainable_stages()
    }

    #[test]
    fn frozen_trains_only_the_head() {
        for e in 0..3 {
            let plan = Frozen.plan(e, 5);
            assert!(plan.trainable_stages().is_empty());
            assert_eq!(plan.head, StageSetting::train(1.0));
        }
    }

    #[test]
    fn train_all_trains_everything_at_base_lr() {
        let plan = TrainAll.plan(7, 5);
        assert_eq!(plan.trainable_stages(), vec![0, 1, 2, 3, 4]);
        assert!(plan.stages.iter().all(|s| s.lr_mult == 1.0));
    }

    #[test]
    fn freeze_first_k() {
        assert_eq!(trainable(&FreezeFirst(2), 0), vec![2, 3, 4]);
        assert_eq!(trainable(&FreezeFirst(0), 0), vec![0, 1, 2, 3, 4]);
        assert!(trainable(&FreezeFirst(9), 0).is_empty());
    }

    #[test]
    fn gradual_unfreezes_one_stage_every_n_epochs_from_the_top() {
        let p = GradualUnfreeze::new(2);
        assert!(trainable(&p, 0).is_empty());
        assert!(trainable(&p, 1).is_empty());
        assert_eq!(trainable(&p, 2), vec![4]);
        assert_eq!(trainable(&p, 3), vec![4]);
        assert_eq!(trainable(&p, 4), vec![3, 4]);
        assert_eq!(trainable(&p, 10), vec![0, 1, 2, 3, 4]);
        assert_eq!(trainable(&p, 100), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn two_phase_is_head_only_then_discriminative() {
        let p = TwoPhase::new(2, 100.0);
        for e in 0..2 {
            let plan = p.plan(e, 5);
            assert!(plan.trainable_stages().is_empty());
            assert_eq!(plan.phase, 0);
            assert_eq!(plan.head.lr_mult, 1.0);
        }
        let plan = p.plan(2, 5);
        assert_eq!(plan.phase, 1);
        assert_eq!(plan.trainable_stages(), vec![0, 1, 2, 3, 4]);
        // fastai halves the base LR for the unfrozen phase; the first stage gets lr/lr_mult.
        assert!((plan.head.lr_mult - 0.5).abs() < 1e-12);
        assert!((plan.stages[0].lr_mult - 0.5 / 100.0).abs() < 1e-12);
        // geometric spacing, increasing towards the head
        let m: Vec<f64> = plan.stages.iter().map(|s| s.lr_mult).collect();
        for w in m.windows(2) {
            assert!(w[1] > w[0]);
            assert!((w[1] / w[0] - 100f64.powf(1.0 / 5.0)).abs() < 1e-9);
        }
    }

    #[test]
    fn layerwise_decay_multipliers() {
        let p = LayerwiseLrDecay::new(0.5);
        let plan = p.plan(0, 3);
        let m: Vec<f64> = plan.stages.iter().map(|s| s.lr_mult).collect();
        assert_eq!(m, vec![0.125, 0.25, 0.5]);
        assert_eq!(plan.head.lr_mult, 1.0);
    }
}
