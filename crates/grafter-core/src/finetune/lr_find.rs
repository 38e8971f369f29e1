//! The learning-rate range test (Leslie Smith; fastai's `lr_find`): train a copy of the
//! model for a few hundred steps while the rate grows exponentially, watch the smoothed
//! loss, and suggest a rate from the curve.
//!
//! The test trains a copy under the run's first plan (its frozen stages, per-stage rate
//! multipliers, optimiser, loss, class weights, batch size and gradient clipping; in f32,
//! one batch per step, whatever the run's precision and accumulation) and
//! leaves no trace: the model's parameters and BatchNorm statistics are untouched (the copy
//! has its own statistics), the run's optimiser does not exist yet (the test builds its
//! own), and the run's random streams are derived from `(seed, epoch)` when `fit` starts, so
//! a run after the test is bit for bit the run without it. (Burn's CPU generator is one per
//! process: dropout during the test draws from it after seeding it from the run's seed and
//! a stream of its own, as every epoch of `fit` does.)

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::class_weights::TrainLoss;
use super::fine_tune::FineTune;
use super::plan::{apply_plan, plans_of, stage_lrs};
use crate::checkpoint::write_atomic;
use crate::optimizer::clip_grad_norm;
use crate::plot::lr_find_svg;
use crate::source::{DataSource, EpochRequest, mix_seed};
use crate::{Backbone, Classifier, GrafterError, Head, Result};

/// RNG stream of the device generator during the range test.
const LR_FIND_RNG_STREAM: u64 = 7;
/// The plot written to the run directory.
pub(crate) const LR_FIND_SVG: &str = "lr_find.svg";
/// The curve and suggestions written to the run directory.
pub(crate) const LR_FIND_JSON: &str = "lr_find.json";

/// Settings of the range test (fastai's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrFind {
    /// Rate of the first step.
    pub start_lr: f64,
    /// Rate of the last step.
    pub end_lr: f64,
    /// Steps (batches); the data are passed over as often as needed.
    pub steps: usize,
    /// Smoothing of the loss: an exponential average with this factor, bias-corrected.
    pub beta: f64,
    /// Stop once the smoothed loss exceeds this multiple of its minimum (`None`: never).
    pub stop_factor: Option<f64>,
}

impl Default for LrFind {
    fn default() -> Self {
        Self {
            start_lr: 1e-7,
            end_lr: 10.0,
            steps: 100,
            beta: 0.98,
            stop_factor: Some(4.0),
        }
    }
}

impl LrFind {
    /// Checks every value, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(GrafterError::Config(msg));
        if !(self.start_lr.is_finite() && self.start_lr > 0.0 && self.end_lr > self.start_lr) {
            return bad(format!(
                "lr_find needs 0 < start_lr < end_lr, got {} and {}",
                self.start_lr, self.end_lr
            ));
        }
        if self.steps < 2 {
            return bad(format!(
                "lr_find needs at least 2 steps, got {}",
                self.steps
            ));
        }
        if !(0.0..1.0).contains(&self.beta) {
            return bad(format!("lr_find beta must be in [0, 1), got {}", self.beta));
        }
        Ok(())
    }

    /// The rate of step `i`: `start · (end / start)^(i / (steps − 1))`.
    pub fn lr_at(&self, i: usize) -> f64 {
        let t = i as f64 / (self.steps - 1) as f64;
        self.start_lr * (self.end_lr / self.start_lr).powf(t)
    }
}

/// What the range test measured and suggests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrFindResult {
    /// The rate of every step taken.
    pub lrs: Vec<f64>,
    /// The loss of every step's batch.
    pub losses: Vec<f64>,
    /// The smoothed losses.
    pub smoothed: Vec<f64>,
    /// The rate where the smoothed loss falls fastest (fastai's `steep`).
    pub steepest: Option<f64>,
    /// fastai's `valley` suggestion (its default): inside the longest stretch of falling
    /// loss, a little past its middle.
    pub valley: Option<f64>,
    /// True when the test stopped because the loss diverged.
    pub diverged: bool,
}

impl LrFindResult {
    /// The curve as an SVG plot, with the suggestions marked.
    pub fn svg(&self) -> Result<String> {
        lr_find_svg(self)
    }
}

