//! Optimisers (AdamW, SGD with momentum) and global gradient-norm clipping.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Which optimiser the fine-tune loop uses.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum OptimizerConfig {
    /// Adam with decoupled weight decay.
    AdamW {
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Numerical-stability term.
        epsilon: f32,
        /// Decoupled weight decay.
        weight_decay: f32,
    },
    /// Stochastic gradient descent with (Nesterov) momentum and L2 weight decay, with
    /// PyTorch's semantics (no dampening).
    Sgd {
        /// Momentum factor (0 disables momentum).
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 weight decay.
        weight_decay: f32,
    },
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::adamw()
    }
}

impl OptimizerConfig {
    /// AdamW with PyTorch's defaults except weight decay 0.01 (fastai's default).
    pub fn adamw() -> Self {
        Self::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
        }
    }

    /// SGD with momentum 0.9 and weight decay 1e-4 (the ImageNet recipe).
    pub fn sgd() -> Self {
        Self::Sgd {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-4,
        }
    }

    /// Builds Burn's optimiser for a whole module.
    pub fn build(&self) -> ModuleOptimizer {
        match *self {
            OptimizerConfig::AdamW {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            } => AdamWConfig::new()
                .with_beta_1(beta1)
                .with_beta_2(beta2)
                .with_epsilon(epsilon)
                .with_weight_decay(weight_decay)
                .init(),
            OptimizerConfig::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                let momentum = (momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0)
                        .with_nesterov(nesterov)
                });
                let decay = (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay));
                SgdConfig::new()
                    .with_momentum(momentum)
                    .with_weight_decay(decay)
                    .init()
            }
        }
    }
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`). Returns the norm before clipping.
///
/// Burn's own `GradientClipping::Norm` clips each parameter separately; the global norm is
/// what users of other frameworks expect, and it keeps the update direction intact.
pub fn clip_grad_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let norm = grad_norm(module, grads);
    if norm.is_finite() && norm > max_norm && norm > 0.0 {
        let scale = max_norm / (norm + 1e-6);
        module.visit(&mut ScaleVisitor { grads, scale });
    }
    norm
}

/// Multiplies every gradient of `module`'s parameters by `factor` (loss-scale removal,
/// clipping).
pub fn scale_grads<M: Module>(module: &M, grads: &mut GradientsParams, factor: f64) {
    module.visit(&mut ScaleVisitor {
        grads,
        scale: factor,
    });
}

/// Global L2 norm of the gradients of `module`'s parameters.
pub fn grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut visitor = NormVisitor { grads, sum: None };
    module.visit(&mut visitor);
    visitor
        .sum
        .map(|s| s.into_scalar::<f64>().sqrt())
        .unwrap_or(0.0)
}

struct NormVisitor<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for NormVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let sq = g.powi_scalar(2).sum();
            self.sum = Some(match self.sum.take() {
                Some(acc) => acc + sq,
                None => sq,
            });
        }
    }
}

struct ScaleVisitor<'a> {
    grads: &'a mut GradientsParams,
    scale: f64,
}

impl ModuleVisitor for ScaleVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.scale));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::Device;

    #[test]
    fn global_norm_clipping_scales_all_gradients_to_the_limit() {
        let device = Device::flex().autodiff();
        let linear = LinearConfig::new(4, 3).init(&device);
        let x = Tensor::<2>::ones([8, 4], &device).mul_scalar(10.0);
        let loss = linear.forward(x).powi_scalar(2).sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &linear);
        let before = grad_norm(&linear, &grads);
        assert!(before > 1.0, "test needs a large gradient, got {before}");
        let reported = clip_grad_norm(&linear, &mut grads, 1.0);
        assert_eq!(reported, before);
        let after = grad_norm(&linear, &grads);
        assert!((after - 1.0).abs() < 1e-4, "norm after clipping {after}");
        // a norm under the limit is left alone
        assert_eq!(clip_grad_norm(&linear, &mut grads, 100.0), after);
        assert!((grad_norm(&linear, &grads) - after).abs() < 1e-9);
    }
}
