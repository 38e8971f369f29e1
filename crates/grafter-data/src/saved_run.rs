//! What a run folder holds for prediction, written and read by the library so that no caller
//! has to know the file names: the whole network as ONNX, the class names, the preprocessing,
//! and (written by the fine-tune loop) `config.json`, whose task picks the activation.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use grafter_data::predict::Predictor;
//!
//! # fn demo() -> grafter_data::Result<()> {
//! let predictor = Predictor::from_run("runs/food101/run-001", &Device::flex())?;
//! for result in predictor.predict_files(&["pizza.jpg"], 3) {
//!     println!("{:?}", result.map(|p| p.top));
//! }
//! # Ok(()) }
//! ```

use std::path::Path;

use burn::tensor::Device;
use grafter_core::checkpoint::{FsWriter, write_atomic};
use grafter_core::{Classifier, Preprocess, Task};
use grafter_onnx::{
    CutPoint, OnnxBackbone, OnnxBackboneExport, OnnxBackboneOptions, OnnxHead, export_classifier,
};

use crate::predict::{Activation, Predictor, WholeNetwork};
use crate::{ClassNames, DataError, Result};

/// The whole trained network, exported to ONNX.
pub const MODEL_FILE: &str = "model.onnx";
/// The class names, in output order.
pub const CLASSES_FILE: &str = "classes.json";
/// The evaluation preprocessing the model was validated with.
pub const PREPROCESS_FILE: &str = "preprocess.json";
/// The run's configuration (written by `FineTune`); its `task` picks the activation.
pub const CONFIG_FILE: &str = "config.json";

/// The largest input side a `preprocess.json` may ask for: a hostile file asking for
/// 10⁶ × 10⁶ pixels is refused instead of allocating the probe image.
const MAX_INPUT_SIDE: usize = 8192;

/// Writes what [`Predictor::from_run`] reads into `dir`: `model.onnx` (the whole network),
/// `classes.json` and `preprocess.json`, each through a temporary file and a rename.
///
/// Fails naming the file when `dir` cannot be written or the model cannot be expressed in
/// ONNX.
pub fn save_for_prediction<B: OnnxBackboneExport, H: OnnxHead + grafter_core::Head>(
    dir: impl AsRef<Path>,
    model: &Classifier<B, H>,
    classes: &ClassNames,
    preprocess: &Preprocess,
) -> Result<()> {
    let dir = dir.as_ref();
    export_classifier(model, dir.join(MODEL_FILE))?;
    classes.save_json(dir.join(CLASSES_FILE))?;
    let path = dir.join(PREPROCESS_FILE);
    let json = serde_json::to_string_pretty(preprocess)
        .map_err(|e| DataError::format(&path, e.to_string()))?;
    Ok(write_atomic(&FsWriter, &path, json.as_bytes())?)
}

impl Predictor<WholeNetwork<OnnxBackbone>> {
    /// The predictor of a saved run: the network of its `model.onnx`, named by its
    /// `classes.json`, fed as its `preprocess.json` says, with the activation of the task in
    /// its `config.json` (softmax when there is none).
    ///
    /// Every file is checked before use; a missing or malformed one is an error naming it.
    pub fn from_run(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let preprocess = read_preprocess(&dir.join(PREPROCESS_FILE))?;
        let activation = read_activation(&dir.join(CONFIG_FILE))?;
        let classes = ClassNames::load_json(dir.join(CLASSES_FILE))?;
        let options = OnnxBackboneOptions::default().with_cut(CutPoint::Full);
        let network = OnnxBackbone::load(dir.join(MODEL_FILE), &options, device)?;
        Ok(
            Predictor::new(WholeNetwork(network), classes, preprocess, device.clone())?
                .with_activation(activation),
        )
    }
}

/// A `preprocess.json`, refused when its values could not describe a real input.
pub fn read_preprocess(path: &Path) -> Result<Preprocess> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let p: Preprocess = serde_json::from_str(&text)
        .map_err(|e| DataError::format(path, format!("not a preprocess.json: {e}")))?;
    let positive = |v: f32| v.is_finite() && v > 0.0;
    let problem = if p.input_size.iter().any(|&s| s == 0 || s > MAX_INPUT_SIDE) {
        Some(format!(
            "input_size {:?} is not within 1..={MAX_INPUT_SIDE}",
            p.input_size
        ))
    } else if !(positive(p.crop_ratio) && p.crop_ratio <= 1.0) {
        Some(format!("crop_ratio {} is not in (0, 1]", p.crop_ratio))
    } else if !p.std.iter().all(|&s| positive(s)) || !positive(p.pixel_scale) {
        Some("std and pixel_scale must be finite and positive".into())
    } else if !p.mean.iter().all(|m| m.is_finite()) {
        Some("mean must be finite".into())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(DataError::format(path, problem)),
        None => Ok(p),
    }
}

/// The activation of the task in a run's `config.json`; softmax when the file is absent.
fn read_activation(path: &Path) -> Result<Activation> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Activation::Softmax),
        Err(e) => return Err(DataError::io(path, e)),
    };
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| DataError::format(path, format!("not a config.json: {e}")))?;
    let task = match config.get("task") {
        None => Task::default(),
        Some(task) => serde_json::from_value(task.clone())
            .map_err(|e| DataError::format(path, format!("unknown task: {e}")))?,
    };
    match task {
        Task::SingleLabel => Ok(Activation::Softmax),
        Task::MultiLabel => Ok(Activation::Sigmoid),
        Task::Binary => Err(DataError::format(
            path,
            "a binary (one-logit) run has no per-class outputs to rank; \
             predict with the model's logit directly",
        )),
    }
}
