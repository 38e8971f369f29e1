//! [`FineTune::fit`]: checks the inputs, starts or resumes the run directory, plans the
//! epochs, chooses between live training and the feature cache, and hands the epochs to the
//! epoch loop.

use burn::module::Module;
use burn::tensor::Device;

use super::checkpointer::{Checkpointer, record_err};
use super::class_weights::TrainLoss;
use super::epochs::{EpochLoop, Run};
use super::fine_tune::{FineTune, FitOutcome};
use super::plan::plans_of;
use super::precision::PrecisionStep;
use super::replicas::Replicas;
use super::reporter::Reporter;
use super::run_lock::RunLock;
use super::run_state::RunState;
use super::sampler::{Sampler, balanced_labels};
use crate::feature_cache::{self, CachedFeatures, CachedSource, FeatureCacheUse};
use crate::source::DataSource;
use crate::{Backbone, Classifier, GrafterError, Head, Result};

impl FineTune {
    /// Trains `model` on `train`, validating on `valid` after every epoch. With
    /// [`resume`](Self::resume), `model` is only a template: its weights are replaced by the
    /// latest checkpoint's.
    pub fn fit<B: Backbone, H: Head>(
        &self,
        model: Classifier<B, H>,
        train: &dyn DataSource,
        valid: &dyn DataSource,
        device: &Device,
    ) -> Result<FitOutcome<B, H>> {
        let cfg = &self.config;
        self.check_inputs(&model, train, valid)?;
        let reporter = Reporter::new(cfg.progress, cfg.epochs);
        // one writer per run folder, for as long as this call writes it (a fresh run and a
        // resumed one alike): taken before anything in the folder is read or written
        let _lock = match &self.out_dir {
            Some(dir) => Some(RunLock::acquire(dir)?),
            None => None,
        };
        let checkpointer = self
            .out_dir
            .as_ref()
            .map(|d| Checkpointer::new(d, self.writer.clone(), cfg.keep_checkpoints));
        if let Some(ck) = &checkpointer {
            ck.remove_interrupted_writes();
        }
        let loss = TrainLoss {
            task: cfg.task,
            weights: match &cfg.class_weights {
                Some(w) => Some(w.resolve(train)?.into_iter().map(|v| v as f32).collect()),
                None => None,
            },
        };
        let sampled = match cfg.sampler {
            Sampler::Shuffle => None,
            Sampler::ClassBalanced => Some(balanced_labels(train)?),
        };
        let mut optim = cfg.optimizer.build();
        let fresh = || RunState::fresh(cfg.seed, self.policy.name());
        let (model, mut state, ema_record) = match (&checkpointer, self.resume) {
            (Some(ck), true) => {
                let (model, state, record, ema) = ck.resume(model)?;
                optim = optim.load_record(record);
                // the logs of the checkpoint resumed from: a run killed between its last
                // checkpoint and that epoch's logs would otherwise keep stale ones (found
                // by the kill -9 soak)
                reporter.write_logs(ck.writer(), ck.root(), &state.history)?;
                (model, state, ema)
            }
            (Some(ck), false) => {
                ck.start(cfg)?;
                (model, fresh(), None)
            }
            (None, _) => (model, fresh(), None),
        };
        // the weight average: a copy of the model (its own running statistics: `valid()`
        // gives fresh ones), or the one saved in the checkpoint resumed from
        let ema = match (&cfg.ema, ema_record) {
            (None, _) => None,
            (Some(_), Some((path, record))) => Some(
                model
                    .valid()
                    .try_load_record(record)
                    .map_err(|e| GrafterError::checkpoint(&path, e))?,
            ),
            (Some(_), None) if self.resume => {
                let dir = checkpointer
                    .as_ref()
                    .and_then(|ck| ck.latest().ok().flatten());
                return Err(GrafterError::checkpoint(
                    dir.as_deref().unwrap_or(std::path::Path::new("")),
                    "the run keeps a weight average (ema) but the checkpoint has no ema.bpk",
                ));
            }
            (Some(_), None) => Some(model.valid()),
        };

        let stages = model.stages();
        let plans = plans_of(self.policy.as_ref(), cfg.epochs, stages.len())?;
        if self.resume && state.plans != plans[..state.plans.len().min(plans.len())] {
            return Err(GrafterError::Config(format!(
                "the policy '{}' does not give the plans the run was started with ('{}')",
                self.policy.name(),
                state.policy
            )));
        }
        state.plans = plans.clone();
        let best_record = match (&checkpointer, &state.best) {
            (Some(ck), Some(_)) => Some(ck.load_best()?),
            _ => None,
        };
        let last_checkpoint = match &checkpointer {
            Some(ck) => ck.latest()?,
            None => None,
        };
        if cfg.precision.is_mixed() {
            cfg.precision.check_device(device)?;
            for replica in &self.devices {
                cfg.precision.check_device(replica)?;
            }
        }
        if let Some(line) =
            PrecisionStep::new(cfg.precision, state.loss_scale, cfg.loss_scale).describe()
        {
            reporter.say(&line);
        }
        if self.devices.len() > 1 {
            let names: Vec<String> = self.devices.iter().map(|d| format!("{d:?}")).collect();
            reporter.say(&format!(
                "data parallel: {} replicas ({}), gradients summed on {device:?}",
                names.len(),
                names.join(", ")
            ));
        }
        let mut run = Run {
            state,
            optim,
            best_record,
            last_checkpoint,
        };
        let epochs = EpochLoop {
            cfg,
            plans: &plans,
            checkpointer: checkpointer.as_ref(),
            reporter,
            observers: &self.observers,
            pause_after: self.pause_after,
            loss,
            sampled,
            replicas: (self.devices.len() > 1).then(|| Replicas::new(&self.devices)),
        };

        // an epoch will run: only then is a feature pass worth its cost
        let left = !run.state.stopped_early
            && run.state.epochs_done < cfg.epochs
            && self.pause_after != Some(0);
        let use_cache = if left && cfg.mixup.is_some() {
            FeatureCacheUse::Off("MixUp / CutMix mix images, not features".into())
        } else if left {
            feature_cache::decide(
                self.feature_cache,
                &model.backbone,
                &stages,
                &plans,
                train,
                valid,
            )
        } else {
            FeatureCacheUse::Off("no epoch left to run".into())
        };
        let mut model = model;
        let mut ema = ema;
        match use_cache {
            FeatureCacheUse::On => {
                let Classifier { backbone, head } = model;
                match feature_cache::compute(
                    &backbone,
                    [train, valid],
                    cfg.batch_size,
                    self.feature_cache_budget,
                    &self.feature_cache_storage,
                    device,
                    &reporter,
                )? {
                    Ok((ctrain, cvalid)) => {
                        let ctrain = CachedSource {
                            cache: ctrain,
                            original: train,
                        };
                        let cvalid = CachedSource {
                            cache: cvalid,
                            original: valid,
                        };
                        let head_only = Classifier {
                            backbone: CachedFeatures::of(&backbone),
                            head,
                        };
                        let graft = |m: &Classifier<CachedFeatures, H>| Classifier {
                            backbone: backbone.clone(),
                            head: m.head.clone(),
                        };
                        let ema_head = ema.take().map(|e| Classifier {
                            backbone: CachedFeatures::of(&e.backbone),
                            head: e.head,
                        });
                        let (trained, trained_ema) = epochs.run(
                            head_only, ema_head, &ctrain, &cvalid, device, &mut run, graft,
                        )?;
                        let trained_ema = trained_ema.map(|e| graft(&e));
                        return self.outcome(graft(&trained), trained_ema, run, device);
                    }
                    Err(why) => {
                        reporter.say(&format!("feature cache off: {why}"));
                        model = Classifier { backbone, head };
                    }
                }
            }
            FeatureCacheUse::Off(why) if self.feature_cache && left => {
                reporter.say(&format!("feature cache off: {why}"));
            }
            FeatureCacheUse::Off(_) => {}
        }
        let (trained, trained_ema) = epochs.run(
            model,
            ema,
            train,
            valid,
            device,
            &mut run,
            |m: &Classifier<B, H>| m.clone(),
        )?;
        self.outcome(trained, trained_ema, run, device)
    }

