//! The one error type of grafter-data. Every variant about a file names the file.

use std::path::{Path, PathBuf};

/// Result alias of grafter-data.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// What can stop a dataset from being built or a cache from being written.
///
/// A bad *image* is not an error: it is skipped and reported in
/// [`BadFiles`](crate::BadFiles). These errors are for what makes the whole operation
/// impossible (a missing root folder, an unreadable list file, a dataset with no class).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A dataset description (list, meta file, classes.json) is malformed.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// An option is out of range or inconsistent.
    #[error("invalid data configuration: {0}")]
    Config(String),

    /// The dataset has no usable sample (every file was bad, or the folder was empty).
    #[error("{}: no usable image ({bad} bad files, see the BadFiles report)", path.display())]
    Empty {
        /// The dataset root or list file.
        path: PathBuf,
        /// Number of bad files found.
        bad: usize,
    },

    /// A saved run's ONNX model could not be written or read back.
    #[error(transparent)]
    Onnx(#[from] grafter_onnx::OnnxError),

    /// An error from grafter-core (e.g. a backbone forward while building a feature cache).
    #[error(transparent)]
    Core(#[from] grafter_core::GrafterError),
}

impl DataError {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Self::Format {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }
}

impl From<DataError> for grafter_core::GrafterError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Core(c) => c,
            other => grafter_core::GrafterError::Data(other.to_string()),
        }
    }
}
