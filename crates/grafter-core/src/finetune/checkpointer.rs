//! The loop's checkpointer: the run directory's `config.json`, one checkpoint per epoch
//! (model, optimiser and loop state, written atomically, the oldest pruned), `best.bpk`, and
//! loading all of it back to resume. The file-level guarantees (temporary name + rename,
//! `latest` moved only after a complete checkpoint) are [`CheckpointDir`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Module;
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::store::ModuleRecord;
use burn::tensor::Bytes;

use super::config::{FineTuneConfig, config_from_json};
use super::run_state::{RunState, STATE_VERSION};
use crate::checkpoint::{CheckpointDir, FileWriter, FsWriter, files, read_file, write_atomic};
use crate::{Backbone, Classifier, GrafterError, Head, Result};

/// The configuration file of a run directory.
const CONFIG: &str = "config.json";
/// The weights of the best epoch so far.
const BEST: &str = "best.bpk";

/// What [`Checkpointer::resume`] restores: the model, the loop state, the optimiser's record
/// and the weight average's record with its file (when the checkpoint holds one).
pub(crate) type Resumed<B, H> = (
    Classifier<B, H>,
    RunState,
    OptimizerRecord,
    Option<(PathBuf, ModuleRecord)>,
);

/// Saves and loads the state of one run directory.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    dir: CheckpointDir,
}

impl Checkpointer {
    /// The run directory `root`, written through `writer`, keeping the newest `keep`
    /// checkpoints.
    pub(crate) fn new(root: &Path, writer: Arc<dyn FileWriter>, keep: usize) -> Self {
        Self {
            dir: CheckpointDir::new(root, writer, keep),
        }
    }

    /// The run directory.
    pub(crate) fn root(&self) -> &Path {
        self.dir.root()
    }

    /// The writer every file of the run goes through.
    pub(crate) fn writer(&self) -> &dyn FileWriter {
        self.dir.writer()
    }

    /// Removes the temporary files and folders of writes a crash cut short (logged with the
    /// bytes freed). Called by the folder's lock holder before it reads or writes anything.
    pub(crate) fn remove_interrupted_writes(&self) {
        let freed = self.dir.remove_interrupted_writes();
        if freed > 0 {
            log::info!(
                "{}: removed {freed} bytes of temporary files left by an interrupted run",
                self.root().display()
            );
        }
    }

    /// Starts a new run: refuses a directory that already holds one, writes `config.json`.
    pub(crate) fn start(&self, cfg: &FineTuneConfig) -> Result<()> {
        if self.dir.latest()?.is_some() {
            return Err(GrafterError::checkpoint(
                self.root(),
                "already holds a run; resume it with FineTune::resume or choose another out_dir",
            ));
        }
        let json =
            serde_json::to_string_pretty(cfg).map_err(|e| GrafterError::Config(e.to_string()))?;
        write_atomic(self.writer(), &self.root().join(CONFIG), json.as_bytes())
    }

    /// The newest complete checkpoint, if any.
    pub(crate) fn latest(&self) -> Result<Option<PathBuf>> {
        self.dir.latest()
    }

    /// Loads the newest checkpoint into `model` (weights and parameter ids), with the loop
    /// state, the optimiser's record and the weight average's record (when it holds one).
    /// When the newest cannot be read (a damaged file), the older kept ones are tried, newest
    /// first, with a warning: the run then repeats the epochs since, which give the same
    /// result. Fails with the newest's error when none can be read.
    pub(crate) fn resume<B: Backbone, H: Head>(
        &self,
        model: Classifier<B, H>,
    ) -> Result<Resumed<B, H>> {
        first_readable(&self.dir, |dir| self.resume_from(dir, model.clone()))
    }

