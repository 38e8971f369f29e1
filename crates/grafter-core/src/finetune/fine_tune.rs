//! [`FineTune`]: a run's configuration, policy and options, set up builder-style. The loop
//! itself is [`fit`](FineTune::fit) (`fit.rs`) over the epoch loop (`epochs.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::Device;

use super::checkpointer::{read_config, read_latest_state};
use super::config::FineTuneConfig;
use super::observer::{Observer, Observers};
use super::run_state::BestEpoch;
use super::saved_plans::SavedPlans;
use crate::checkpoint::{FileWriter, FsWriter};
use crate::feature_cache::LoopStorage;
use crate::history::EpochRecord;
use crate::policy::FreezePolicy;
use crate::{Classifier, GrafterError, Result};

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
}
