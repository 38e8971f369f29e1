//! Read-only hooks into a run, for logging, dashboards or tests of your own.
//!
//! An [`Observer`] attached with [`FineTune::observer`](crate::FineTune::observer) is told
//! about every optimiser step and every finished epoch. It receives copies of numbers the
//! loop has already computed and nothing it could change the run with, and the loop calls it
//! after the step's work is done, so a run with observers is bit for bit the run without
//! them (weights, metrics, checkpoints). An observer that draws from Burn's process-wide
//! random generator (`Device::seed`, random tensors) would still disturb the run: don't.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::history::EpochRecord;

/// One optimiser step, as the loop saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    /// Zero-based epoch.
    pub epoch: usize,
    /// Zero-based batch within the epoch (with gradient accumulation, the step's last).
    pub batch: usize,
    /// Zero-based global step (counted over the whole run, across resumes).
    pub step: usize,
    /// Images in the step (all its accumulated batches).
    pub images: usize,
    /// The step's mean training loss per image (before any loss scaling).
    pub loss: f64,
    /// The head's learning rate at this step.
    pub lr: f64,
    /// False when the optimiser skipped the step (f16 gradients that overflowed).
    pub applied: bool,
    /// The loss scale after the step, in f16 and bf16 runs.
    pub loss_scale: Option<f64>,
}

/// Hooks called by the fine-tune loop. Both default to doing nothing.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use grafter_core::finetune::{Observer, StepInfo};
/// use grafter_core::history::EpochRecord;
///
/// /// Collects the loss of every step.
/// #[derive(Default)]
/// struct Losses(Vec<f64>);
///
/// impl Observer for Losses {
///     fn on_step(&mut self, step: &StepInfo) {
///         self.0.push(step.loss);
///     }
/// }
///
/// // keep a handle: `FineTune::observer(losses.clone())`, then read it after `fit`
/// let losses = Arc::new(Mutex::new(Losses::default()));
/// # let _ = losses;
/// ```
pub trait Observer: Send {
    /// After every optimiser step (also a skipped one).
    fn on_step(&mut self, _step: &StepInfo) {}

    /// After every epoch, once its checkpoint (if any) is on disk.
    fn on_epoch_end(&mut self, _epoch: &EpochRecord) {}
}

/// An observer shared with the caller, who reads it after the run.
impl<O: Observer> Observer for Arc<Mutex<O>> {
    fn on_step(&mut self, step: &StepInfo) {
        lock(self).on_step(step);
    }

    fn on_epoch_end(&mut self, epoch: &EpochRecord) {
        lock(self).on_epoch_end(epoch);
    }
}

/// The observer even when a panic elsewhere poisoned the lock: it only ever reads.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The observers of a run, called in the order they were attached.
#[derive(Default)]
pub(crate) struct Observers(Mutex<Vec<Box<dyn Observer>>>);

impl Observers {
    /// Attaches one more.
    pub(crate) fn push(&mut self, observer: Box<dyn Observer>) {
        self.0
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(observer);
    }

    /// Tells every observer about a step.
    pub(crate) fn step(&self, step: &StepInfo) {
        for o in lock(&self.0).iter_mut() {
            o.on_step(step);
        }
    }

    /// Tells every observer about a finished epoch.
    pub(crate) fn epoch_end(&self, epoch: &EpochRecord) {
        for o in lock(&self.0).iter_mut() {
            o.on_epoch_end(epoch);
        }
    }
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} observer(s)", lock(&self.0).len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metrics;
    use crate::policy::{EpochPlan, StageSetting};

    #[derive(Default)]
    struct Log(Vec<String>);

    impl Observer for Log {
        fn on_step(&mut self, s: &StepInfo) {
            self.0.push(format!("step {} {}", s.epoch, s.step));
        }
        fn on_epoch_end(&mut self, e: &EpochRecord) {
            self.0.push(format!("epoch {}", e.epoch));
        }
    }

    /// Counts steps only: the epoch hook keeps its default.
    struct Steps(Arc<Mutex<usize>>);

    impl Observer for Steps {
        fn on_step(&mut self, _: &StepInfo) {
            *lock(&self.0) += 1;
        }
    }

    #[test]
    fn every_observer_hears_every_event_in_order() {
        let log = Arc::new(Mutex::new(Log::default()));
        let count = Arc::new(Mutex::new(0));
        let mut observers = Observers::default();
        observers.push(Box::new(log.clone()));
        observers.push(Box::new(Steps(count.clone())));
        assert_eq!(format!("{observers:?}"), "2 observer(s)");
        let step = |epoch, step| StepInfo {
            epoch,
            batch: 0,
            step,
            images: 4,
            loss: 0.5,
            lr: 1e-3,
            applied: true,
            loss_scale: None,
        };
        observers.step(&step(0, 0));
        observers.step(&step(0, 1));
        let plan = EpochPlan::uniform(1, StageSetting::train(1.0));
        let metrics = Metrics {
            loss: 1.0,
            top1: 0.5,
            top5: None,
            per_class: vec![Some(0.5)],
            samples: 4,
            confusion: Vec::new(),
            map: None,
        };
        observers.epoch_end(&EpochRecord {
            epoch: 0,
            step: 2,
            lr: 1e-3,
            plan,
            train: metrics.clone(),
            valid: metrics,
            valid_ema: None,
        });
        assert_eq!(lock(&log).0, ["step 0 0", "step 0 1", "epoch 0"]);
        assert_eq!(*lock(&count), 2);
    }
}
