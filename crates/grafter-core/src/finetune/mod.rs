//! The generic fine-tune loop.

mod config;
mod evaluate;
mod feature_cache;
pub mod mixed_precision;
mod run_state;
mod runner;

pub use config::{EarlyStopping, FineTuneConfig};
pub use evaluate::evaluate;
pub use feature_cache::{CachedFeatures, FeatureCacheUse};
pub use mixed_precision::{LossScale, Precision};
pub use run_state::BestEpoch;
pub use runner::{DEFAULT_FEATURE_CACHE_BUDGET, FineTune, FitOutcome};