    /// [`resume`](Self::resume) from the checkpoint folder `dir`.
    fn resume_from<B: Backbone, H: Head>(
        &self,
        dir: &Path,
        model: Classifier<B, H>,
    ) -> Result<Resumed<B, H>> {
        let model_path = dir.join(files::MODEL);
        let record = record_from_file(&model_path)?;
        let model = model
            .try_load_record(record)
            .map_err(|e| GrafterError::checkpoint(&model_path, e))?;
        let optim_path = dir.join(files::OPTIMIZER);
        let optim = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(read_file(&optim_path)?))
            .map_err(|e| GrafterError::checkpoint(&optim_path, e))?;
        let state = read_state(&dir.join(files::STATE))?;
        let ema_path = dir.join(files::EMA);
        let ema = if ema_path.is_file() {
            Some((ema_path.clone(), record_from_file(&ema_path)?))
        } else {
            None
        };
        Ok((model, state, optim, ema))
    }

    /// Writes the best epoch's weights.
    pub(crate) fn save_best(&self, record: &ModuleRecord) -> Result<()> {
        let bytes = record.clone().into_bytes().map_err(record_err)?;
        write_atomic(self.writer(), &self.root().join(BEST), &bytes)
    }

    /// The best epoch's weights, as saved by [`save_best`](Self::save_best).
    pub(crate) fn load_best(&self) -> Result<ModuleRecord> {
        record_from_file(&self.root().join(BEST))
    }

    /// Writes the checkpoint of the epoch `state` ends: model, weight average (if any),
    /// optimiser and state, then `latest`, then prunes. Returns its directory.
    pub(crate) fn save(
        &self,
        model: ModuleRecord,
        ema: Option<ModuleRecord>,
        optim: &ModuleOptimizer,
        state: &RunState,
    ) -> Result<PathBuf> {
        let model_bytes = model.into_bytes().map_err(record_err)?;
        let optim_bytes = optim.to_record().into_bytes().map_err(record_err)?;
        let state_bytes =
            serde_json::to_vec_pretty(state).map_err(|e| GrafterError::Config(e.to_string()))?;
        let ema_bytes = match ema {
            Some(record) => Some(record.into_bytes().map_err(record_err)?),
            None => None,
        };
        let mut items: Vec<(&str, &[u8])> = vec![(files::MODEL, &model_bytes)];
        if let Some(bytes) = &ema_bytes {
            items.push((files::EMA, bytes));
        }
        items.push((files::OPTIMIZER, &optim_bytes));
        items.push((files::STATE, &state_bytes));
        self.dir.save(state.epochs_done, &items)
    }
}

/// The loop state of the newest readable checkpoint of the run directory `dir` (the one a
/// resume starts from), and its `state.json`'s path.
pub(crate) fn read_latest_state(dir: &Path) -> Result<(RunState, PathBuf)> {
    let checkpoints = CheckpointDir::new(dir, Arc::new(FsWriter), 1);
    first_readable(&checkpoints, |checkpoint| {
        let path = checkpoint.join(files::STATE);
        read_state(&path).map(|state| (state, path))
    })
}

/// `read` of the first of `checkpoints`' [resumable](CheckpointDir::resumable) folders it
/// succeeds on, newest first (a warning names the one used when it is not the newest); the
/// newest's error when it succeeds on none.
fn first_readable<T>(
    checkpoints: &CheckpointDir,
    mut read: impl FnMut(&Path) -> Result<T>,
) -> Result<T> {
    let mut newest_error = None;
    for dir in checkpoints.resumable()? {
        match read(&dir) {
            Ok(value) => {
                if let Some(e) = &newest_error {
                    log::warn!("resuming from {} instead: {e}", dir.display());
                }
                return Ok(value);
            }
            Err(e) => {
                newest_error.get_or_insert(e);
            }
        }
    }
    Err(newest_error.unwrap_or_else(|| {
        GrafterError::checkpoint(checkpoints.root(), "no checkpoint to resume from")
    }))
}

/// A checkpoint's `state.json`, checked: its format version, and counters that agree with its
/// history.
fn read_state(path: &Path) -> Result<RunState> {
    let state: RunState =
        serde_json::from_slice(&read_file(path)?).map_err(|e| GrafterError::checkpoint(path, e))?;
    if state.version != STATE_VERSION {
        return Err(GrafterError::checkpoint(
            path,
            format!(
                "state format version {} is not supported (expected {STATE_VERSION})",
                state.version
            ),
        ));
    }
    if let Some(why) = state.inconsistency() {
        return Err(GrafterError::checkpoint(path, why));
    }
    Ok(state)
}

/// The configuration saved in the run directory `dir`.
pub(crate) fn read_config(dir: &Path) -> Result<FineTuneConfig> {
    let path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| GrafterError::io(&path, e))?;
    config_from_json(&text)
        .map_err(|e| GrafterError::checkpoint(&path, format!("invalid config: {e}")))
}

/// A record that cannot be serialised.
pub(crate) fn record_err(e: burn::store::RecordError) -> GrafterError {
    GrafterError::Config(format!("cannot serialise a record: {e}"))
}

