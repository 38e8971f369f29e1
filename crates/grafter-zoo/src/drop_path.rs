//! Stochastic depth ("drop path", Huang et al. 2016) as timm applies it to ResNets: during
//! training each sample skips a residual branch with probability `prob`, and the branches it
//! keeps are scaled by `1 / (1 − prob)` so the expected output is unchanged.

use burn::module::{Flag, Module, Param};
use burn::tensor::{Distribution, Tensor};

/// Drops a whole residual branch per sample while training.
///
/// Like Burn's `Dropout` it acts only on an autodiff device and while its `training` flag is
/// set: evaluation, inference and frozen stages (`freeze` clears the flag) see the identity.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use grafter_zoo::drop_path::DropPath;
///
/// let device = Device::flex().autodiff();
/// let x = Tensor::<4>::ones([512, 1, 2, 2], &device);
/// let y = DropPath::new(0.25).forward(x).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
/// // every sample is either dropped (0) or kept and scaled by 1 / 0.75
/// assert!(y.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
/// let dropped = y.chunks(4).filter(|s| s[0] == 0.0).count();
/// assert!((80..180).contains(&dropped), "{dropped}");
/// ```
#[derive(Module, Debug)]
pub struct DropPath {
    /// Probability of dropping the branch of one sample.
    pub prob: f64,
    /// Whether to behave as during training (cleared by `freeze`).
    pub training: Param<Flag>,
}

impl DropPath {
    /// A drop path with probability `prob` (clamped to `[0, 1)`).
    pub fn new(prob: f64) -> Self {
        Self {
            prob: if prob.is_finite() {
                prob.clamp(0.0, 0.999)
            } else {
                0.0
            },
            training: Param::from_bool(true),
        }
    }

    /// The residual branch `x`, dropped or scaled per sample while training.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.prob == 0.0 || !self.training.is_enabled() || !x.device().is_autodiff() {
            return x;
        }
        let keep = 1.0 - self.prob;
        let n = x.dims()[0];
        let mask = Tensor::<4>::random([n, 1, 1, 1], Distribution::Bernoulli(keep), &x.device());
        x * mask.div_scalar(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn host(t: Tensor<4>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn identity_in_evaluation_when_frozen_and_at_zero() {
        let x = Tensor::<4>::ones([8, 2, 3, 3], &Device::flex());
        assert_eq!(host(DropPath::new(0.5).forward(x.clone())), host(x.clone()));
        let ad = Device::flex().autodiff();
        let xa = Tensor::<4>::ones([8, 2, 3, 3], &ad);
        assert_eq!(
            host(DropPath::new(0.0).forward(xa.clone())),
            host(x.clone())
        );
        let frozen = DropPath::new(0.5).freeze();
        assert_eq!(host(frozen.forward(xa)), host(x));
    }

    #[test]
    fn gradients_flow_through_kept_samples_only() {
        let ad = Device::flex().autodiff();
        ad.seed(3);
        let x = Tensor::<4>::ones([64, 1, 2, 2], &ad).require_grad();
        let y = DropPath::new(0.5).forward(x.clone());
        let kept = host(y.clone());
        let grads = y.sum().backward();
        let g = host(x.grad(&grads).unwrap());
        assert_eq!(g, kept, "d(sum)/dx is the per-sample mask");
        let dropped = kept.chunks(4).filter(|s| s[0] == 0.0).count();
        assert!(dropped > 10 && dropped < 54, "{dropped}");
    }
}
