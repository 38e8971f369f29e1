//! The generic fine-tune loop: [`FineTune`] and the named parts its epoch loop drives.
//!
//! | part | file | does |
//! |---|---|---|
//! | setup | `fine_tune.rs`, `fit.rs` | options, input checks, start or resume, cache choice |
//! | epoch loop | `epochs.rs` | plan → train pass → evaluate → judge → checkpoint → report |
//! | plans | `plan.rs` | freezing (BatchNorm included), per-stage rates, schedule phases |
//! | precision | `precision.rs`, `mixed_precision.rs`, `loss_scale.rs` | autocast, loss scale |
//! | checkpointer | `checkpointer.rs` | config, atomic checkpoints, prune, resume, best weights |
//! | early stopping | `early_stopping.rs` | best epoch, patience, min_delta |
//! | reporter | `reporter.rs` | bars, summary lines, `metrics.jsonl`, `curves.svg` |
//! | observers | `observer.rs` | read-only [`Observer`] hooks for user code |
//! | feature cache | `feature_cache.rs`, `cached_source.rs` | frozen-backbone features once |
//!
//! grafter keeps this loop rather than burn-train's `Learner` because per-epoch freeze plans
//! (with BatchNorm switched to inference in frozen stages and per-stage rate groups that
//! change with the plan), bit-identical resume and the automatic feature cache are not
//! reachable through `SupervisedTraining`; it reuses Burn's optimiser groups
//! (`ModuleOptimizer`), learning-rate groups (`ModuleLrScheduler`) and records (burn-store).

mod cached_source;
mod checkpointer;
mod config;
mod early_stopping;
mod epochs;
mod evaluate;
mod feature_cache;
mod fine_tune;
mod fit;
mod loss_scale;
pub mod mixed_precision;
mod observer;
mod plan;
mod precision;
mod reporter;
mod run_state;

pub use config::{EarlyStopping, FineTuneConfig};
pub use evaluate::evaluate;
pub use feature_cache::{CachedFeatures, FeatureCacheUse};
pub use fine_tune::{DEFAULT_FEATURE_CACHE_BUDGET, FineTune, FitOutcome};
pub use mixed_precision::{LossScale, Precision};
pub use observer::{Observer, StepInfo};
pub use run_state::BestEpoch;
