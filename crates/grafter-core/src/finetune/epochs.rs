//! The epoch loop: apply the epoch's plan, train one pass, evaluate, judge, checkpoint,
//! report, tell the observers — each step one of the named parts.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::checkpointer::Checkpointer;
use super::class_weights::TrainLoss;
use super::config::FineTuneConfig;
use super::early_stopping::{Standing, Watch};
use super::ema::{EmaSelect, ema_update};
use super::evaluate::{evaluate, evaluate_with_mistakes};
use super::observer::{Observers, StepInfo};
use super::plan::{apply_plan, base_lr, stage_lrs};
use super::precision::PrecisionStep;
use super::replicas::{Failure, Replicas, shard_pass};
use super::reporter::{Reporter, TOP_LOSSES_KEPT};
use super::run_state::RunState;
use super::sampler::{SAMPLER_STREAM, class_balanced_order};
use crate::history::EpochRecord;
use crate::metrics::MetricsAccumulator;
use crate::optimizer::clip_grad_norm;
use crate::policy::EpochPlan;
use crate::source::{DataSource, EpochRequest, mix_seed};
use crate::{Backbone, Classifier, GrafterError, Head, Metrics, Result, Stage, Task};

/// RNG stream of the device generator (dropout), derived from `(seed, epoch)`.
const DEVICE_RNG_STREAM: u64 = 1;
/// The stream of the MixUp / CutMix draws: one generator per (epoch, batch), so a resumed
/// run draws what the uninterrupted one did.
const MIXUP_STREAM: u64 = 5;
/// The stream of the random generators of the replica devices other than the main one.
const REPLICA_RNG_STREAM: u64 = 6;

/// The trained model and its weight average (when the run keeps one).
pub(super) type Trained<BB, H> = (Classifier<BB, H>, Option<Classifier<BB, H>>);

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
    /// The training loss (class-weighted when asked).
    pub loss: TrainLoss,
    /// The training data's labels, when the class-balanced sampler draws the passes.
    pub sampled: Option<Vec<usize>>,
    /// The data-parallel replicas, when the run trains on more than one.
    pub replicas: Option<Replicas>,
}

