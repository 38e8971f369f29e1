//! The generic fine-tune loop: [`FineTune`] and the named parts its epoch loop drives.
//!
//! | part | file | does |
//! |---|---|---|
//! | setup | `fine_tune.rs`, `cache_options.rs`, `fit.rs` | options (the feature cache's among them), input checks, start or resume, cache choice |
//! | epoch loop | `epochs.rs` | plan → train pass → evaluate → judge → checkpoint → report |
//! | train pass | `train_pass.rs`, `accumulation.rs` | batches, MixUp / CutMix, forward and backward, accumulated steps, EMA |
//! | plans | `plan.rs` | freezing (BatchNorm included), per-stage rates, schedule phases |
//! | precision | `precision.rs`, `mixed_precision.rs`, `loss_scale.rs` | autocast, loss scale |
//! | loss | `class_weights.rs` | the task's loss, class-weighted when asked |
//! | sampler | `sampler.rs` | shuffled passes, or class-balanced draws |
//! | data parallel | `replicas.rs` | one replica per device, batches split, gradients summed on the main device |
//! | weight average | `ema.rs` | timm's `ModelEmaV3`: updated every step, evaluated, saved |
//! | rate finder | `lr_find.rs` | the learning-rate range test, on a copy, leaving no trace |
//! | checkpointer | `checkpointer.rs` | config, atomic checkpoints (model, EMA, optimiser, state), prune, resume, best weights |
//! | run lock | `run_lock.rs` | one writer per run folder (`run.lock`, released by the OS even on kill -9) |
//! | early stopping | `early_stopping.rs` | best epoch, patience, min_delta |
//! | reporter | `reporter.rs` | bars, summary lines, `metrics.jsonl`, `curves.svg`, `class_report.json`, `top_losses.json` |
//! | observers | `observer.rs` | read-only [`Observer`] hooks for user code |
//! | feature cache | [`crate::feature_cache`] | frozen-backbone features once (in memory or files), swapped in before the epoch loop |
//!
//! ## Gradient accumulation
//!
//! With `accumulate_steps = k`, an optimiser step sums the gradients of `k` batches of
//! `batch_size` images. Each batch's loss is weighted by its number of images (by the sum of
//! its images' class weights under [`ClassWeights`]) and the sum divided by theirs, so the
//! step's gradient is that of one batch of `k × batch_size` images of the same data order
//! (within float rounding; asserted by the `accumulation` tests). Two things differ by
//! design, as in PyTorch: BatchNorm normalises each micro-batch with its own statistics and
//! updates its running statistics once per micro-batch, and dropout draws per micro-batch.
//! Under f16 the loss scale multiplies every micro-batch's loss and is checked (an overflow
//! skips the whole step) once per step. The last step of an epoch takes the batches left
//! (fewer than `k`), so no accumulation is pending at an epoch's end, where checkpoints are
//! written: resume stays exact. The schedule counts optimiser steps.
//!
//! grafter keeps this loop rather than burn-train's `Learner` because per-epoch freeze plans
//! (with BatchNorm switched to inference in frozen stages and per-stage rate groups that
//! change with the plan), bit-identical resume and the automatic feature cache are not
//! reachable through `SupervisedTraining`; it reuses Burn's optimiser groups
//! (`ModuleOptimizer`), learning-rate groups (`ModuleLrScheduler`) and records (burn-store).

mod accumulation;
mod cache_options;
mod checkpointer;
mod class_weights;
mod config;
mod early_stopping;
mod ema;
mod epochs;
mod evaluate;
mod fine_tune;
mod fit;
mod loss_scale;
mod lr_find;
pub mod mixed_precision;
mod observer;
mod plan;
mod precision;
mod replicas;
mod reporter;
pub(crate) use reporter::Reporter;
mod run_dir;
mod run_lock;
mod run_state;
mod sampler;
mod saved_plans;
mod train_pass;

pub use class_weights::{ClassWeights, weighted_cross_entropy};
pub use config::{EarlyStopping, FineTuneConfig};
pub use ema::{Ema, EmaSelect, ema_update};
pub use evaluate::{evaluate, top_losses};
pub use fine_tune::{DEFAULT_FEATURE_CACHE_BUDGET, FineTune, FitOutcome};
pub use lr_find::{LrFind, LrFindResult};
pub use mixed_precision::{LossScale, Precision};
pub use observer::{Observer, StepInfo};
pub use run_dir::next_run_dir;
pub use run_state::BestEpoch;
pub use sampler::{Sampler, class_balanced_order};
