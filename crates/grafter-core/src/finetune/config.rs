//! The serialisable configuration of a fine-tuning run, saved as `config.json` in its run dir.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use super::class_weights::ClassWeights;
use super::ema::Ema;
use super::mixed_precision::{DEFAULT_LOSS_SCALE, Precision};
use super::sampler::Sampler;
use crate::mixup::Mixup;
use crate::{GrafterError, LrSchedule, Monitor, OptimizerConfig, Result, Task};

/// The most epochs a run may plan: the loop keeps one plan per epoch, so a corrupted or
/// hostile `config.json` asking for 10¹² is refused instead of allocating them.
pub const MAX_EPOCHS: usize = 1_000_000;

/// Stop when the monitored validation metric has not improved for `patience` epochs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Epochs without improvement tolerated.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    pub min_delta: f64,
}

/// Hyper-parameters of a run. Everything that decides the numbers is here, so that a
/// run directory's `config.json` is enough to reproduce (and resume) it.
#[derive(Config, Debug, PartialEq)]
pub struct FineTuneConfig {
    /// Total epochs (all phases).
    #[config(default = 5)]
    pub epochs: usize,
    /// Images per optimiser step.
    #[config(default = 32)]
    pub batch_size: usize,
    /// Base (peak) learning rate; policies scale it per stage.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// Optimiser.
    #[config(default = "OptimizerConfig::adamw()")]
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule, restarted at each policy phase.
    #[config(default = "LrSchedule::one_cycle()")]
    pub schedule: LrSchedule,
    /// Clip the global gradient L2 norm to this value.
    #[config(default = "None")]
    pub grad_clip_norm: Option<f64>,
    /// Label smoothing in [0, 1).
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// Single-label, binary or multi-label.
    #[config(default = "Task::SingleLabel")]
    pub task: Task,
    /// Metric for best-model selection and early stopping.
    #[config(default = "Monitor::ValTop1")]
    pub monitor: Monitor,
    /// Early stopping, off by default.
    #[config(default = "None")]
    pub early_stopping: Option<EarlyStopping>,
    /// Return the weights of the best epoch rather than the last (fastai's
    /// `SaveModelCallback`, Keras' `restore_best_weights`).
    #[config(default = true)]
    pub restore_best: bool,
    /// Seed of shuffling, augmentation and dropout.
    #[config(default = 42)]
    pub seed: u64,
    /// Checkpoints kept on disk (the newest ones).
    #[config(default = 2)]
    pub keep_checkpoints: usize,
    /// Show progress bars and per-epoch summaries on stderr.
    #[config(default = true)]
    pub progress: bool,
    /// Precision of the training passes: f32, or f16/bf16 with f32 master weights
    /// ([mixed precision](super::mixed_precision)). Evaluation stays f32.
    #[config(default = "Precision::F32")]
    pub precision: Precision,
    /// Initial loss scale of f16 training (ignored otherwise); adjusted as training runs.
    #[config(default = "DEFAULT_LOSS_SCALE")]
    pub loss_scale: f64,
    /// Micro-batches of `batch_size` images whose gradients are summed into one optimiser
    /// step ([gradient accumulation](super#gradient-accumulation)): the step equals one of a
    /// batch `accumulate_steps` times larger, except that BatchNorm normalises and updates its
    /// statistics per micro-batch (as in PyTorch). 1 (the default) steps after every batch.
    #[config(default = 1)]
    pub accumulate_steps: usize,
    /// An exponential moving average of the weights (timm's `ModelEmaV3`), evaluated beside
    /// the trained weights every epoch and checkpointed with them. Off by default.
    #[config(default = "None")]
    pub ema: Option<Ema>,
    /// Per-class weights of the single-label cross-entropy (`"balanced"` from the training
    /// data's class counts, or given). Off by default: every image counts the same.
    #[config(default = "None")]
    pub class_weights: Option<ClassWeights>,
    /// Which samples a training pass visits: each once, shuffled (the default), or a
    /// class-balanced draw for imbalanced single-label data.
    #[config(default = "Sampler::Shuffle")]
    pub sampler: Sampler,
    /// MixUp / CutMix on the training batches (timm's `Mixup`; [`Mixup::timm`] is its ImageNet
    /// recipe). Off by default. Mixing needs images, so it turns the feature cache off.
    #[config(default = "None")]
    pub mixup: Option<Mixup>,
    /// The epoch from which MixUp / CutMix stop (timm's `mixup_off_epoch`: the last epochs
    /// train on clean images); `None` mixes to the end.
    #[config(default = "None")]
    pub mixup_off_epoch: Option<usize>,
}