impl FineTune {
    /// Runs the learning-rate range test on a copy of `model` with `train`'s batches and
    /// this run's settings and first plan, and suggests a base rate. `model` is left as it
    /// was (weights and BatchNorm statistics: the copy has statistics of its own) and a run
    /// after the test is bit for bit the run without it. With [`out_dir`](Self::out_dir) set,
    /// writes `lr_find.svg` and `lr_find.json` there.
    ///
    /// ```no_run
    /// # use burn::tensor::Device;
    /// # use grafter_core::{Backbone, Classifier, Head, FineTune, FineTuneConfig};
    /// # use grafter_core::source::InMemoryDataset;
    /// # use grafter_core::finetune::LrFind;
    /// # use grafter_core::policy::TwoPhase;
    /// # fn demo<B: Backbone, H: Head>(model: Classifier<B, H>, train: InMemoryDataset, valid: InMemoryDataset) -> grafter_core::Result<()> {
    /// let device = Device::flex();
    /// let run = FineTune::new(FineTuneConfig::fine_tune(1, 4, 1e-3), TwoPhase::new(1, 100.0));
    /// let found = run.lr_find(&model, &train, &device, &LrFind::default())?;
    /// let lr = found.valley.unwrap_or(1e-3);
    /// let mut config = run.config().clone();
    /// config.lr = lr;
    /// FineTune::new(config, TwoPhase::new(1, 100.0)).fit(model, &train, &valid, &device)?;
    /// # Ok(()) }
    /// ```
    pub fn lr_find<B: Backbone, H: Head>(
        &self,
        model: &Classifier<B, H>,
        train: &dyn DataSource,
        device: &Device,
        settings: &LrFind,
    ) -> Result<LrFindResult> {
        let cfg = &self.config;
        cfg.validate()?;
        settings.validate()?;
        if train.is_empty() {
            return Err(GrafterError::EmptyDataset { role: "training" });
        }
        if model.num_outputs() != cfg.task.num_outputs(train.num_classes()) {
            return Err(GrafterError::OutputMismatch {
                head: model.num_outputs(),
                dataset: train.num_classes(),
            });
        }
        let loss_fn = TrainLoss {
            task: cfg.task,
            weights: match &cfg.class_weights {
                Some(w) => Some(w.resolve(train)?.into_iter().map(|v| v as f32).collect()),
                None => None,
            },
        };
        let stages = model.stages();
        let plans = plans_of(self.policy.as_ref(), cfg.epochs, stages.len())?;
        let plan = &plans[0];
        let ad = device.clone().autodiff();
        // `valid()` gives the copy BatchNorm statistics of its own
        let mut net = apply_plan(model.valid().fork(&ad).train(), plan, &stages);
        let mut optim = cfg.optimizer.build();
        let outputs = model.num_outputs();

        let mut out = LrFindResult {
            lrs: Vec::new(),
            losses: Vec::new(),
            smoothed: Vec::new(),
            steepest: None,
            valley: None,
            diverged: false,
        };
        let (mut avg, mut best) = (0.0, f64::INFINITY);
        let mut pass = 0usize;
        'sweep: while out.lrs.len() < settings.steps {
            ad.seed(mix_seed(cfg.seed, pass as u64, LR_FIND_RNG_STREAM));
            let request = EpochRequest {
                epoch: pass,
                seed: cfg.seed,
                batch_size: cfg.batch_size,
                train: true,
            };
            for batch in train.batches(request) {
                let i = out.lrs.len();
                if i == settings.steps {
                    break 'sweep;
                }
                let batch = batch?;
                batch.validate()?;
                let targets = cfg
                    .task
                    .targets(&batch.labels, outputs, cfg.label_smoothing, &ad)?;
                let images =
                    Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), &ad);
                let logits = net.forward(images);
                let (loss, _) = loss_fn.loss(logits, targets, &batch.labels, &ad)?;
                let value: f64 = loss.clone().into_scalar::<f64>();
                if !value.is_finite() {
                    out.diverged = true;
                    break 'sweep;
                }
                let lr = settings.lr_at(i);
                let mut grads = GradientsParams::from_grads(loss.backward(), &net);
                if let Some(max) = cfg.grad_clip_norm {
                    clip_grad_norm(&net, &mut grads, max);
                }
                net = optim.step(stage_lrs(lr, plan, &stages), net, grads);
                avg = settings.beta * avg + (1.0 - settings.beta) * value;
                let smooth = avg / (1.0 - settings.beta.powi(i as i32 + 1));
                out.lrs.push(lr);
                out.losses.push(value);
                out.smoothed.push(smooth);
                best = best.min(smooth);
                if settings.stop_factor.is_some_and(|f| smooth > f * best) {
                    out.diverged = true;
                    break 'sweep;
                }
            }
            pass += 1;
        }
        drop(net);
        // fastai leaves out the first tenth of the planned steps and the last five
        let from = settings.steps / 10;
        let to = out.lrs.len().saturating_sub(5);
        if to > from + 2 {
            let (lrs, losses) = (&out.lrs[from..to], &out.smoothed[from..to]);
            out.steepest = Some(steepest(lrs, losses));
            out.valley = Some(valley(lrs, losses));
        }
        if let Some(dir) = &self.out_dir {
            write_atomic(
                self.writer.as_ref(),
                &dir.join(LR_FIND_SVG),
                out.svg()?.as_bytes(),
            )?;
            let json =
                serde_json::to_vec_pretty(&out).map_err(|e| GrafterError::Config(e.to_string()))?;
            write_atomic(self.writer.as_ref(), &dir.join(LR_FIND_JSON), &json)?;
        }
        Ok(out)
    }

    /// [`lr_find`](Self::lr_find), then its `valley` suggestion as this run's peak rate
    /// (fastai's `lr_find()` followed by `fine_tune(base_lr=valley)`). Without a suggestion
    /// (too few steps, a flat loss) the configured rate stays. Returns the run and what the
    /// test measured.
    pub fn with_found_lr<B: Backbone, H: Head>(
        mut self,
        model: &Classifier<B, H>,
        train: &dyn DataSource,
        device: &Device,
        settings: &LrFind,
    ) -> Result<(Self, LrFindResult)> {
        let found = self.lr_find(model, train, device, settings)?;
        if let Some(lr) = found.valley {
            self.config.lr = lr;
        }
        Ok((self, found))
    }
}

