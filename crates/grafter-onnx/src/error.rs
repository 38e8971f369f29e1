//! [`OnnxError`], the one error type of this crate. Every variant names the file involved,
//! because a user loading several models must know which one was bad.

use std::path::PathBuf;

/// What can go wrong reading an ONNX CNN or writing one back.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model onnx-ir can parse (truncated, random, corrupt).
    #[error("{path}: not a readable ONNX model: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why the parser gave up.
        reason: String,
    },
    /// The graph uses operators this crate cannot run; every one is listed with its count.
    #[error("{path}: unsupported operators: {}", list_ops(.ops))]
    UnsupportedOps {
        /// The file.
        path: PathBuf,
        /// `(op type, number of nodes)`, sorted by op type.
        ops: Vec<(String, usize)>,
    },
    /// The graph has no `[N, 3, H, W]` float image input.
    #[error("{path}: no image input (expected one float input of rank 4), found {found}")]
    NoImageInput {
        /// The file.
        path: PathBuf,
        /// A description of the inputs present.
        found: String,
    },
    /// The graph parsed but does not fit the backbone model (bad cut point, missing weight,
    /// tensor of rank above 4, …).
    #[error("{path}: {reason}")]
    Graph {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// A fine-tuned model could not be written as ONNX.
    #[error("{path}: cannot export: {reason}")]
    Export {
        /// The destination file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn list_ops(ops: &[(String, usize)]) -> String {
    ops.iter()
        .map(|(op, n)| format!("{op} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `Result` with [`OnnxError`].
pub type Result<T> = std::result::Result<T, OnnxError>;