impl EpochLoop<'_> {
    /// The epochs left, on `model` (any backbone: the real one, or the cached features'
    /// identity) and its weight average `ema` (when the run keeps one). `full` turns a
    /// trained model into the classifier whose weights are checkpointed and restored.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run<BB: Backbone, B: Backbone, H: Head>(
        &self,
        model: Classifier<BB, H>,
        ema: Option<Classifier<BB, H>>,
        train: &dyn DataSource,
        valid: &dyn DataSource,
        device: &Device,
        run: &mut Run,
        full: impl Fn(&Classifier<BB, H>) -> Classifier<B, H>,
    ) -> Result<Trained<BB, H>> {
        let cfg = self.cfg;
        let ad = device.clone().autodiff();
        let mut model = model.fork(&ad).train();
        let mut ema = ema.map(|e| e.to_device(device));
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
            if let Some(replicas) = &self.replicas {
                let base = mix_seed(cfg.seed, epoch as u64, REPLICA_RNG_STREAM);
                replicas.seed(&ad, |r| mix_seed(base, r, REPLICA_RNG_STREAM));
            }
            let (trained, train_metrics, lr) = self.train_epoch(
                model,
                &mut ema,
                train,
                &ad,
                epoch,
                &stages,
                &mut precision,
                run,
            )?;
            model = precision.end_epoch(trained);
            if let Some(scale) = precision.loss_scale() {
                run.state.loss_scale = Some(scale);
            }
            let eval = |m: &Classifier<BB, H>| {
                evaluate(
                    m,
                    valid,
                    cfg.task,
                    cfg.batch_size,
                    device,
                    self.reporter.progress(),
                )
            };
            // the trained weights' pass also keeps their most confident mistakes
            let keep = self.checkpointer.map(|_| TOP_LOSSES_KEPT);
            let (valid_metrics, mistakes) = evaluate_with_mistakes(
                &model.valid(),
                valid,
                cfg.task,
                cfg.batch_size,
                device,
                self.reporter.progress(),
                keep,
            )?;
            let ema_metrics = match &ema {
                Some(average) => Some(eval(average)?),
                None => None,
            };

            // the candidate for best: the trained weights, or the average as selected
            let raw_value = cfg.monitor.value(&valid_metrics);
            let from_ema = match (&cfg.ema, &ema_metrics) {
                (Some(settings), Some(m)) => match settings.select {
                    EmaSelect::Raw => false,
                    EmaSelect::Ema => true,
                    EmaSelect::Better => cfg.monitor.improves(cfg.monitor.value(m), raw_value, 0.0),
                },
                _ => false,
            };
            let value = match (&ema_metrics, from_ema) {
                (Some(m), true) => cfg.monitor.value(m),
                _ => raw_value,
            };
            let mut standing = Standing::of(&run.state);
            if watch.update(&mut standing, epoch, value) {
                let record = match (&ema, from_ema) {
                    (Some(average), true) => full(average).into_record(),
                    _ => full(&model).into_record(),
                };
                if let Some(best) = standing.best.as_mut() {
                    best.ema = from_ema;
                }
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
                valid_ema: ema_metrics,
            };
            let secs = started.elapsed().as_secs_f64();
            self.reporter.epoch_done(&record, secs, train.len());
            run.state.history.push(record);
            run.state.epochs_done = epoch + 1;

            if let Some(ck) = self.checkpointer {
                let ema_record = ema.as_ref().map(|e| full(e).into_record());
                let saved = ck.save(
                    full(&model).into_record(),
                    ema_record,
                    &run.optim,
                    &run.state,
                )?;
                run.last_checkpoint = Some(saved);
                let mistakes = (cfg.task != Task::MultiLabel).then_some(&mistakes[..]);
                self.reporter
                    .write_logs(ck.writer(), ck.root(), &run.state.history, mistakes)?;
            }
            if let Some(record) = run.state.history.last() {
                self.observers.epoch_end(record);
            }
            if run.state.stopped_early {
                self.reporter
                    .stopped_early(cfg.monitor, run.state.bad_epochs);
            }
        }
        Ok((model, ema))
    }

    /// One training pass over `train` under `epoch`'s plan: the trained model, the pass's
    /// metrics and the base learning rate of its last step. Each optimiser step sums the
    /// gradients of `accumulate_steps` batches (the last step of the epoch takes what is
    /// left), so no accumulation is ever pending at an epoch's end, where checkpoints are
    /// taken; the average `ema` follows every step.
    #[allow(clippy::too_many_arguments)]
    fn train_epoch<BB: Backbone, H: Head>(
        &self,
        mut model: Classifier<BB, H>,
        ema: &mut Option<Classifier<BB, H>>,
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
        let k = cfg.accumulate_steps.max(1);
        let steps_per_epoch = steps_per_epoch(train.len(), cfg.batch_size, k);
        let mut acc = MetricsAccumulator::new(cfg.task, train.num_classes());
        let bar = self.reporter.epoch_bar(epoch, train.len());
        let request = EpochRequest {
            epoch,
            seed: cfg.seed,
            batch_size: cfg.batch_size,
            train: true,
        };
        let mut lr = 0.0;
        let mut pending = Pending::default();
        let batches = match &self.sampled {
            None => train.batches(request),
            Some(labels) => {
                let mut rng = request.rng(SAMPLER_STREAM);
                let order = class_balanced_order(labels, train.num_classes(), &mut rng)?;
                train.batches_of(order, request).ok_or_else(|| {
                    GrafterError::Config(
                        "the class-balanced sampler needs a data source that serves a given \
                         order (DataSource::batches_of)"
                            .into(),
                    )
                })?
            }
        };
        let mut batches = batches.enumerate().peekable();
        while let Some((batch_index, batch)) = batches.next() {
            let batch = batch?;
            batch.validate()?;
            let n = batch.shape[0];
            let targets = cfg
                .task
                .targets(&batch.labels, outputs, cfg.label_smoothing, ad)?;
            let images = Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), ad);
            let (images, targets) = match &cfg.mixup {
                Some(mixup) if cfg.mixup_off_epoch.is_none_or(|off| epoch < off) => {
                    let seed = mix_seed(cfg.seed, epoch as u64, MIXUP_STREAM);
                    let mut rng =
                        StdRng::seed_from_u64(mix_seed(seed, batch_index as u64, MIXUP_STREAM));
                    let [_, _, h, w] = batch.shape;
                    let draws = mixup.draw(n, h, w, &mut rng);
                    mixup.apply(images, targets, &draws)
                }
                _ => (images, targets),
            };
            let pass = precision.pass();
            let shards = match &self.replicas {
                Some(replicas) => {
                    let main = ad.clone().without_autodiff();
                    let stepped = replicas.step(
                        &model,
                        images,
                        targets,
                        &batch.labels,
                        pass,
                        &self.loss,
                        &main,
                    );
                    match stepped {
                        Ok(shards) => shards,
                        Err(failure) => {
                            bar.finish();
                            return Err(match failure {
                                Failure::Error(e) => e,
                                Failure::Panicked {
                                    replica,
                                    device,
                                    message,
                                } => GrafterError::Replica {
                                    replica,
                                    device,
                                    epoch,
                                    step: run.state.step,
                                    message,
                                    last_checkpoint: run.last_checkpoint.clone(),
                                },
                            });
                        }
                    }
                }
                // without accumulation the batch's loss is the step's: weight 1, divisor 1
                None => vec![shard_pass(
                    &model,
                    images,
                    targets,
                    batch.labels.clone(),
                    pass,
                    &self.loss,
                    ad,
                    k == 1,
                )?],
            };
            let mut loss_sum = 0.0;
            for shard in shards {
                if !shard.loss.is_finite() {
                    bar.finish();
                    return Err(GrafterError::Diverged {
                        epoch,
                        step: run.state.step,
                        loss: shard.loss,
                        last_checkpoint: run.last_checkpoint.clone(),
                    });
                }
                loss_sum += shard.loss * shard.images as f64;
                acc.add_weighted(shard.loss, shard.norm, &shard.logits, &shard.labels);
                pending.add(&model, shard.grads, shard.weight, shard.images, shard.loss);
            }
            bar.advance(n, format!("loss {:.4}", loss_sum / n as f64));

            pending.batches += 1;
            let last = batches.peek().is_none();
            if pending.batches < k && !last {
                continue;
            }
            let (grads, divisor, images, step_loss) = pending.take();
            // a step whose every image is of a zero-weight class has nothing to divide by
            let divisor = if divisor > 0.0 { divisor } else { 1.0 };
            let grads = precision.finish_step(grads, divisor, &model)?;
            lr = base_lr(cfg, self.plans, epoch, run.state.step, steps_per_epoch);
            let applied = grads.is_some();
            if let Some(mut grads) = grads {
                if let Some(max) = cfg.grad_clip_norm {
                    clip_grad_norm(&model, &mut grads, max);
                }
                model = run.optim.step(stage_lrs(lr, plan, stages), model, grads);
            }
            if let (Some(settings), Some(average)) = (&cfg.ema, ema.take()) {
                let decay = settings.decay_at(run.state.step + 1);
                *ema = Some(ema_update(average, &model, decay));
            }
            self.observers.step(&StepInfo {
                epoch,
                batch: batch_index,
                step: run.state.step,
                images,
                loss: step_loss,
                lr: lr * plan.head.lr_mult,
                applied,
                loss_scale: precision.loss_scale().map(|s| s.scale),
            });
            run.state.step += 1;
        }
        bar.finish();
        Ok((model, acc.finish(), lr))
    }
}

