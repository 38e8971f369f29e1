//! The image pipeline (grafter-data) end to end: dataset layouts, transforms against a PIL
//! reference, the parallel loader, bad files, the feature cache over the loader, and fuzzing of
//! its readers. Saved runs and run folders, which need the zoo and the ONNX exporter too, are
//! tested with the loop (tests/finetune at the workspace root).

mod auto_augment;
mod bad_files;
mod common;
mod eval_reference;
mod feature_cache;
mod fuzz;
#[allow(dead_code)]
#[path = "../../../../tests/support/fuzz_harness.rs"]
mod fuzz_harness;
mod fuzz_tar_gz;
mod hostile;
mod layouts;
mod loader;
mod predict;
#[allow(dead_code)]
#[path = "../../../../tests/support/skip.rs"]
mod skip;
#[path = "../../../../tests/support/workspace.rs"]
mod workspace;
