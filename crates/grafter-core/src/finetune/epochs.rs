//! The epoch loop: apply the epoch's plan, train one pass, evaluate, judge, checkpoint,
//! report, tell the observers — each step one of the named parts.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};

use super::checkpointer::Checkpointer;
use super::config::FineTuneConfig;
use super::early_stopping::{Standing, Watch};
use super::evaluate::evaluate;
use super::observer::{Observers, StepInfo};
use super::plan::{apply_plan, base_lr, stage_lrs};
use super::precision::PrecisionStep;
use super::reporter::Reporter;
use super::run_state::RunState;
use crate::data::{DataSource, EpochRequest, mix_seed};
use crate::history::EpochRecord;
use crate::metrics::MetricsAccumulator;
use crate::optimizer::clip_grad_norm;
use crate::policy::EpochPlan;
use crate::{Backbone, Classifier, GrafterError, Head, Metrics, Result, Stage};

/// RNG stream of the device generator (dropout), derived from `(seed, epoch)`.
const DEVICE_RNG_STREAM: u64 = 1;

/// What the epochs of a run carry from one to the next.
pub(super) struct Run {
    pub state: RunState,
    pub optim: ModuleOptimizer,
    /// The best epoch's weights, restored at the end when `restore_best`.
    pub best_record: Option<ModuleRecord>,
    /// The newest checkpoint on disk, named when the run diverges.
    pub last_checkpoint: Option<PathBuf>,
}

/// The parts one `fit` drives through its epochs.
pub(super) struct EpochLoop<'a> {
    pub cfg: &'a FineTuneConfig,
    pub plans: &'a [EpochPlan],
    pub checkpointer: Option<&'a Checkpointer>,
    pub reporter: Reporter,
    pub observers: &'a Observers,
    /// Epochs this call may run before it returns a resumable run.
    pub pause_after: Option<usize>,
}

impl EpochLoop<'_> {
    /// The epochs left, on `model` (any backbone: the real one, or the cached features'
    /// identity). `full` turns the trained model into the classifier whose weights are
    /// checkpointed and restored.
    pub(super) fn run<BB: Backbone, B: Backbone, H: Head>(
        &self,
        model: Classifier<BB, H>,
        train: &dyn DataSource,
        valid: &dyn DataSource,
        device: &Device,
        run: &mut Run,
        full: impl Fn(&Classifier<BB, H>) -> Classifier<B, H>,
    ) -> Result<Classifier<BB, H>> {
        let cfg = self.cfg;
        let ad = device.clone().autodiff();
        let mut model = model.fork(&ad).train();
        let mut precision = PrecisionStep::new(cfg.precision, run.state.loss_scale, cfg.loss_scale);
        let watch = Watch::new(cfg);
        let first = run.state.epochs_done;
        for epoch in first..cfg.epochs {
            if run.state.stopped_early || self.pause_after.is_some_and(|n| epoch - first >= n) {
                break;
            }
            let started = Instant::now();
            let plan = &self.plans[epoch];
            let stages = model.stages();
            model = apply_plan(model, plan, &stages);
            precision.begin_epoch(&model, plan, &stages);
            ad.seed(mix_seed(cfg.seed, epoch as u64, DEVICE_RNG_STREAM));
            let (trained, train_metrics, lr) =
                self.train_epoch(model, train, &ad, epoch, &stages, &mut precision, run)?;
            model = precision.end_epoch(trained);
            if let Some(scale) = precision.loss_scale() {
                run.state.loss_scale = Some(scale);
            }
            let valid_metrics = evaluate(
                &model.valid(),
                valid,
                cfg.task,
                cfg.batch_size,
                device,
                self.reporter.progress(),
            )?;

            let mut standing = Standing::of(&run.state);
            if watch.update(&mut standing, epoch, cfg.monitor.value(&valid_metrics)) {
                let record = full(&model).into_record();
                if let Some(ck) = self.checkpointer {
                    ck.save_best(&record)?;
                }
                run.best_record = Some(record);
            }
            standing.store(&mut run.state);

            let record = EpochRecord {
                epoch,
                step: run.state.step,
                lr: lr * plan.head.lr_mult,
                plan: plan.clone(),
                train: train_metrics,
                valid: valid_metrics,
            };
            let secs = started.elapsed().as_secs_f64();
            self.reporter.epoch_done(&record, secs, train.len());
            run.state.history.push(record);
            run.state.epochs_done = epoch + 1;

            if let Some(ck) = self.checkpointer {
                let saved = ck.save(full(&model).into_record(), &run.optim, &run.state)?;
                run.last_checkpoint = Some(saved);
                self.reporter
                    .write_logs(ck.writer(), ck.root(), &run.state.history)?;
            }
            if let Some(record) = run.state.history.last() {
                self.observers.epoch_end(record);
            }
            if run.state.stopped_early {
                self.reporter
                    .stopped_early(cfg.monitor, run.state.bad_epochs);
            }
        }
        Ok(model)
    }

    /// One training pass over `train` under `epoch`'s plan: the trained model, the pass's
    /// metrics and the base learning rate of its last step.
    #[allow(clippy::too_many_arguments)]
    fn train_epoch<BB: Backbone, H: Head>(
        &self,
        mut model: Classifier<BB, H>,
        train: &dyn DataSource,
        ad: &Device,
        epoch: usize,
        stages: &[Stage],
        precision: &mut PrecisionStep,
        run: &mut Run,
    ) -> Result<(Classifier<BB, H>, Metrics, f64)> {
        let cfg = self.cfg;
        let plan = &self.plans[epoch];
        let outputs = model.num_outputs();
        let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
        let mut acc = MetricsAccumulator::new(cfg.task, train.num_classes());
        let bar = self.reporter.epoch_bar(epoch, train.len());
        let request = EpochRequest {
            epoch,
            seed: cfg.seed,
            batch_size: cfg.batch_size,
            train: true,
        };
        let mut lr = 0.0;
        for (batch_index, batch) in train.batches(request).enumerate() {
            let batch = batch?;
            batch.validate()?;
            let n = batch.shape[0];
            let targets = cfg
                .task
                .targets(&batch.labels, outputs, cfg.label_smoothing, ad)?;
            let images = Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), ad);
            let logits = precision.forward(&model, images);
            let loss = cfg.task.loss(logits.clone(), targets);
            let loss_value: f64 = loss.clone().into_scalar::<f64>();
            if !loss_value.is_finite() {
                bar.finish();
                return Err(GrafterError::Diverged {
                    epoch,
                    step: run.state.step,
                    loss: loss_value,
                    last_checkpoint: run.last_checkpoint.clone(),
                });
            }
            let grads = precision.backward(loss, &model)?;
            lr = base_lr(cfg, self.plans, epoch, run.state.step, steps_per_epoch);
            let applied = grads.is_some();
            if let Some(mut grads) = grads {
                if let Some(max) = cfg.grad_clip_norm {
                    clip_grad_norm(&model, &mut grads, max);
                }
                model = run.optim.step(stage_lrs(lr, plan, stages), model, grads);
            }
            self.observers.step(&StepInfo {
                epoch,
                batch: batch_index,
                step: run.state.step,
                images: n,
                loss: loss_value,
                lr: lr * plan.head.lr_mult,
                applied,
                loss_scale: precision.loss_scale().map(|s| s.scale),
            });
            run.state.step += 1;

            let host = logits
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| GrafterError::Data(format!("cannot read logits: {e:?}")))?;
            acc.add(loss_value, &host, &batch.labels);
            bar.advance(n, format!("loss {loss_value:.4}"));
        }
        bar.finish();
        Ok((model, acc.finish(), lr))
    }
}
