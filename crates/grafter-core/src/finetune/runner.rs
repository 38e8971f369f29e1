//! The fine-tune loop: policy plan → per-stage learning rates → loss → optimiser step →
//! metrics → checkpoint → logs and plots, epoch after epoch, resumable bit for bit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::{Module, ParamGroup};
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::{GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, FloatDType, Tensor, TensorData};

use super::config::FineTuneConfig;
use super::evaluate::evaluate;
use super::feature_cache::{CachedFeatures, CachedSource, FeatureCacheUse, Features, blocker};
use super::mixed_precision::{FrozenTensors, LossScale, autocast, cast_input};
use super::run_state::{BestEpoch, RunState, STATE_VERSION};
use crate::checkpoint::{CheckpointDir, FileWriter, FsWriter, files, read_file, write_atomic};
use crate::data::{DataSource, EpochRequest, mix_seed};
use crate::history::{EpochRecord, to_jsonl};
use crate::metrics::MetricsAccumulator;
use crate::optimizer::clip_grad_norm;
use crate::plot::curves_svg;
use crate::policy::{EpochPlan, FreezePolicy};
use crate::progress::PassProgress;
use crate::{Backbone, Classifier, GrafterError, Head, Result, Stage};

/// RNG stream ids derived from `(seed, epoch)`.
const DEVICE_RNG_STREAM: u64 = 1;

/// Fine-tunes a [`Classifier`] under a [`FreezePolicy`].
///
/// A run is reproducible bit for bit from its seed, and a resumed run equals an uninterrupted
/// one. When the policy keeps the backbone frozen throughout and the data are fixed (no
/// augmentation), the head trains from backbone features computed once (see
/// [`feature_cache`](Self::feature_cache)). Burn's CPU backend keeps one random generator per process, so this holds for one
/// training at a time per process: concurrent runs in one process draw from the same stream.
///
/// ```no_run
/// # use burn::tensor::Device;
/// # use grafter_core::{Backbone, Classifier, Head, FineTune, FineTuneConfig};
/// # use grafter_core::data::InMemoryDataset;
/// # use grafter_core::policy::TwoPhase;
/// # fn demo<B: Backbone, H: Head>(model: Classifier<B, H>, train: InMemoryDataset, valid: InMemoryDataset) -> grafter_core::Result<()> {
/// let outcome = FineTune::new(FineTuneConfig::fine_tune(1, 4, 1e-3), TwoPhase::new(1, 100.0))
///     .out_dir("runs/pets")
///     .fit(model, &train, &valid, &Device::flex())?;
/// println!("best top-1 {:.1}%", 100.0 * outcome.history.last().unwrap().valid.top1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FineTune {
    config: FineTuneConfig,
    policy: Box<dyn FreezePolicy>,
    out_dir: Option<PathBuf>,
    writer: Arc<dyn FileWriter>,
    resume: bool,
    pause_after: Option<usize>,
    feature_cache: bool,
    feature_cache_budget: u64,
}

/// Default memory budget of the automatic feature cache: 4 GB.
pub const DEFAULT_FEATURE_CACHE_BUDGET: u64 = 4_000_000_000;

/// What a finished (or early-stopped) run returns.
#[derive(Debug)]
pub struct FitOutcome<B, H> {
    /// The trained model in inference mode on the caller's device: the best epoch's weights
    /// when `restore_best` is set, else the last epoch's.
    pub model: Classifier<B, H>,
    /// Metrics of every epoch.
    pub history: Vec<EpochRecord>,
    /// The best epoch by the monitored metric.
    pub best: Option<BestEpoch>,
    /// True when early stopping ended the run.
    pub stopped_early: bool,
    /// The run directory, when checkpointing was on.
    pub run_dir: Option<PathBuf>,
}

impl FineTune {
    /// A run with `config` and `policy`, in memory only until [`out_dir`](Self::out_dir).
    pub fn new(config: FineTuneConfig, policy: impl FreezePolicy + 'static) -> Self {
        Self {
            config,
            policy: Box::new(policy),
            out_dir: None,
            writer: Arc::new(FsWriter),
            resume: false,
            pause_after: None,
            feature_cache: true,
            feature_cache_budget: DEFAULT_FEATURE_CACHE_BUDGET,
        }
    }