/// Optimiser steps in an epoch of `len` images: batches of `batch_size`, `accumulate` of
/// them per step, the last step taking what is left.
pub(crate) fn steps_per_epoch(len: usize, batch_size: usize, accumulate: usize) -> usize {
    len.div_ceil(batch_size.max(1)).div_ceil(accumulate.max(1))
}

/// The gradients of the micro-batches of the step being accumulated.
#[derive(Default)]
struct Pending {
    grads: Option<GradientsParams>,
    /// Batches in the step so far (each one part, or one per replica).
    batches: usize,
    weights: f64,
    images: usize,
    loss_sum: f64,
}

impl Pending {
    /// Adds one micro-batch's (weighted) gradients.
    fn add<M: Module>(
        &mut self,
        model: &M,
        grads: GradientsParams,
        weight: f64,
        images: usize,
        loss: f64,
    ) {
        self.grads = Some(match self.grads.take() {
            None => grads,
            Some(sum) => {
                let mut acc = GradientsAccumulator::<M>::new();
                acc.accumulate(model, sum);
                acc.accumulate(model, grads);
                acc.grads()
            }
        });
        self.weights += weight;
        self.images += images;
        self.loss_sum += loss * images as f64;
    }

    /// The summed gradients, the sum of the weights, the images and their mean loss; empties
    /// the accumulation.
    fn take(&mut self) -> (GradientsParams, f64, usize, f64) {
        let p = std::mem::take(self);
        let loss = p.loss_sum / p.images.max(1) as f64;
        (p.grads.unwrap_or_default(), p.weights, p.images, loss)
    }
}