impl FineTuneConfig {
    /// fastai's `fine_tune(freeze_epochs, epochs, lr, lr_mult)`: sets the epochs, the base
    /// rate and a one-cycle schedule; pair it with [`TwoPhase`](crate::policy::TwoPhase).
    pub fn fine_tune(freeze_epochs: usize, epochs: usize, lr: f64) -> Self {
        Self::new()
            .with_epochs(freeze_epochs + epochs)
            .with_lr(lr)
            .with_schedule(LrSchedule::one_cycle())
    }

    /// Checks every value, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(GrafterError::Config(msg));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.epochs > MAX_EPOCHS {
            return bad(format!(
                "epochs must be at most {MAX_EPOCHS}, got {}",
                self.epochs
            ));
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be a positive number, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        if let Some(c) = self.grad_clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return bad(format!("grad_clip_norm must be positive, got {c}"));
        }
        if !(self.loss_scale.is_finite() && self.loss_scale >= 1.0) {
            return bad(format!(
                "loss_scale must be a number >= 1, got {}",
                self.loss_scale
            ));
        }
        if self.accumulate_steps == 0 {
            return bad("accumulate_steps must be at least 1".into());
        }
        if let Some(ema) = &self.ema {
            ema.validate()?;
        }
        if let Some(weights) = &self.class_weights {
            if self.task != Task::SingleLabel {
                return bad(format!(
                    "class_weights apply to single-label tasks, not {:?}",
                    self.task
                ));
            }
            weights.validate()?;
        }
        if let Some(m) = &self.mixup {
            let unit = 0.0..=1.0;
            let alpha_ok = |a: f64| a.is_finite() && a >= 0.0;
            if !(alpha_ok(m.mixup_alpha) && alpha_ok(m.cutmix_alpha)) {
                return bad("mixup: the alphas must be finite and >= 0".into());
            }
            if !(unit.contains(&m.prob) && unit.contains(&m.switch_prob)) {
                return bad("mixup: prob and switch_prob must be in [0, 1]".into());
            }
            if let Some((lo, hi)) = m.cutmix_minmax
                && !(0.0 < lo && lo < hi && hi <= 1.0)
            {
                return bad(format!(
                    "mixup: cutmix_minmax must satisfy 0 < min < max <= 1, got ({lo}, {hi})"
                ));
            }
            if self.class_weights.is_some() {
                return bad(
                    "class_weights weigh each image by its one class; a mixed image has two \
                     (use the class-balanced sampler with MixUp / CutMix instead)"
                        .into(),
                );
            }
        }
        if self.sampler == Sampler::ClassBalanced && self.task == Task::MultiLabel {
            return bad(
                "the class-balanced sampler needs one class per image, not a multi-label task"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A saved `config.json`, with the defaults for settings added since it was written (a run
/// started before mixed precision existed has no `precision`).
pub(crate) fn config_from_json(text: &str) -> std::result::Result<FineTuneConfig, String> {
    let saved: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let serde_json::Value::Object(saved) = saved else {
        return Err("not a JSON object".into());
    };
    let mut merged = serde_json::to_value(FineTuneConfig::new()).map_err(|e| e.to_string())?;
    let serde_json::Value::Object(fields) = &mut merged else {
        unreachable!("a config serialises to an object")
    };
    fields.extend(saved);
    serde_json::from_value(merged).map_err(|e| e.to_string())
}
