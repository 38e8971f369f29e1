//! Learning-rate schedules as pure functions of the step, so resuming needs no hidden state.

use serde::{Deserialize, Serialize};

/// Shape of the learning rate over one training phase.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// Linear warm-up from 0 over `warmup_fraction` of the phase, then cosine decay down to
    /// `min_factor` × base.
    CosineWarmup {
        /// Fraction of the phase's steps spent warming up, in [0, 1).
        warmup_fraction: f64,
        /// Final rate as a fraction of the base rate.
        min_factor: f64,
    },
    /// Leslie Smith's one-cycle (PyTorch `OneCycleLR`, cosine annealing): from
    /// base/`div_factor` up to base over `pct_start` of the phase, then down to
    /// base/(`div_factor`·`final_div_factor`).
    OneCycle {
        /// Fraction of the phase spent increasing (PyTorch default 0.3; fastai 0.25).
        pct_start: f64,
        /// Initial rate is base / div_factor (default 25).
        div_factor: f64,
        /// Final rate is initial / final_div_factor (PyTorch 1e4; fastai 1e5).
        final_div_factor: f64,
    },
}

impl Default for LrSchedule {
    fn default() -> Self {
        Self::one_cycle()
    }
}

impl LrSchedule {
    /// One-cycle with fastai's defaults.
    pub fn one_cycle() -> Self {
        Self::OneCycle {
            pct_start: 0.25,
            div_factor: 25.0,
            final_div_factor: 1e5,
        }
    }

    /// Cosine with 5% linear warm-up down to zero.
    pub fn cosine_warmup() -> Self {
        Self::CosineWarmup {
            warmup_fraction: 0.05,
            min_factor: 0.0,
        }
    }

    /// Multiplier on the base rate at zero-based `step` of a phase of `total` steps.
    pub fn factor(&self, step: usize, total: usize) -> f64 {
        let total = total.max(1);
        let t = step.min(total - 1) as f64;
        let last = (total - 1).max(1) as f64;
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::CosineWarmup {
                warmup_fraction,
                min_factor,
            } => {
                let warm = (warmup_fraction * total as f64).round();
                if t < warm {
                    (t + 1.0) / (warm + 1.0)
                } else {
                    let span = (last - warm).max(1.0);
                    let p = ((t - warm) / span).clamp(0.0, 1.0);
                    min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
                }
            }
            LrSchedule::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                let start = 1.0 / div_factor;
                let end = start / final_div_factor;
                let peak = (pct_start * last).max(1.0).min(last);
                let cos = |from: f64, to: f64, p: f64| {
                    to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
                };
                if t <= peak {
                    cos(start, 1.0, t / peak)
                } else {
                    cos(1.0, end, (t - peak) / (last - peak).max(1.0))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_rises_then_falls() {
        let s = LrSchedule::one_cycle();
        let f: Vec<f64> = (0..100).map(|i| s.factor(i, 100)).collect();
        assert!((f[0] - 1.0 / 25.0).abs() < 1e-9);
        let peak = f.iter().cloned().fold(0.0, f64::max);
        assert!((peak - 1.0).abs() < 1e-3);
        assert!(f[99] < 1e-5);
    }

    #[test]
    fn cosine_warmup_warms_then_decays() {
        let s = LrSchedule::CosineWarmup {
            warmup_fraction: 0.1,
            min_factor: 0.0,
        };
        assert!(s.factor(0, 100) < 0.2);
        assert!((s.factor(10, 100) - 1.0).abs() < 1e-9);
        assert!(s.factor(99, 100) < 1e-9);
        assert!(s.factor(50, 100) > s.factor(60, 100));
    }

    #[test]
    fn single_step_phase_is_finite() {
        for s in [
            LrSchedule::Constant,
            LrSchedule::one_cycle(),
            LrSchedule::cosine_warmup(),
        ] {
            assert!(s.factor(0, 1).is_finite());
        }
    }
}