    /// Continues the run saved in `dir`, with the configuration saved there. The policy must
    /// be the one the run started with (checked against the saved plans).
    pub fn resume(dir: impl AsRef<Path>, policy: impl FreezePolicy + 'static) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| GrafterError::io(&path, e))?;
        let config = config_from_json(&text)
            .map_err(|e| GrafterError::checkpoint(&path, format!("invalid config: {e}")))?;
        Ok(Self {
            config,
            policy: Box::new(policy),
            out_dir: Some(dir.to_path_buf()),
            writer: Arc::new(FsWriter),
            resume: true,
            pause_after: None,
            feature_cache: true,
            feature_cache_budget: DEFAULT_FEATURE_CACHE_BUDGET,
        })
    }

    /// Writes checkpoints, `config.json`, `metrics.jsonl`, `curves.svg` and `best.bpk` under
    /// `dir`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Replaces the file writer (used to simulate failing disks).
    pub fn writer(mut self, writer: Arc<dyn FileWriter>) -> Self {
        self.writer = writer;
        self
    }

    /// Stops this call after `epochs` epochs (counted from where it starts), leaving a
    /// resumable run: for time-boxed sessions on shared or preemptible machines.
    pub fn pause_after(mut self, epochs: usize) -> Self {
        self.pause_after = Some(epochs);
        self
    }

    /// Lets [`fit`](Self::fit) train the head from cached backbone features when that gives
    /// the same result as running the backbone every step (on by default).
    ///
    /// When the policy keeps every backbone stage frozen for the whole run and both data
    /// sources are [cacheable](DataSource::cacheable) (no augmentation), the loop computes the
    /// backbone's features once, in inference mode, keeps them in memory and trains the head
    /// from them: one backbone pass instead of one per epoch. The head sees the features of
    /// exactly the images, batches and order it would have seen, so the weights, metrics,
    /// checkpoints and `metrics.jsonl` are those of the uncached run (up to floating-point
    /// rounding), and the run directory resumes either way. The loop says (log and progress
    /// output) when it uses the cache, and when it does not although on, why;
    /// [`feature_cache_use`](Self::feature_cache_use) tells in advance.
    ///
    /// ```
    /// use grafter_core::FineTune;
    /// use grafter_core::finetune::FeatureCacheUse;
    /// use grafter_core::policy::{Frozen, TwoPhase};
    /// use grafter_core::prelude::*;
    /// # use burn::tensor::Device;
    /// # use grafter_core::Stage;
    /// # #[derive(burn::module::Module, Debug)]
    /// # struct Id { c: usize }
    /// # impl Backbone for Id {
    /// #     fn forward_features(&self, x: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<4> { x }
    /// #     fn feature_channels(&self) -> usize { self.c }
    /// #     fn stages(&self) -> Vec<Stage> { vec![Stage::of("all", self)] }
    /// #     fn preprocess(&self) -> Preprocess { Preprocess::imagenet() }
    /// # }
    /// let device = Device::flex();
    /// let head = LinearHeadConfig::new(3, 2).try_init(&device)?;
    /// let model = Classifier::new(Id { c: 3 }, head)?;
    /// let data = InMemoryDataset::new(vec![0.5; 4 * 3 * 2 * 2], [3, 2, 2], vec![0, 1, 0, 1], 2)?;
    /// let config = FineTuneConfig::new().with_epochs(2).with_progress(false);
    ///
    /// // frozen backbone, fixed images: the head trains from features computed once
    /// let frozen = FineTune::new(config.clone(), Frozen);
    /// assert!(frozen.feature_cache_use(&model, &data, &data)?.is_on());
    /// // the second phase unfreezes the backbone: live training
    /// let two_phase = FineTune::new(config.clone(), TwoPhase::new(1, 10.0));
    /// assert!(!two_phase.feature_cache_use(&model, &data, &data)?.is_on());
    /// // or turned off by hand
    /// let live = FineTune::new(config, Frozen).feature_cache(false);
    /// assert!(matches!(live.feature_cache_use(&model, &data, &data)?, FeatureCacheUse::Off(_)));
    /// # Ok::<(), grafter_core::GrafterError>(())
    /// ```
    pub fn feature_cache(mut self, on: bool) -> Self {
        self.feature_cache = on;
        self
    }

