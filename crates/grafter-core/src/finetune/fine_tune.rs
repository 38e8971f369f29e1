//! [`FineTune`]: a run's configuration, policy and options, set up builder-style. The loop
//! itself is [`fit`](FineTune::fit) (`fit.rs`) over the epoch loop (`epochs.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::Device;

use super::checkpointer::{read_config, read_latest_state};
use super::config::FineTuneConfig;
use super::observer::{Observer, Observers};
use super::plan::plans_of;
use super::run_state::BestEpoch;
use super::saved_plans::SavedPlans;
use crate::checkpoint::{FileWriter, FsWriter};
use crate::feature_cache::{CachePrecision, FeatureCacheUse, LoopStorage, decide};
use crate::history::EpochRecord;
use crate::policy::FreezePolicy;
use crate::source::DataSource;
use crate::{Backbone, Classifier, GrafterError, Head, Result};

/// Fine-tunes a [`Classifier`] under a [`FreezePolicy`].
///
/// A run is reproducible bit for bit from its seed, and a resumed run equals an uninterrupted
/// one. When the policy keeps the backbone frozen throughout and the data are fixed (no
/// augmentation), the head trains from backbone features computed once (see
/// [`feature_cache`](Self::feature_cache)). [Observers](Self::observer) watch without
/// changing a bit. Burn's CPU backend keeps one random generator per process, so this holds
/// for one training at a time per process: concurrent runs in one process draw from the same
/// stream.
///
/// ```no_run
/// # use burn::tensor::Device;
/// # use grafter_core::{Backbone, Classifier, Head, FineTune, FineTuneConfig};
/// # use grafter_core::source::InMemoryDataset;
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
    pub(super) config: FineTuneConfig,
    pub(super) policy: Box<dyn FreezePolicy>,
    pub(super) out_dir: Option<PathBuf>,
    pub(super) writer: Arc<dyn FileWriter>,
    pub(super) resume: bool,
    pub(super) pause_after: Option<usize>,
    pub(super) feature_cache: bool,
    pub(super) feature_cache_budget: u64,
    pub(super) feature_cache_storage: LoopStorage,
    pub(super) observers: Observers,
    pub(super) devices: Vec<Device>,
}

/// Default memory budget of the automatic feature cache: 4 GB.
pub const DEFAULT_FEATURE_CACHE_BUDGET: u64 = 4_000_000_000;

