//! The [`Head`] trait and the heads grafter ships: pooling, then linear or MLP.

mod linear;
mod mlp;
mod pooling;

pub use linear::{LinearHead, LinearHeadConfig};
pub use mlp::{MlpBlock, MlpHead, MlpHeadConfig};
pub use pooling::Pooling;

use burn::module::{Module, ModuleDisplay};
use burn::tensor::Tensor;

/// A Burn module from a backbone's feature map to logits.
///
/// The head is where a pretrained model meets a new task: it is grafted on after the
/// backbone's classifier has been cut off, and it always trains.
pub trait Head: Module + ModuleDisplay {
    /// `features [N, C, h, w]` to `logits [N, K]`.
    fn forward(&self, features: Tensor<4>) -> Tensor<2>;

    /// `C`, the number of feature channels the head was built for.
    fn in_channels(&self) -> usize;

    /// `K`, the number of logits.
    fn num_outputs(&self) -> usize;
}

pub(crate) fn check_sizes(in_channels: usize, num_outputs: usize) -> crate::Result<()> {
    if in_channels == 0 {
        return Err(crate::GrafterError::Config(
            "a head needs at least one input channel".into(),
        ));
    }
    if num_outputs == 0 {
        return Err(crate::GrafterError::Config(
            "a head needs at least one output (number of classes is 0)".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_dropout(p: f64) -> crate::Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(crate::GrafterError::Config(format!(
            "dropout probability must be in [0, 1), got {p}"
        )));
    }
    Ok(())
}