    /// Bytes the automatic feature cache may hold in memory (default 4 GB, see
    /// [`DEFAULT_FEATURE_CACHE_BUDGET`]). Checked after the first batch, when the feature size
    /// is known; above it the loop says so and trains live. Un-pooled ResNet-50 features at
    /// 224 take 400 kB per image, so the full Food-101 would need 30 GB.
    pub fn feature_cache_budget(mut self, bytes: u64) -> Self {
        self.feature_cache_budget = bytes;
        self
    }

    /// Shows or hides progress output (overrides the configuration).
    pub fn progress(mut self, on: bool) -> Self {
        self.config.progress = on;
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &FineTuneConfig {
        &self.config
    }

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
        let outputs = cfg.task.num_outputs(train.num_classes());
        if model.num_outputs() != outputs {
            return Err(GrafterError::OutputMismatch {
                head: model.num_outputs(),
                dataset: train.num_classes(),
            });
        }

        let checkpoints = self
            .out_dir
            .as_ref()
            .map(|d| CheckpointDir::new(d, self.writer.clone(), cfg.keep_checkpoints));
        let mut optim = cfg.optimizer.build();
        let (model, mut state) = match (&checkpoints, self.resume) {
            (Some(ck), true) => {
                let dir = ck.latest()?.ok_or_else(|| {
                    GrafterError::checkpoint(ck.root(), "no checkpoint to resume from")
                })?;
                let (model, state, record) = load_checkpoint(model, &dir)?;
                optim = optim.load_record(record);
                (model, state)
            }
            (Some(ck), false) => {
                if ck.latest()?.is_some() {
                    return Err(GrafterError::checkpoint(
                        ck.root(),
                        "already holds a run; resume it with FineTune::resume or choose another out_dir",
                    ));
                }
                let json = serde_json::to_string_pretty(cfg)
                    .map_err(|e| GrafterError::Config(e.to_string()))?;
                write_atomic(
                    self.writer.as_ref(),
                    &ck.root().join("config.json"),
                    json.as_bytes(),
                )?;
                (model, self.fresh_state(0))
            }
            (None, _) => (model, self.fresh_state(0)),
        };

        let stages = model.stages();
        let plans: Vec<EpochPlan> = (0..cfg.epochs)
            .map(|e| self.policy.plan(e, stages.len()))
            .collect();
        check_plans(&plans, stages.len())?;
        if self.resume && state.plans != plans[..state.plans.len().min(plans.len())] {
            return Err(GrafterError::Config(format!(
                "the policy '{}' does not give the plans the run was started with ('{}')",
                self.policy.name(),
                state.policy
            )));
        }
        state.plans = plans.clone();

        let best_record: Option<ModuleRecord> = match (&checkpoints, &state.best) {
            (Some(ck), Some(_)) => {
                let path = ck.root().join("best.bpk");
                Some(record_from_bytes(&path, read_file(&path)?)?)
            }
            _ => None,
        };
        let last_checkpoint = match &checkpoints {
            Some(ck) => ck.latest()?,
            None => None,
        };
        let mut run = Run {
            state,
            optim,
            best_record,
            last_checkpoint,
            checkpoints,
        };

        if cfg.precision.is_mixed() {
            cfg.precision.check_device(device)?;
            self.say(&format!(
                "mixed precision: {} forward and backward, f32 master weights{}",
                cfg.precision,
                if cfg.precision.needs_loss_scaling() {
                    format!(
                        ", dynamic loss scale from {}",
                        run.state
                            .loss_scale
                            .map(|l| l.scale)
                            .unwrap_or(cfg.loss_scale)
                    )
                } else {
                    String::new()
                }
            ));
        }
        let mut model = model;
        // an epoch will run: only then is a feature pass worth its cost
        let left = !run.state.stopped_early
            && run.state.epochs_done < cfg.epochs
            && self.pause_after != Some(0);
        if left {
            match self.cache_use(&model.backbone, &stages, &plans, train, valid) {
                FeatureCacheUse::On => {
                    let Classifier { backbone, head } = model;
                    match self.cache_features(&backbone, train, valid, device)? {
                        Ok((ctrain, cvalid)) => {
                            let ctrain = CachedSource {
                                features: ctrain,
                                original: train,
                            };
                            let cvalid = CachedSource {
                                features: cvalid,
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
                            let trained = self.run_epochs(
                                head_only, &ctrain, &cvalid, device, &plans, &mut run, graft,
                            )?;
                            let model = graft(&trained);
                            return self.outcome(model, run, device);
                        }
                        Err(why) => {
                            self.say(&format!("feature cache off: {why}"));
                            model = Classifier { backbone, head };
                        }
                    }
                }
                FeatureCacheUse::Off(why) if self.feature_cache => {
                    self.say(&format!("feature cache off: {why}"));
                }
                FeatureCacheUse::Off(_) => {}
            }
        }
        let trained = self.run_epochs(
            model,
            train,
            valid,
            device,
            &plans,
            &mut run,
            |m: &Classifier<B, H>| m.clone(),
        )?;
        self.outcome(trained, run, device)
    }

    /// Whether [`fit`](Self::fit) would train `model`'s head from cached backbone features
    /// with these data, and if not, why.
    ///
    /// The cache is used when it is on ([`feature_cache`](Self::feature_cache)), the policy
    /// freezes every backbone stage in every epoch, the stages cover every parameter and
    /// training flag of the backbone, and both sources are
    /// [cacheable](DataSource::cacheable). `fit` falls back to live training, saying so, when
    /// the feature pass does not yield every sample (files that fail to load).
    pub fn feature_cache_use<B: Backbone, H: Head>(
        &self,
        model: &Classifier<B, H>,
        train: &dyn DataSource,
        valid: &dyn DataSource,
    ) -> Result<FeatureCacheUse> {
        let stages = model.stages();
        let plans: Vec<EpochPlan> = (0..self.config.epochs)
            .map(|e| self.policy.plan(e, stages.len()))
            .collect();
        check_plans(&plans, stages.len())?;
        Ok(self.cache_use(&model.backbone, &stages, &plans, train, valid))
    }

    fn cache_use<B: Backbone>(
        &self,
        backbone: &B,
        stages: &[Stage],
        plans: &[EpochPlan],
        train: &dyn DataSource,
        valid: &dyn DataSource,
    ) -> FeatureCacheUse {
        if !self.feature_cache {
            return FeatureCacheUse::Off("turned off with FineTune::feature_cache(false)".into());
        }
        match blocker(backbone, stages, plans, train, valid) {
            Some(why) => FeatureCacheUse::Off(why),
            None => FeatureCacheUse::On,
        }
    }

    /// One inference pass of the backbone over both sources. The inner `Err` says why the
    /// features cannot be used (the loop then trains live).
    fn cache_features<B: Backbone>(
        &self,
        backbone: &B,
        train: &dyn DataSource,
        valid: &dyn DataSource,
        device: &Device,
    ) -> Result<CachedOrWhyNot> {
        let cfg = &self.config;
        self.say(&format!(
            "feature cache: backbone frozen for all {} epochs; computing features of {} + {} images once",
            cfg.epochs,
            train.len(),
            valid.len()
        ));
        let started = Instant::now();
        let backbone = backbone.valid().to_device(device);
        let bar = PassProgress::new("features".into(), train.len() + valid.len(), cfg.progress);
        let result = (|| {
            let mut budget = self.feature_cache_budget;
            let mut over = None;
            let too_big = |needed: u64| {
                format!(
                    "the features would take {:.1} GB, more than the {:.1} GB budget \
                     (FineTune::feature_cache_budget; grafter_data::FeatureCache can keep them \
                     in an f16 file instead)",
                    needed as f64 / 1e9,
                    self.feature_cache_budget as f64 / 1e9
                )
            };
            let mut computed = Vec::with_capacity(2);
            for (source, role) in [(train, "training"), (valid, "validation")] {
                let features = Features::compute(
                    &backbone,
                    source,
                    cfg.batch_size,
                    device,
                    &bar,
                    &mut budget,
                    &mut over,
                )?;
                match features {
                    Some(features) => computed.push(features),
                    None => {
                        // what the earlier sources took, plus what this one would
                        let spent = self.feature_cache_budget - budget;
                        return Ok(Err(over.map(|n| too_big(n + spent)).unwrap_or_else(|| {
                            format!(
                                "the feature pass did not yield every {role} image (files failed to load)"
                            )
                        })));
                    }
                }
            }
            let cvalid = computed.pop().expect("two sources");
            let ctrain = computed.pop().expect("two sources");
            Ok(Ok((ctrain, cvalid)))
        })();
        bar.finish();
        if let Ok(Ok((t, v))) = &result {
            self.say(&format!(
                "feature cache: {:.1} MB of features in {:.1}s; training the head from them",
                t.megabytes() + v.megabytes(),
                started.elapsed().as_secs_f64()
            ));
        }
        result
    }

    /// Logs `line`, and prints it when progress output is on.
    fn say(&self, line: &str) {
        log::info!("{line}");
        if self.config.progress {
            eprintln!("{line}");
        }
    }

    /// The epochs left, on `model` (any backbone: the real one, or the cached features'
    /// identity). `full` turns the trained model into the classifier whose weights are
    /// checkpointed and restored.
    #[allow(clippy::too_many_arguments)]
    fn run_epochs<BB: Backbone, B: Backbone, H: Head>(
        &self,
        model: Classifier<BB, H>,
        train: &dyn DataSource,
        valid: &dyn DataSource,
        device: &Device,
        plans: &[EpochPlan],
        run: &mut Run,
        full: impl Fn(&Classifier<BB, H>) -> Classifier<B, H>,
    ) -> Result<Classifier<BB, H>> {
        let cfg = &self.config;
        let outputs = model.num_outputs();
        let ad = device.clone().autodiff();
        let mut model = model.fork(&ad).train();
        let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
        let state = &mut run.state;
        let precision = cfg.precision;
        let mut scaler = state
            .loss_scale
            .unwrap_or_else(|| LossScale::new(precision, cfg.loss_scale));

        let first_epoch = state.epochs_done;
        for epoch in first_epoch..cfg.epochs {
            if state.stopped_early || self.pause_after.is_some_and(|n| epoch - first_epoch >= n) {
                break;
            }
            let started = Instant::now();
            let plan = &plans[epoch];
            let stages = model.stages();
            model = apply_plan(model, plan, &stages);
            let frozen = precision
                .is_mixed()
                .then(|| FrozenTensors::of(&model, &frozen_groups(&model, plan, &stages)));
            ad.seed(mix_seed(cfg.seed, epoch as u64, DEVICE_RNG_STREAM));

            let (phase_start, phase_len) = phase_span(plans, epoch);
            let phase_steps = phase_len * steps_per_epoch;
            let mut acc = MetricsAccumulator::new(cfg.task, train.num_classes());
            let bar = PassProgress::new(
                format!("epoch {}/{}", epoch + 1, cfg.epochs),
                train.len(),
                cfg.progress,
            );
            let request = EpochRequest {
                epoch,
                seed: cfg.seed,
                batch_size: cfg.batch_size,
                train: true,
            };
            let mut lr = 0.0;
            for batch in train.batches(request) {
                let batch = batch?;
                batch.validate()?;
                let n = batch.shape[0];
                let targets = cfg
                    .task
                    .targets(&batch.labels, outputs, cfg.label_smoothing, &ad)?;
                let images =
                    Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), &ad);
                let logits = if precision.is_mixed() {
                    autocast(&model, precision)
                        .forward(cast_input(images, precision))
                        .cast(FloatDType::F32)
                } else {
                    model.forward(images)
                };
                let loss = cfg.task.loss(logits.clone(), targets);
                let loss_value: f64 = loss.clone().into_scalar::<f64>();
                if !loss_value.is_finite() {
                    bar.finish();
                    return Err(GrafterError::Diverged {
                        epoch,
                        step: state.step,
                        loss: loss_value,
                        last_checkpoint: run.last_checkpoint.clone(),
                    });
                }
                let (mut grads, take_step) = if precision.is_mixed() {
                    let scaled = loss.mul_scalar(scaler.scale);
                    let mut grads = GradientsParams::from_grads(scaled.backward(), &model);
                    let ok = scaler.unscale(precision, &model, &mut grads)?;
                    (grads, ok)
                } else {
                    (GradientsParams::from_grads(loss.backward(), &model), true)
                };
                if let Some(max) = cfg.grad_clip_norm {
                    clip_grad_norm(&model, &mut grads, max);
                }
                let step_in_phase = state.step - phase_start * steps_per_epoch;
                lr = cfg.lr * cfg.schedule.factor(step_in_phase, phase_steps);
                if take_step {
                    model = run.optim.step(stage_lrs(lr, plan, &stages), model, grads);
                }
                state.step += 1;

                let host = logits
                    .into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| GrafterError::Data(format!("cannot read logits: {e:?}")))?;
                acc.add(loss_value, &host, &batch.labels);
                bar.advance(n, format!("loss {loss_value:.4}"));
            }
            bar.finish();
            if let Some(frozen) = &frozen {
                model = frozen.restore_f32(model);
                state.loss_scale = Some(scaler);
            }
            let train_metrics = acc.finish();
            let valid_metrics = evaluate(
                &model.valid(),
                valid,
                cfg.task,
                cfg.batch_size,
                device,
                cfg.progress,
            )?;

