//! The error type of grafter-zoo.

use std::path::PathBuf;

/// Everything that can go wrong while building a backbone or loading its weights.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// Reading or writing a file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A weight file does not fit the architecture.
    #[error("{}: {reason}", path.display())]
    Weights {
        /// The weight file.
        path: PathBuf,
        /// The first mismatch found (layer, expected vs found shape).
        reason: String,
    },
    /// A configuration value is unsupported.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An HTTP transfer failed after the server was reached (bad status, cut connection, …).
    #[error("download of {url} failed: {reason}")]
    Download {
        /// The URL being fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A file's digest does not match the expected one (SHA-256: full digest or prefix; MD5
    /// where that is all the publisher gives).
    #[error("checksum mismatch for {}: expected a {algorithm} starting with {expected}, found {found}", path.display())]
    Checksum {
        /// The file concerned (its intended destination).
        path: PathBuf,
        /// `"sha256"` or `"md5"`.
        algorithm: &'static str,
        /// The expected digest or digest prefix, lowercase hex.
        expected: String,
        /// The digest actually computed, lowercase hex.
        found: String,
    },
    /// The server could not be reached at all (offline, DNS failure, connection refused).
    #[error(
        "cannot reach {url} ({reason}); to install the file by hand, download it from that URL \
         on a connected machine and place it at {}", dest.display()
    )]
    Offline {
        /// The URL that could not be reached.
        url: String,
        /// Exactly where the file is expected on disk.
        dest: PathBuf,
        /// The underlying network error.
        reason: String,
    },
    /// A name is neither a registered weight set nor an architecture with one.
    #[error("unknown weight set or architecture '{name}'; known: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The registered weight-set names, comma-separated.
        known: String,
    },
    /// An ONNX file could not be used as a backbone (the error names the file).
    #[error(transparent)]
    Onnx(#[from] grafter_onnx::OnnxError),
}
