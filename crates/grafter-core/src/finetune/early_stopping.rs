//! Best-model tracking and early stopping: after each epoch, is the monitored validation
//! metric a new best (its weights are kept), and has it failed to improve for long enough to
//! stop? A pure function of the values seen, so a resumed run, which reloads the standing
//! from its checkpoint, decides exactly as an uninterrupted one.

use super::config::FineTuneConfig;
use super::run_state::{BestEpoch, RunState};
use crate::Monitor;

/// Where the run stands: the best epoch so far and the epochs since it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Standing {
    pub best: Option<BestEpoch>,
    pub bad_epochs: usize,
    pub stopped_early: bool,
}

impl Standing {
    /// The standing saved in a run's state.
    pub(crate) fn of(state: &RunState) -> Self {
        Self {
            best: state.best,
            bad_epochs: state.bad_epochs,
            stopped_early: state.stopped_early,
        }
    }

    /// Writes the standing into the run's state (saved with the next checkpoint).
    pub(crate) fn store(self, state: &mut RunState) {
        state.best = self.best;
        state.bad_epochs = self.bad_epochs;
        state.stopped_early = self.stopped_early;
    }
}

/// The rule: which metric, how much counts as better, how long to wait.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Watch {
    monitor: Monitor,
    min_delta: f64,
    patience: Option<usize>,
}

impl Watch {
    /// The rule of `cfg`: its monitor; its early stopping's patience and minimum change
    /// (without early stopping, any improvement counts and the run never stops early).
    pub(crate) fn new(cfg: &FineTuneConfig) -> Self {
        Self {
            monitor: cfg.monitor,
            min_delta: cfg.early_stopping.map(|e| e.min_delta).unwrap_or(0.0),
            patience: cfg.early_stopping.map(|e| e.patience),
        }
    }

    /// Records `value`, the monitored metric of `epoch`. True when it is the new best (the
    /// first epoch always is); sets `stopped_early` once more than `patience` epochs in a
    /// row have not improved by more than `min_delta`.
    pub(crate) fn update(&self, standing: &mut Standing, epoch: usize, value: f64) -> bool {
        let improved = match standing.best {
            None => true,
            Some(b) => self.monitor.improves(value, b.value, self.min_delta),
        };
        if improved {
            standing.best = Some(BestEpoch {
                epoch,
                value,
                ema: false,
            });
            standing.bad_epochs = 0;
        } else {
            standing.bad_epochs += 1;
        }
        if self.patience.is_some_and(|p| standing.bad_epochs > p) {
            standing.stopped_early = true;
        }
        improved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::EarlyStopping;

    fn watch(monitor: Monitor, patience: usize, min_delta: f64) -> Watch {
        Watch::new(
            &FineTuneConfig::new()
                .with_monitor(monitor)
                .with_early_stopping(Some(EarlyStopping {
                    patience,
                    min_delta,
                })),
        )
    }

    /// Feeds `values` epoch by epoch; returns which epochs improved and the final standing.
    fn run(w: &Watch, values: &[f64]) -> (Vec<bool>, Standing) {
        let mut s = Standing::default();
        let improved = values
            .iter()
            .enumerate()
            .map(|(e, &v)| w.update(&mut s, e, v))
            .collect();
        (improved, s)
    }

    #[test]
    fn stops_after_more_than_patience_epochs_without_improvement() {
        let w = watch(Monitor::ValTop1, 2, 0.0);
        let (improved, s) = run(&w, &[0.5, 0.6, 0.6, 0.55]);
        assert_eq!(improved, [true, true, false, false]);
        assert_eq!(
            s.best,
            Some(BestEpoch {
                epoch: 1,
                value: 0.6,
                ema: false,
            })
        );
        assert!(
            !s.stopped_early,
            "two bad epochs are within a patience of 2"
        );
        let (_, s) = run(&w, &[0.5, 0.6, 0.6, 0.55, 0.59]);
        assert!(s.stopped_early && s.bad_epochs == 3);
    }

    #[test]
    fn an_improvement_resets_the_count() {
        let w = watch(Monitor::ValTop1, 1, 0.0);
        let (improved, s) = run(&w, &[0.5, 0.4, 0.7, 0.6]);
        assert_eq!(improved, [true, false, true, false]);
        assert_eq!((s.bad_epochs, s.stopped_early), (1, false));
    }

    #[test]
    fn changes_within_min_delta_do_not_count() {
        let w = watch(Monitor::ValTop1, 0, 0.05);
        let (improved, s) = run(&w, &[0.5, 0.54]);
        assert_eq!(improved, [true, false]);
        assert!(
            s.stopped_early,
            "patience 0 stops at the first epoch without improvement"
        );
        assert_eq!(s.best.unwrap().value, 0.5);
        let (improved, _) = run(&w, &[0.5, 0.56]);
        assert_eq!(improved, [true, true]);
    }

    #[test]
    fn a_loss_improves_downwards() {
        let w = watch(Monitor::ValLoss, 5, 0.0);
        let (improved, s) = run(&w, &[1.0, 1.2, 0.8]);
        assert_eq!(improved, [true, false, true]);
        assert_eq!(
            s.best,
            Some(BestEpoch {
                epoch: 2,
                value: 0.8,
                ema: false,
            })
        );
    }

    #[test]
    fn without_early_stopping_the_best_is_tracked_and_the_run_never_stops() {
        let w = Watch::new(&FineTuneConfig::new());
        let (improved, s) = run(&w, &[0.9, 0.1, 0.1, 0.1, 0.1, 0.1]);
        assert!(improved[0]);
        assert!(improved[1..].iter().all(|&i| !i));
        assert_eq!((s.bad_epochs, s.stopped_early), (5, false));
    }
}