fn record_from_file(path: &Path) -> Result<ModuleRecord> {
    ModuleRecord::from_bytes(Bytes::from_bytes_vec(read_file(path)?))
        .map_err(|e| GrafterError::checkpoint(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_cache::CachedFeatures;
    use crate::finetune::run_state::BestEpoch;
    use crate::{LinearHead, LinearHeadConfig, Preprocess};
    use burn::tensor::Device;

    fn model(device: &Device, seed: u64) -> Classifier<CachedFeatures, LinearHead> {
        device.seed(seed);
        let head = LinearHeadConfig::new(3, 2).try_init(device).unwrap();
        Classifier::new(CachedFeatures::new(3, Preprocess::imagenet()), head).unwrap()
    }

    /// A consistent state after `epochs_done` epochs of 7 steps.
    fn state(epochs_done: usize) -> RunState {
        let metrics = crate::Metrics {
            loss: 0.5,
            top1: 0.5,
            top5: None,
            per_class: vec![Some(0.5)],
            samples: 2,
            confusion: vec![vec![2]],
            map: None,
        };
        let history = (0..epochs_done)
            .map(|epoch| crate::history::EpochRecord {
                epoch,
                step: 7 * (epoch + 1),
                lr: 1e-3,
                plan: crate::policy::EpochPlan::uniform(1, crate::policy::StageSetting::frozen()),
                train: metrics.clone(),
                valid: metrics.clone(),
                valid_ema: None,
            })
            .collect();
        RunState {
            version: STATE_VERSION,
            epochs_done,
            step: 7 * epochs_done,
            seed: 3,
            history,
            best: None,
            bad_epochs: 1,
            stopped_early: false,
            policy: "test".into(),
            plans: Vec::new(),
            loss_scale: None,
        }
    }

    fn weights(m: &Classifier<CachedFeatures, LinearHead>) -> Vec<f32> {
        m.head.linear.weight.val().into_data().try_to_vec().unwrap()
    }

    #[test]
    fn a_state_whose_counters_disagree_with_its_history_is_refused_naming_the_file() {
        let device = Device::flex();
        let optim = crate::OptimizerConfig::adamw().build();
        type Edit = fn(&mut RunState);
        let edits: [(&str, Edit); 4] = [
            ("epochs done", |s| s.epochs_done += 1),
            ("step", |s| s.step = usize::MAX),
            ("without improvement", |s| s.bad_epochs = usize::MAX),
            ("best epoch", |s| {
                s.best = Some(BestEpoch {
                    epoch: 9,
                    value: 0.5,
                    ema: false,
                })
            }),
        ];
        for (says, edit) in edits {
            let dir = tempfile::tempdir().unwrap();
            let ck = Checkpointer::new(dir.path(), Arc::new(FsWriter), 2);
            let mut st = state(2);
            edit(&mut st);
            ck.save(model(&device, 1).into_record(), None, &optim, &st)
                .unwrap();
            let err = ck.resume(model(&device, 2)).unwrap_err().to_string();
            assert!(
                err.contains("state.json") && err.contains(says),
                "{says}: {err}"
            );
        }
        // the consistent state resumes
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpointer::new(dir.path(), Arc::new(FsWriter), 2);
        ck.save(model(&device, 1).into_record(), None, &optim, &state(2))
            .unwrap();
        assert!(ck.resume(model(&device, 2)).is_ok());
    }

    #[test]
    fn saves_resumes_and_prunes_to_the_newest() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpointer::new(dir.path(), Arc::new(FsWriter), 2);
        ck.start(&FineTuneConfig::new().with_epochs(9)).unwrap();
        assert_eq!(read_config(dir.path()).unwrap().epochs, 9);
        let saved = model(&device, 1);
        let optim = crate::OptimizerConfig::adamw().build();
        for e in 1..=3 {
            ck.save(saved.clone().into_record(), None, &optim, &state(e))
                .unwrap();
        }
        let (loaded, st, _, ema) = ck.resume(model(&device, 2)).unwrap();
        assert!(ema.is_none());
        assert_eq!(weights(&loaded), weights(&saved));
        assert_eq!((st.epochs_done, st.step, st.bad_epochs), (3, 21, 1));
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["epoch-0002", "epoch-0003"]);
        // a second run in the same directory is refused
        let err = ck.start(&FineTuneConfig::new()).unwrap_err().to_string();
        assert!(err.contains("already holds a run"), "{err}");
    }

    #[test]
    fn best_weights_round_trip_and_a_foreign_state_version_is_refused() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpointer::new(dir.path(), Arc::new(FsWriter), 1);
        let best = model(&device, 4);
        ck.save_best(&best.clone().into_record()).unwrap();
        let back = model(&device, 5)
            .try_load_record(ck.load_best().unwrap())
            .unwrap();
        assert_eq!(weights(&back), weights(&best));

        let mut future = state(1);
        future.version = STATE_VERSION + 1;
        let optim = crate::OptimizerConfig::adamw().build();
        ck.save(best.into_record(), None, &optim, &future).unwrap();
        let err = ck.resume(model(&device, 6)).unwrap_err().to_string();
        assert!(
            err.contains("state.json") && err.contains("version"),
            "{err}"
        );
        let missing = Checkpointer::new(&dir.path().join("empty"), Arc::new(FsWriter), 1);
        assert!(missing.resume(model(&device, 7)).is_err());
    }
}