            let value = cfg.monitor.value(&valid_metrics);
            let min_delta = cfg.early_stopping.map(|e| e.min_delta).unwrap_or(0.0);
            let improved = match state.best {
                None => true,
                Some(b) => cfg.monitor.improves(value, b.value, min_delta),
            };
            if improved {
                state.best = Some(BestEpoch { epoch, value });
                state.bad_epochs = 0;
                let record = full(&model).into_record();
                if let Some(ck) = &run.checkpoints {
                    let bytes = record.clone().into_bytes().map_err(record_err)?;
                    write_atomic(self.writer.as_ref(), &ck.root().join("best.bpk"), &bytes)?;
                }
                run.best_record = Some(record);
            } else {
                state.bad_epochs += 1;
            }
            if let Some(es) = cfg.early_stopping
                && state.bad_epochs > es.patience
            {
                state.stopped_early = true;
            }

            let record = EpochRecord {
                epoch,
                step: state.step,
                lr: lr * plan.head.lr_mult,
                plan: plan.clone(),
                train: train_metrics,
                valid: valid_metrics,
            };
            if cfg.progress {
                eprintln!(
                    "{}",
                    summary_line(
                        &record,
                        cfg.epochs,
                        started.elapsed().as_secs_f64(),
                        train.len()
                    )
                );
            }
            state.history.push(record);
            state.epochs_done = epoch + 1;

