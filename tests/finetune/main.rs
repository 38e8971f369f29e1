//! The fine-tune loop end to end on the flex CPU backend: convergence, freezing, resume,
//! crash-safe checkpoints, divergence guard and bad configurations.

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
mod lr_find;
mod mixed_precision;
mod mixup;
mod observer;
#[path = "../support/params.rs"]
mod params;
mod recipes;
mod resume;
mod run_lock;
#[allow(dead_code)]
#[path = "../support/skip.rs"]
mod skip;
mod soak;
mod soak_points;
mod tensorboard;
mod top_losses;