/// What a finished (or early-stopped) run returns.
#[derive(Debug)]
pub struct FitOutcome<B, H> {
    /// The trained model in inference mode on the caller's device: the best epoch's weights
    /// when `restore_best` is set, else the last epoch's.
    pub model: Classifier<B, H>,
    /// The weight average after the last epoch, in inference mode on the caller's device, when
    /// the run keeps one ([`Ema`](super::Ema)). (When it was the better of the two at the best
    /// epoch, `model` holds the average's weights of that epoch: see [`BestEpoch::ema`].)
    pub ema: Option<Classifier<B, H>>,
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
            feature_cache_storage: LoopStorage::Memory,
            observers: Observers::default(),
            devices: Vec::new(),
        }
    }

    /// Continues the run saved in `dir`: the configuration saved there, and the freeze plans
    /// its latest checkpoint recorded for every epoch, replayed under the policy's saved name —
    /// no policy needs to be passed, so a run made with a custom policy resumes without its
    /// code. [`policy`](Self::policy) sets one anyway, which must give the same plans (checked
    /// by [`fit`](Self::fit)).
    ///
    /// # Errors
    ///
    /// A missing or invalid `config.json`, no complete checkpoint, or a `state.json` that is
    /// malformed or whose plans do not cover the configured epochs, naming the file.
    pub fn resume(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = read_config(dir)?;
        let (state, at) = read_latest_state(dir)?;
        if state.plans.len() != config.epochs {
            return Err(GrafterError::checkpoint(
                at,
                format!(
                    "holds plans for {} epochs but config.json asks for {}",
                    state.plans.len(),
                    config.epochs
                ),
            ));
        }
        let saved = SavedPlans {
            name: state.policy,
            plans: state.plans,
        };
        let mut run = Self::new(config, saved).out_dir(dir);
        run.resume = true;
        Ok(run)
    }

    /// Replaces the freeze policy. On a [resumed](Self::resume) run it must give the plans the
    /// run was started with: a different one is refused by [`fit`](Self::fit).
    pub fn policy(mut self, policy: impl FreezePolicy + 'static) -> Self {
        self.policy = Box::new(policy);
        self
    }

    /// Writes checkpoints, `config.json`, `metrics.jsonl`, `curves.svg` and `best.bpk` under
    /// `dir`.
    ///
    /// [`fit`](Self::fit) locks `dir` while it writes there (`run.lock`, a lock of the
    /// operating system, released when the run ends or its process dies, even by `kill -9`):
    /// a second run on the folder, in this process or another, is refused with
    /// [`GrafterError::RunInUse`] naming the folder and the holder's process id and host.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Trains data-parallel: one replica of the model per device in `devices`, each batch
    /// split across them (contiguous shards, sizes differing by at most one), their gradients
    /// summed on [`fit`](Self::fit)'s device, which keeps the master weights, takes the
    /// optimiser step, validates and checkpoints. A device may be listed more than once
    /// (`cpu:2` in [`parse_devices`](crate::device::parse_devices)): its replicas take turns.
    ///
    /// A step equals the single-device step on the whole batch up to rounding, except that
    /// BatchNorm normalises each shard with its own batch statistics (as PyTorch's DDP
    /// without SyncBN; the running statistics are averaged over the replicas). The data order
    /// does not depend on the device count, so a run resumes on any number of devices.
    /// Fewer than two devices train on `fit`'s device alone. The method, and why it is not
    /// Burn's `all_reduce` here, is in `docs/DISTRIBUTED.md`.
    ///
    /// ```
    /// # use burn::tensor::Device;
    /// # use grafter_core::{FineTune, FineTuneConfig, policy::TrainAll};
    /// let cpu = Device::flex();
    /// let run = FineTune::new(FineTuneConfig::new(), TrainAll).devices(vec![cpu.clone(), cpu]);
    /// # let _ = run;
    /// ```
    pub fn devices(mut self, devices: Vec<Device>) -> Self {
        self.devices = devices;
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
    /// backbone's features once, in inference mode, keeps them in memory (or in files, see
    /// [`feature_cache_files`](Self::feature_cache_files)) and trains the head from them: one
    /// backbone pass instead of one per epoch. The head sees the features of
    /// exactly the images, batches and order it would have seen, so the weights, metrics,
    /// checkpoints and `metrics.jsonl` are those of the uncached run (up to floating-point
    /// rounding), and the run directory resumes either way. The loop says (log and progress
    /// output) when it uses the cache, and when it does not although on, why;
    /// [`feature_cache_use`](Self::feature_cache_use) tells in advance.
    ///
    /// ```
    /// use grafter_core::FineTune;
    /// use grafter_core::feature_cache::FeatureCacheUse;
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

    /// Keeps the automatic feature cache in memory-mapped files under `dir` instead of in
    /// memory: no memory budget applies (the OS pages the features in and out), and a later
    /// run — a resumed one, another seed, another head — with the same backbone and data
    /// reuses the files instead of running the backbone again. Each file is named after a
    /// fingerprint of what it was computed from (the backbone's features of the first batch,
    /// every pixel, label and sample name of the source; see
    /// [`LoopStorage::Files`]); f16 halves the disk at ~3 significant digits.
    ///
    /// ```no_run
    /// use grafter_core::feature_cache::CachePrecision;
    /// use grafter_core::policy::Frozen;
    /// use grafter_core::{FineTune, FineTuneConfig};
    ///
    /// let run = FineTune::new(FineTuneConfig::new(), Frozen)
    ///     .feature_cache_files("features", CachePrecision::F16);
    /// # let _ = run;
    /// ```
    pub fn feature_cache_files(
        mut self,
        dir: impl Into<PathBuf>,
        precision: CachePrecision,
    ) -> Self {
        self.feature_cache_storage = LoopStorage::Files {
            dir: dir.into(),
            precision,
        };
        self
    }

    /// Attaches `observer`, told about every step and epoch of [`fit`](Self::fit); several
    /// are called in the order attached. Observers read, they cannot steer: a run with them
    /// is bit for bit the run without (see [`Observer`]).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use grafter_core::finetune::{Observer, StepInfo};
    /// use grafter_core::policy::Frozen;
    /// use grafter_core::{FineTune, FineTuneConfig};
    ///
    /// #[derive(Default)]
    /// struct Steps(usize);
    /// impl Observer for Steps {
    ///     fn on_step(&mut self, _: &StepInfo) {
    ///         self.0 += 1;
    ///     }
    /// }
    ///
    /// let steps = Arc::new(Mutex::new(Steps::default()));
    /// let run = FineTune::new(FineTuneConfig::new(), Frozen).observer(steps.clone());
    /// // run.fit(..); then steps.lock().unwrap().0 is the number of steps taken
    /// # let _ = run;
    /// ```
    pub fn observer(mut self, observer: impl Observer + 'static) -> Self {
        self.observers.push(Box::new(observer));
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
        let plans = plans_of(self.policy.as_ref(), self.config.epochs, stages.len())?;
        Ok(decide(
            self.feature_cache,
            &model.backbone,
            &stages,
            &plans,
            train,
            valid,
        ))
    }
}