            if let Some(ck) = &run.checkpoints {
                let model_bytes = full(&model)
                    .into_record()
                    .into_bytes()
                    .map_err(record_err)?;
                let optim_bytes = run.optim.to_record().into_bytes().map_err(record_err)?;
                let state_bytes = serde_json::to_vec_pretty(&*state)
                    .map_err(|e| GrafterError::Config(e.to_string()))?;
                run.last_checkpoint = Some(ck.save(
                    state.epochs_done,
                    &[
                        (files::MODEL, &model_bytes),
                        (files::OPTIMIZER, &optim_bytes),
                        (files::STATE, &state_bytes),
                    ],
                )?);
                write_atomic(
                    self.writer.as_ref(),
                    &ck.root().join("metrics.jsonl"),
                    to_jsonl(&state.history).as_bytes(),
                )?;
                write_atomic(
                    self.writer.as_ref(),
                    &ck.root().join("curves.svg"),
                    curves_svg(&state.history)?.as_bytes(),
                )?;
            }
            if state.stopped_early && cfg.progress {
                eprintln!(
                    "early stopping: no improvement of {:?} for {} epochs",
                    cfg.monitor, state.bad_epochs
                );
            }
        }
        Ok(model)
    }

    /// The trained classifier in inference mode on `device` (the best epoch's weights when
    /// `restore_best`), with the run's history.
    fn outcome<B: Backbone, H: Head>(
        &self,
        model: Classifier<B, H>,
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
            history: run.state.history,
            best: run.state.best,
            stopped_early: run.state.stopped_early,
            run_dir: self.out_dir.clone(),
        })
    }

    fn fresh_state(&self, step: usize) -> RunState {
        RunState {
            version: STATE_VERSION,
            epochs_done: 0,
            step,
            seed: self.config.seed,
            history: Vec::new(),
            best: None,
            bad_epochs: 0,
            stopped_early: false,
            policy: self.policy.name(),
            plans: Vec::new(),
            loss_scale: None,
        }
    }
}

