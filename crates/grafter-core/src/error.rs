//! The one error type of grafter-core.
//!
//! Every fallible public function returns [`Result`]. User input (configurations, datasets,
//! checkpoint directories) never panics: it becomes one of these variants, and each variant that
//! concerns a file names that file.

use std::path::PathBuf;

/// Result alias used throughout grafter-core.
pub type Result<T, E = GrafterError> = std::result::Result<T, E>;

/// Everything that can go wrong in grafter-core.
#[derive(Debug, thiserror::Error)]
pub enum GrafterError {
    /// A configuration value is out of range or inconsistent (e.g. zero classes).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A dataset has no samples (training cannot start, validation would be meaningless).
    #[error("the {role} dataset is empty")]
    EmptyDataset {
        /// `"training"` or `"validation"`.
        role: &'static str,
    },

    /// The head was built for a different number of input channels than the backbone yields.
    #[error(
        "head expects {head} input channels but the backbone produces {backbone} feature channels"
    )]
    ChannelMismatch {
        /// Channels the backbone's feature map has.
        backbone: usize,
        /// Channels the head was configured for.
        head: usize,
    },

    /// The head's number of outputs does not match the dataset's number of classes.
    #[error("the head has {head} outputs but the dataset has {dataset} classes")]
    OutputMismatch {
        /// Outputs of the head.
        head: usize,
        /// Classes of the dataset.
        dataset: usize,
    },

    /// A batch from a data source is malformed (wrong shape, label out of range, ...).
    #[error("bad batch: {0}")]
    Data(String),

    /// The loss became NaN or infinite: the run was stopped, the last good checkpoint kept.
    #[error(
        "training diverged at epoch {epoch}, step {step}: the loss is {loss}. The last good checkpoint is {}",
        last_checkpoint.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none (no epoch had completed)".into())
    )]
    Diverged {
        /// Zero-based epoch in which the loss diverged.
        epoch: usize,
        /// Global optimiser step at which it happened.
        step: usize,
        /// The non-finite loss value.
        loss: f64,
        /// The checkpoint directory that is still intact, if any.
        last_checkpoint: Option<PathBuf>,
    },

    /// A data-parallel replica failed in a step (a panic in its device's backend: the device
    /// lost, out of memory, a kernel error): the run stopped before the step was applied, and
    /// the last checkpoint is intact.
    #[error(
        "replica {replica} (device {device}) failed at epoch {epoch}, step {step}: {message}. The last good checkpoint is {}",
        last_checkpoint.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none (no epoch had completed)".into())
    )]
    Replica {
        /// Zero-based index of the replica in the device list.
        replica: usize,
        /// The replica's device, as Burn prints it.
        device: String,
        /// Zero-based epoch of the failed step.
        epoch: usize,
        /// Global optimiser step that failed.
        step: usize,
        /// What the replica reported.
        message: String,
        /// The checkpoint directory that is still intact, if any.
        last_checkpoint: Option<PathBuf>,
    },

    /// A device cannot be used: its backend is not in this build, there is no adapter or
    /// driver, or it does not compute.
    #[error("device `{device}`: {reason}")]
    Device {
        /// The device as named (`wgpu`, `cuda:1`…).
        device: String,
        /// Why, and what to do about it.
        reason: String,
    },

    /// A plot could not be drawn.
    #[error("plotting failed: {0}")]
    Plot(String),

    /// Reading or writing a file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Another run holds the run folder (two writers would prune each other's checkpoints
    /// and interleave their logs): wait for it to end, or choose another folder.
    #[error(
        "run folder {} is in use by another run ({}); wait for it to finish or choose another out_dir",
        path.display(),
        holder.as_deref().unwrap_or("holder unknown")
    )]
    RunInUse {
        /// The run folder.
        path: PathBuf,
        /// The holder as it recorded itself in the folder's `run.lock` (`pid 4242 on gpu-3`),
        /// when readable.
        holder: Option<String>,
    },

    /// A feature-cache file is not one, is damaged, or was built from something else.
    #[error("feature cache {}: {reason}", path.display())]
    FeatureCache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A checkpoint or run directory is missing, incomplete or inconsistent.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file or directory concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The message of a caught panic (a `&str` or `String` payload), or a placeholder: how a
/// backend's panic (a lost device, a kernel error) becomes the text of a typed error.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

impl GrafterError {
    /// Wraps an [`std::io::Error`] with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`GrafterError::FeatureCache`] for `path`.
    pub fn feature_cache(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Self::FeatureCache {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    /// A [`GrafterError::Checkpoint`] for `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Self::Checkpoint {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
