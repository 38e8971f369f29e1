//! What a checkpoint's `state.json` holds besides the model and optimiser.

use serde::{Deserialize, Serialize};

use super::mixed_precision::LossScale;
use crate::history::EpochRecord;
use crate::policy::EpochPlan;

/// Version of the state format, bumped on incompatible changes.
pub(crate) const STATE_VERSION: u32 = 1;

/// The best epoch so far.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    /// Zero-based epoch.
    pub epoch: usize,
    /// Value of the monitored metric (NaN when it was not finite: saved as `null`).
    #[serde(deserialize_with = "crate::metrics::nan_if_null")]
    pub value: f64,
    /// True when the best weights are the weight average's ([`Ema`](super::Ema)), not the
    /// trained ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ema: bool,
}

/// Loop state at the end of an epoch. With the model and optimiser records it is everything
/// a resumed run needs: the RNGs are re-derived from `(seed, epoch)`, the learning rate from
/// `step`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RunState {
    pub version: u32,
    pub epochs_done: usize,
    pub step: usize,
    pub seed: u64,
    pub history: Vec<EpochRecord>,
    pub best: Option<BestEpoch>,
    pub bad_epochs: usize,
    pub stopped_early: bool,
    pub policy: String,
    pub plans: Vec<EpochPlan>,
    /// The loss scale of a mixed-precision run (absent in f32 runs and older checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScale>,
}

impl RunState {
    /// The state of a run that has not trained yet, seeded with `seed`, under the policy
    /// named `policy`.
    pub(crate) fn fresh(seed: u64, policy: String) -> Self {
        Self {
            version: STATE_VERSION,
            epochs_done: 0,
            step: 0,
            seed,
            history: Vec::new(),
            best: None,
            bad_epochs: 0,
            stopped_early: false,
            policy,
            plans: Vec::new(),
            loss_scale: None,
        }
    }

    /// The inconsistency of a `state.json` that was not written by the loop (edited, corrupted
    /// or hostile): its counters must agree with its own history, so that a resume never
    /// computes with an impossible step or epoch.
    pub(crate) fn inconsistency(&self) -> Option<String> {
        if self.history.len() != self.epochs_done {
            return Some(format!(
                "{} epochs done but {} in the history",
                self.epochs_done,
                self.history.len()
            ));
        }
        if let Some((i, r)) = self.history.iter().enumerate().find(|(i, r)| r.epoch != *i) {
            return Some(format!("history entry {i} is of epoch {}", r.epoch));
        }
        if self.history.windows(2).any(|w| w[1].step <= w[0].step) {
            return Some("the history's steps do not increase".into());
        }
        for r in &self.history {
            let passes = [Some(&r.train), Some(&r.valid), r.valid_ema.as_ref()];
            for m in passes.into_iter().flatten() {
                if m.confusion.is_empty() {
                    continue;
                }
                let total = m
                    .confusion
                    .iter()
                    .flatten()
                    .try_fold(0u64, |n, &c| n.checked_add(c));
                if total != Some(m.samples as u64) {
                    return Some(format!(
                        "epoch {}: a confusion matrix counting {} images of {}",
                        r.epoch,
                        total.map_or("more than 2^64".into(), |t| t.to_string()),
                        m.samples
                    ));
                }
            }
        }
        let last_step = self.history.last().map_or(0, |r| r.step);
        if self.step != last_step {
            return Some(format!(
                "step {} but the last epoch ended at step {last_step}",
                self.step
            ));
        }
        if self.bad_epochs > self.epochs_done {
            return Some(format!(
                "{} epochs without improvement of {} done",
                self.bad_epochs, self.epochs_done
            ));
        }
        if let Some(best) = self.best
            && best.epoch >= self.epochs_done
        {
            return Some(format!(
                "best epoch {} (value {}) of {} done",
                best.epoch, best.value, self.epochs_done
            ));
        }
        None
    }
}
