//! One training pass of the epoch loop: batches in the sampler's order, MixUp / CutMix,
//! forward and backward on one device or the replicas, gradient accumulation, the optimiser
//! step under the epoch's plan, the weight average and the observers' step hook.

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::accumulation::{Pending, steps_per_epoch};
use super::ema::ema_update;
use super::epochs::{EpochLoop, Run};
use super::observer::StepInfo;
use super::plan::{base_lr, stage_lrs};
use super::precision::PrecisionStep;
use super::replicas::{Failure, shard_pass};
use super::sampler::{SAMPLER_STREAM, class_balanced_order};
use crate::metrics::MetricsAccumulator;
use crate::optimizer::clip_grad_norm;
use crate::source::{DataSource, EpochRequest, mix_seed};
use crate::{Backbone, Classifier, GrafterError, Head, Metrics, Result, Stage};

/// The stream of the MixUp / CutMix draws: one generator per (epoch, batch), so a resumed
/// run draws what the uninterrupted one did.
const MIXUP_STREAM: u64 = 5;

impl EpochLoop<'_> {
    /// One training pass over `train` under `epoch`'s plan: the trained model, the pass's
    /// metrics and the base learning rate of its last step. Each optimiser step sums the
    /// gradients of `accumulate_steps` batches (the last step of the epoch takes what is
    /// left), so no accumulation is ever pending at an epoch's end, where checkpoints are
    /// taken; the average `ema` follows every step.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn train_epoch<BB: Backbone, H: Head>(
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
