//! Saving and loading a model's weights in Burn's own record format (burnpack), atomically.
//!
//! The file holds every parameter and BatchNorm statistic with its path and id, so a model
//! fine-tuned by grafter can be reloaded into the same architecture (built with fresh weights)
//! for prediction or further training.

use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;

use crate::checkpoint::{FsWriter, read_file, write_atomic};
use crate::{GrafterError, Result};

/// Writes `model`'s weights to `path` (temporary file, then rename).
///
/// ```
/// use burn::nn::LinearConfig;
/// use burn::tensor::Device;
/// use grafter_core::weights::{load_weights, save_weights};
///
/// let device = Device::flex();
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("linear.bpk");
/// let trained = LinearConfig::new(4, 2).init(&device);
/// save_weights(&trained, &path).unwrap();
/// let reloaded = load_weights(LinearConfig::new(4, 2).init(&device), &path).unwrap();
/// assert_eq!(reloaded.weight.val().into_data(), trained.weight.val().into_data());
/// ```
pub fn save_weights<M: Module>(model: &M, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = model.clone().into_record().into_bytes().map_err(|e| {
        GrafterError::checkpoint(path, format!("cannot serialise the weights: {e}"))
    })?;
    write_atomic(&FsWriter, path, &bytes)
}

/// Loads weights saved by [`save_weights`] into `model` (same architecture), failing with the
/// file's name on a missing tensor or a shape mismatch.
pub fn load_weights<M: Module>(model: M, path: impl AsRef<Path>) -> Result<M> {
    let path = path.as_ref();
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(read_file(path)?))
        .map_err(|e| GrafterError::checkpoint(path, format!("not a weight file: {e}")))?;
    model
        .try_load_record(record)
        .map_err(|e| GrafterError::checkpoint(path, format!("does not fit the model: {e}")))
}
