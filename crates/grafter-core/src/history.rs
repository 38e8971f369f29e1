//! The record of a run, epoch by epoch, and its JSON-lines log.

use serde::{Deserialize, Serialize};

use crate::Metrics;
use crate::policy::EpochPlan;

/// Everything measured in one epoch. One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Zero-based epoch.
    pub epoch: usize,
    /// Global optimiser steps done at the end of the epoch.
    pub step: usize,
    /// Learning rate of the head at the last step of the epoch.
    pub lr: f64,
    /// The freeze plan that was applied.
    pub plan: EpochPlan,
    /// Training metrics (in training mode: dropout on, running loss).
    pub train: Metrics,
    /// Validation metrics.
    pub valid: Metrics,
    /// Validation metrics of the weight average, in runs that keep one
    /// ([`Ema`](crate::finetune::Ema)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_ema: Option<Metrics>,
}

/// Serialises a history as JSON lines, without the bulky confusion matrices.
pub fn to_jsonl(history: &[EpochRecord]) -> String {
    let mut out = String::new();
    for r in history {
        let mut r = r.clone();
        r.train.confusion.clear();
        r.valid.confusion.clear();
        if let Some(m) = r.valid_ema.as_mut() {
            m.confusion.clear();
        }
        out.push_str(&serde_json::to_string(&r).unwrap_or_default());
        out.push('\n');
    }
    out
}
