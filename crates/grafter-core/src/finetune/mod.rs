//! The generic fine-tune loop.

mod config;
mod evaluate;
mod run_state;
mod runner;

pub use config::{EarlyStopping, FineTuneConfig};
pub use evaluate::evaluate;
pub use run_state::BestEpoch;
pub use runner::{FineTune, FitOutcome};
