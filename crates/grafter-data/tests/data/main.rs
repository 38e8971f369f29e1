//! The image pipeline (grafter-data) end to end: dataset layouts, transforms against a PIL
//! reference, the parallel loader, bad files, and the feature cache.

mod auto_augment;
mod bad_files;
mod common;
mod eval_reference;
mod feature_cache;
mod fuzz;
#[allow(dead_code)]
#[path = "../support/fuzz_harness.rs"]
mod fuzz_harness;
mod fuzz_tar_gz;
mod hostile;
mod layouts;
mod loader;
mod predict;
mod run_folder;
mod saved_run;
#[allow(dead_code)]
#[path = "../support/skip.rs"]
mod skip;