/// The features of the training and validation data, or why they cannot stand in for the
/// backbone.
type CachedOrWhyNot = std::result::Result<(Features, Features), String>;

/// What the epochs of a run carry from one to the next.
struct Run {
    state: RunState,
    optim: ModuleOptimizer,
    best_record: Option<ModuleRecord>,
    last_checkpoint: Option<PathBuf>,
    checkpoints: Option<CheckpointDir>,
}

/// A saved `config.json`, with the defaults for settings added since it was written (a run
/// started before mixed precision existed has no `precision`).
fn config_from_json(text: &str) -> std::result::Result<FineTuneConfig, String> {
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

fn record_err(e: burn::store::RecordError) -> GrafterError {
    GrafterError::Config(format!("cannot serialise a record: {e}"))
}

fn record_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<ModuleRecord> {
    ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| GrafterError::checkpoint(path, e))
}

/// Loads model weights (with their parameter ids), run state and optimiser record.
fn load_checkpoint<B: Backbone, H: Head>(
    model: Classifier<B, H>,
    dir: &Path,
) -> Result<(Classifier<B, H>, RunState, OptimizerRecord)> {
    let model_path = dir.join(files::MODEL);
    let record = record_from_bytes(&model_path, read_file(&model_path)?)?;
    let model = model
        .try_load_record(record)
        .map_err(|e| GrafterError::checkpoint(&model_path, e))?;
    let optim_path = dir.join(files::OPTIMIZER);
    let optim = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(read_file(&optim_path)?))
        .map_err(|e| GrafterError::checkpoint(&optim_path, e))?;
    let state_path = dir.join(files::STATE);
    let state: RunState = serde_json::from_slice(&read_file(&state_path)?)
        .map_err(|e| GrafterError::checkpoint(&state_path, e))?;
    if state.version != STATE_VERSION {
        return Err(GrafterError::checkpoint(
            &state_path,
            format!(
                "state format version {} is not supported (expected {STATE_VERSION})",
                state.version
            ),
        ));
    }
    Ok((model, state, optim))
}

