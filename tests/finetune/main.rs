//! The fine-tune loop end to end on the flex CPU backend: convergence, freezing, resume,
//! crash-safe checkpoints, divergence guard and bad configurations; and what a run leaves
//! (saved runs, run folders, their reports), which needs the zoo and the ONNX exporter beside
//! the image pipeline.

mod bad_config;
mod common;
mod convergence;
mod data_parallel;
mod faults;
mod feature_cache;
mod freezing;
#[allow(dead_code)]
#[path = "../support/fuzz_harness.rs"]
mod fuzz_harness;
mod fuzz_run_folder;
/// Image files written by the tests (the image pipeline's test helpers).
#[allow(dead_code)]
#[path = "../../crates/grafter-data/tests/data/common.rs"]
mod images;
mod lr_find;
mod mixed_precision;
mod mixup;
mod observer;
#[path = "../support/params.rs"]
mod params;
mod recipes;
mod resume;
mod run_folder;
mod run_lock;
mod saved_run;
#[allow(dead_code)]
#[path = "../support/skip.rs"]
mod skip;
mod soak;
mod soak_points;
mod tensorboard;
mod top_losses;
#[path = "../support/workspace.rs"]
mod workspace;
