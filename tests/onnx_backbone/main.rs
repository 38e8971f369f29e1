//! grafter-onnx: any ONNX CNN as a trainable backbone — parity with onnxruntime on the
//! project's random-weight fixtures, trainability and freezing, export round trip, and
//! typed errors for bad files; export of the zoo's ResNet and VGG backbones.

#[path = "../support/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;
#[path = "../support/params.rs"]
mod params;
#[allow(dead_code)]
#[path = "../support/skip.rs"]
mod skip;
#[path = "../support/workspace.rs"]
mod workspace;

mod errors;
mod export;
mod export_zoo;
mod fuzz;
#[allow(dead_code)]
#[path = "../support/fuzz_harness.rs"]
mod fuzz_harness;
mod fuzz_predictor;
mod hostile;
mod keras_exports;
#[path = "../support/onnx_mutation.rs"]
mod onnx_mutation;
mod ops;
mod parity;
mod torch_exports;
mod train;

use std::path::PathBuf;

/// The ONNX file of a fixture model, or `None` (SKIPPED) when fixtures were not made.
pub fn model_file(model: &str) -> Option<PathBuf> {
    let dir = fixtures::dir(model)?;
    let file = match model {
        "resnet18" | "vgg16" => dir.join(format!("{model}_unfolded.onnx")),
        _ => dir.join(format!("{model}.onnx")),
    };
    Some(file)
}

/// Models are loaded and trained one at a time (Burn's flex RNG is per process).
pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}