fn check_plans(plans: &[EpochPlan], num_stages: usize) -> Result<()> {
    for (e, plan) in plans.iter().enumerate() {
        if plan.stages.len() != num_stages {
            return Err(GrafterError::Config(format!(
                "the policy planned {} stages for epoch {e} but the backbone has {num_stages}",
                plan.stages.len()
            )));
        }
        let all = plan.stages.iter().chain(std::iter::once(&plan.head));
        if let Some(bad) = all
            .filter(|s| s.trainable)
            .find(|s| !(s.lr_mult.is_finite() && s.lr_mult >= 0.0))
        {
            return Err(GrafterError::Config(format!(
                "the policy gave epoch {e} a learning-rate multiplier of {}",
                bad.lr_mult
            )));
        }
    }
    Ok(())
}

/// First epoch and length (in epochs) of the phase containing `epoch`.
fn phase_span(plans: &[EpochPlan], epoch: usize) -> (usize, usize) {
    let phase = plans[epoch].phase;
    let start = (0..=epoch)
        .rev()
        .take_while(|&e| plans[e].phase == phase)
        .last()
        .unwrap_or(epoch);
    let len = plans[start..]
        .iter()
        .take_while(|p| p.phase == phase)
        .count();
    (start, len)
}

/// Unfreezes everything, then freezes what the plan says: no gradient and BatchNorm in
/// inference mode for each frozen stage (Burn's `freeze_group` clears both).
fn apply_plan<B: Backbone, H: Head>(
    model: Classifier<B, H>,
    plan: &EpochPlan,
    stages: &[Stage],
) -> Classifier<B, H> {
    let mut model = model.unfreeze();
    for (stage, setting) in stages.iter().zip(&plan.stages) {
        if !setting.trainable {
            model = model.freeze_group(stage.params.clone());
        }
    }
    if !plan.head.trainable {
        let head = model.head_params();
        model = model.freeze_group(head);
    }
    model
}

