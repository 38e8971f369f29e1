//! An exponential moving average of the weights (timm's `ModelEmaV3`): the setting
//! ([`Ema`]), its decay schedule, and the update the loop applies after every optimiser step.
//!
//! After update `t` (counted from 1 over the whole run), every float tensor of the average —
//! parameters and BatchNorm running statistics alike, as timm lerps the whole `state_dict` —
//! moves towards the trained model's: `ema ← lerp(ema, model, 1 − decay(t))`, with
//! `decay(t) = 0` (a copy) until `update_after_step` updates have passed and, with warm-up,
//! `decay(t) = clamp(1 − (1 + s/γ)^−p, min_decay, decay)` for `s = t − update_after_step − 1`.
//! The average starts as a copy of the model, is evaluated on the validation data beside it
//! after every epoch (`valid_ema` in the history), and is saved in every checkpoint
//! (`ema.bpk`), so a resumed run continues the same average bit for bit: its only other
//! input, `t`, is the run's optimiser step count.

use std::any::Any;
use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{GrafterError, Result};

/// Which weights a run with an [`Ema`] keeps as its best model (`best.bpk`, and the model
/// [`fit`](crate::FineTune::fit) returns when `restore_best` is set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmaSelect {
    /// The trained weights; the average is only reported.
    Raw,
    /// The average (timm's `train.py` selects its checkpoints by the EMA's metric).
    Ema,
    /// Whichever of the two scores better on the monitored metric, epoch by epoch.
    #[default]
    Better,
}

/// Settings of the weight average, with timm `ModelEmaV3`'s names and meaning.
///
/// ```
/// use grafter_core::finetune::Ema;
///
/// let ema = Ema::new(0.999).with_warmup(true);
/// assert_eq!(ema.decay_at(1), 0.0); // the first update copies the model
/// // warm-up: 1 − (1 + 9)^(−2/3) after 10 updates
/// assert!((ema.decay_at(10) - (1.0 - 10f64.powf(-2.0 / 3.0))).abs() < 1e-12);
/// assert_eq!(ema.decay_at(1_000_000), 0.999); // capped at `decay`
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ema {
    /// The decay once warmed up (timm's `train.py` default: 0.9998).
    pub decay: f64,
    /// The smallest decay warm-up may give.
    pub min_decay: f64,
    /// Ramp the decay up from 0 (timm's `use_warmup`); without it the decay is constant.
    pub warmup: bool,
    /// Warm-up speed γ (timm's `warmup_gamma`).
    pub warmup_gamma: f64,
    /// Warm-up power p (timm's `warmup_power`; 2/3 suits runs of a few thousand steps,
    /// 3/4 longer ones).
    pub warmup_power: f64,
    /// Updates that only copy the model before averaging starts.
    pub update_after_step: usize,
    /// Which weights count as the run's best (early stopping watches the same value).
    pub select: EmaSelect,
}

impl Default for Ema {
    fn default() -> Self {
        Self::new(0.9998)
    }
}

impl Ema {
    /// A constant `decay`, no warm-up, best model chosen by [`EmaSelect::Better`].
    pub fn new(decay: f64) -> Self {
        Self {
            decay,
            min_decay: 0.0,
            warmup: false,
            warmup_gamma: 1.0,
            warmup_power: 2.0 / 3.0,
            update_after_step: 0,
            select: EmaSelect::Better,
        }
    }

    /// Turns warm-up on or off.
    pub fn with_warmup(mut self, warmup: bool) -> Self {
        self.warmup = warmup;
        self
    }

    /// Sets which weights count as the run's best.
    pub fn with_select(mut self, select: EmaSelect) -> Self {
        self.select = select;
        self
    }

    /// Checks every value, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(GrafterError::Config(msg));
        if !(0.0..1.0).contains(&self.decay) {
            return bad(format!("ema decay must be in [0, 1), got {}", self.decay));
        }
        if !(0.0..=self.decay).contains(&self.min_decay) {
            return bad(format!(
                "ema min_decay must be in [0, decay], got {}",
                self.min_decay
            ));
        }
        if !(self.warmup_gamma.is_finite() && self.warmup_gamma > 0.0) {
            return bad(format!(
                "ema warmup_gamma must be positive, got {}",
                self.warmup_gamma
            ));
        }
        if !(self.warmup_power.is_finite() && self.warmup_power > 0.0) {
            return bad(format!(
                "ema warmup_power must be positive, got {}",
                self.warmup_power
            ));
        }
        Ok(())
    }

    /// The decay of update number `updates` (1 for the first update of the run), as timm's
    /// `ModelEmaV3.get_decay`.
    pub fn decay_at(&self, updates: usize) -> f64 {
        let step = updates.saturating_sub(self.update_after_step.saturating_add(1));
        if step == 0 {
            return 0.0;
        }
        if self.warmup {
            let d = 1.0 - (1.0 + step as f64 / self.warmup_gamma).powf(-self.warmup_power);
            d.min(self.decay).max(self.min_decay)
        } else {
            self.decay
        }
    }
}

