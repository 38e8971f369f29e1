//! The epoch loop: apply the epoch's plan, train one pass, evaluate, judge, checkpoint,
//! report, tell the observers — each step one of the named parts.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Device;

use super::checkpointer::Checkpointer;
use super::class_weights::TrainLoss;
use super::config::FineTuneConfig;
use super::early_stopping::{Standing, Watch};
use super::ema::EmaSelect;
use super::evaluate::{evaluate, evaluate_with_mistakes};
use super::observer::Observers;
use super::plan::apply_plan;
use super::precision::PrecisionStep;
use super::replicas::Replicas;
use super::reporter::{Reporter, TOP_LOSSES_KEPT};
use super::run_state::RunState;
use crate::history::EpochRecord;
use crate::policy::EpochPlan;
use crate::source::{DataSource, mix_seed};
use crate::{Backbone, Classifier, Head, Result, Task};

/// RNG stream of the device generator (dropout), derived from `(seed, epoch)`.
const DEVICE_RNG_STREAM: u64 = 1;
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
                if cfg.task != Task::MultiLabel {
                    self.reporter
                        .write_top_losses(ck.writer(), ck.root(), epoch, &mistakes)?;
                }
                let ema_record = ema.as_ref().map(|e| full(e).into_record());
                let saved = ck.save(
                    full(&model).into_record(),
                    ema_record,
                    &run.optim,
                    &run.state,
                )?;
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
        Ok((model, ema))
    }
}