    /// Errors on empty data, differing class counts, or a head of the wrong width.
    fn check_inputs<B: Backbone, H: Head>(
        &self,
        model: &Classifier<B, H>,
        train: &dyn DataSource,
        valid: &dyn DataSource,
    ) -> Result<()> {
        let cfg = &self.config;
        cfg.validate()?;
        if train.is_empty() {
            return Err(GrafterError::EmptyDataset { role: "training" });
        }
        if valid.is_empty() {
            return Err(GrafterError::EmptyDataset { role: "validation" });
        }
        if valid.num_classes() != train.num_classes() {
            return Err(GrafterError::Config(format!(
                "training data has {} classes but validation data has {}",
                train.num_classes(),
                valid.num_classes()
            )));
        }
        if model.num_outputs() != cfg.task.num_outputs(train.num_classes()) {
            return Err(GrafterError::OutputMismatch {
                head: model.num_outputs(),
                dataset: train.num_classes(),
            });
        }
        Ok(())
    }

    /// The trained classifier in inference mode on `device` (the best epoch's weights when
    /// `restore_best`), with the run's history.
    fn outcome<B: Backbone, H: Head>(
        &self,
        model: Classifier<B, H>,
        ema: Option<Classifier<B, H>>,
        run: Run,
        device: &Device,
    ) -> Result<FitOutcome<B, H>> {
        let mut model = model.valid().to_device(device);
        if self.config.restore_best
            && let Some(record) = run.best_record
        {
            model = model.try_load_record(record).map_err(record_err)?;
        }
        Ok(FitOutcome {
            model,
            ema: ema.map(|e| e.valid().to_device(device)),
            history: run.state.history,
            best: run.state.best,
            stopped_early: run.state.stopped_early,
            run_dir: self.out_dir.clone(),
        })
    }
}