/// fastai's `steep`: the rate at the start of the segment where the loss falls fastest
/// against `ln(lr)`.
pub(crate) fn steepest(lrs: &[f64], losses: &[f64]) -> f64 {
    let mut best = (f64::INFINITY, lrs[0]);
    for i in 0..lrs.len() - 1 {
        let slope = (losses[i + 1] - losses[i]) / (lrs[i + 1].ln() - lrs[i].ln());
        if slope < best.0 {
            best = (slope, lrs[i]);
        }
    }
    best.1
}

/// fastai's `valley`: the longest strictly decreasing subsequence of the losses, and a rate
/// half-way plus a sixth into it.
pub(crate) fn valley(lrs: &[f64], losses: &[f64]) -> f64 {
    let n = losses.len();
    // signed as in fastai, where a run from the first point gives max_start = −1
    let (mut max_start, mut max_end) = (0isize, 0usize);
    let mut lds = vec![1usize; n];
    for i in 1..n {
        for j in 0..i {
            if losses[i] < losses[j] && lds[i] < lds[j] + 1 {
                lds[i] = lds[j] + 1;
            }
            if lds[max_end] < lds[i] {
                max_end = i;
                max_start = max_end as isize - lds[max_end] as isize;
            }
        }
    }
    let sections = (max_end as isize - max_start) as f64 / 3.0;
    let idx = max_start + sections as isize + (sections / 2.0) as isize;
    lrs[idx.clamp(0, n as isize - 1) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from fastai's `steep` and `valley` (fastai/callback/schedule.py) run
    /// on the same arrays in Python.
    #[test]
    fn suggestions_are_fastais() {
        let lrs: Vec<f64> = (0..10).map(|i| 10f64.powi(i - 7)).collect();
        let losses = [2.0, 2.1, 1.9, 1.5, 1.0, 0.9, 0.8, 1.2, 3.0, 9.0];
        // steepest: the largest drop per decade is 1.5 -> 1.0, starting at lrs[3]
        assert_eq!(steepest(&lrs, &losses), lrs[3]);
        // longest decreasing run: 2.0 1.9 1.5 1.0 0.9 0.8 (ends at index 6), lds[6] = 6,
        // max_start = 6 - 6 = 0, sections = 2, idx = 0 + 2 + 1 = 3
        assert_eq!(valley(&lrs, &losses), lrs[3]);
        // falling from the first point: fastai's max_start is −1; lds[5] = 6, sections = 2,
        // idx = −1 + 2 + 1 = 2
        let falling = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 1.5];
        assert_eq!(valley(&lrs[..7], &falling), lrs[2]);
        let find = LrFind {
            steps: 5,
            start_lr: 1e-4,
            end_lr: 1.0,
            ..LrFind::default()
        };
        assert!((find.lr_at(0) - 1e-4).abs() < 1e-18);
        assert!((find.lr_at(2) - 1e-2).abs() < 1e-15);
        assert!((find.lr_at(4) - 1.0).abs() < 1e-12);
        assert!(LrFind { steps: 1, ..find }.validate().is_err());
        assert!(
            LrFind {
                end_lr: 1e-5,
                ..find
            }
            .validate()
            .is_err()
        );
    }
}