/// The parameter groups `plan` keeps frozen.
fn frozen_groups<B: Backbone, H: Head>(
    model: &Classifier<B, H>,
    plan: &EpochPlan,
    stages: &[Stage],
) -> Vec<ParamGroup> {
    let mut groups: Vec<ParamGroup> = stages
        .iter()
        .zip(&plan.stages)
        .filter(|(_, setting)| !setting.trainable)
        .map(|(stage, _)| stage.params.clone())
        .collect();
    if !plan.head.trainable {
        groups.push(model.head_params());
    }
    groups
}

/// One learning rate per stage: the head (and anything outside the stages) at
/// `lr × head multiplier`, each trainable stage at `lr × its multiplier`.
fn stage_lrs(lr: f64, plan: &EpochPlan, stages: &[Stage]) -> ModuleLearningRate {
    let mut scheduler = ModuleLrScheduler::new(lr * plan.head.lr_mult);
    for (stage, setting) in stages.iter().zip(&plan.stages) {
        if setting.trainable {
            scheduler = scheduler.with_group(stage.params.clone(), lr * setting.lr_mult);
        }
    }
    scheduler.step()
}

fn summary_line(r: &EpochRecord, epochs: usize, secs: f64, images: usize) -> String {
    let top5 = r
        .valid
        .top5
        .map(|t| format!(" top5 {:5.1}%", 100.0 * t))
        .unwrap_or_default();
    format!(
        "epoch {:>3}/{epochs}  train loss {:.4} acc {:5.1}%  valid loss {:.4} acc {:5.1}%{top5}  lr {:.2e}  stages {}/{} trainable  {:.1}s ({:.0} img/s)",
        r.epoch + 1,
        r.train.loss,
        100.0 * r.train.top1,
        r.valid.loss,
        100.0 * r.valid.top1,
        r.lr,
        r.plan.trainable_stages().len(),
        r.plan.stages.len(),
        secs,
        images as f64 / secs.max(1e-9),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{StageSetting, TwoPhase};

    #[test]
    fn phase_spans_follow_the_policy() {
        let plans: Vec<EpochPlan> = (0..5).map(|e| TwoPhase::new(2, 10.0).plan(e, 3)).collect();
        assert_eq!(phase_span(&plans, 0), (0, 2));
        assert_eq!(phase_span(&plans, 1), (0, 2));
        assert_eq!(phase_span(&plans, 2), (2, 3));
        assert_eq!(phase_span(&plans, 4), (2, 3));
    }

    #[test]
    fn bad_multiplier_is_rejected() {
        let mut plan = EpochPlan::uniform(2, StageSetting::train(1.0));
        plan.stages[1].lr_mult = f64::NAN;
        assert!(check_plans(&[plan], 2).is_err());
        assert!(check_plans(&[EpochPlan::uniform(3, StageSetting::frozen())], 2).is_err());
    }
}