/// Moves every float tensor of `ema` (parameters and running statistics) towards the one of
/// `model` at the same module path: `lerp(ema, model, 1 − decay)`, computed as `torch.lerp` does (a
/// decay of 0 copies exactly). `model` may be an autodiff module and hold half-precision
/// statistics mid-epoch; the average keeps its own float type. Tensors of `ema` without a
/// counterpart in `model` are left as they are.
pub fn ema_update<M: Module>(ema: M, model: &M, decay: f64) -> M {
    struct Collect {
        path: Vec<String>,
        tensors: HashMap<String, Box<dyn Any>>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.tensors
                .insert(self.path.join("."), Box::new(param.val()));
        }
    }
    struct Lerp {
        path: Vec<String>,
        source: HashMap<String, Box<dyn Any>>,
        weight: f64,
    }
    impl ModuleMapper for Lerp {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some(m) = self
                .source
                .remove(&self.path.join("."))
                .and_then(|t| t.downcast::<Tensor<D>>().ok())
            else {
                return param;
            };
            let w = self.weight;
            param.map(|e| {
                let m = if m.dtype() == e.dtype() {
                    *m
                } else {
                    m.cast(FloatDType::F32)
                };
                if w < 0.5 {
                    let diff = m.sub(e.clone());
                    e.add(diff.mul_scalar(w))
                } else {
                    let diff = m.clone().sub(e);
                    m.sub(diff.mul_scalar(1.0 - w))
                }
            })
        }
    }
    // `valid()` folds pending BatchNorm statistics in and drops the autodiff graph
    let mut collect = Collect {
        path: Vec::new(),
        tensors: HashMap::new(),
    };
    model.valid().visit(&mut collect);
    ema.map(&mut Lerp {
        path: Vec::new(),
        source: collect.tensors,
        weight: 1.0 - decay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Net {
        linear: Linear,
        bn: BatchNorm,
    }

    fn net(device: &Device, seed: u64) -> Net {
        device.seed(seed);
        Net {
            linear: LinearConfig::new(3, 2).init(device),
            bn: BatchNormConfig::new(2).init(device),
        }
    }

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
        t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
    }

    #[test]
    fn the_update_is_the_lerp_of_every_float_tensor() {
        let device = Device::flex();
        let model = net(&device, 1);
        // the average: another module with the model's weights, the linear weight tripled
        let ema = net(&device, 2).load_record(model.clone().into_record());
        let ema = Net {
            linear: Linear {
                weight: ema.linear.weight.map(|w| w.mul_scalar(3.0)),
                ..ema.linear
            },
            bn: ema.bn,
        };
        model
            .bn
            .running_mean
            .update(Tensor::<1>::from_floats([0.5, -1.5], &device));
        let decay = 0.9;
        let (e0, m0) = (
            host(ema.linear.weight.val()),
            host(model.linear.weight.val()),
        );
        let (em0, mm0) = (
            host(ema.bn.running_mean.value()),
            host(model.bn.running_mean.value_sync()),
        );
        let ema = ema_update(ema, &model, decay);
        let hand = |e: &[f64], m: &[f64]| -> Vec<f64> {
            e.iter()
                .zip(m)
                .map(|(e, m)| decay * e + (1.0 - decay) * m)
                .collect()
        };
        for (got, want) in [
            (host(ema.linear.weight.val()), hand(&e0, &m0)),
            (host(ema.bn.running_mean.value()), hand(&em0, &mm0)),
        ] {
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
            }
        }
        // the model is untouched and a zero decay copies it exactly
        assert_eq!(host(model.linear.weight.val()), m0);
        let copy = ema_update(ema, &model, 0.0);
        assert_eq!(host(copy.linear.weight.val()), m0);
        assert_eq!(host(copy.bn.running_mean.value()), mm0);
    }

    #[test]
    fn decay_schedule_is_timms() {
        let plain = Ema::new(0.99);
        assert_eq!(plain.decay_at(0), 0.0);
        assert_eq!(plain.decay_at(1), 0.0);
        assert_eq!(plain.decay_at(2), 0.99);
        let late = Ema {
            update_after_step: 3,
            ..plain
        };
        assert_eq!(late.decay_at(4), 0.0);
        assert_eq!(late.decay_at(5), 0.99);
        let warm = Ema {
            warmup: true,
            warmup_gamma: 2.0,
            warmup_power: 0.75,
            min_decay: 0.1,
            ..plain
        };
        // s = 3: 1 − (1 + 3/2)^−0.75
        let want = 1.0 - 2.5f64.powf(-0.75);
        assert!((warm.decay_at(4) - want).abs() < 1e-12);
        // s = 1: 1 − 1.5^−0.75 ≈ 0.262, above min_decay
        assert!((warm.decay_at(2) - (1.0 - 1.5f64.powf(-0.75))).abs() < 1e-12);
        assert_eq!(
            Ema {
                min_decay: 0.5,
                ..warm
            }
            .decay_at(2),
            0.5
        );
        assert!(Ema::new(1.0).validate().is_err());
        assert!(
            Ema {
                min_decay: 0.995,
                ..plain
            }
            .validate()
            .is_err()
        );
        let json: Ema = serde_json::from_str(r#"{"decay": 0.9}"#).unwrap();
        assert_eq!(json, Ema::new(0.9));
    }
}
