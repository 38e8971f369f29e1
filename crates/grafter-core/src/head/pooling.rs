//! Global pooling of a feature map into one vector per image.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// How a head reduces `[N, C, h, w]` to `[N, C']`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Pooling {
    /// Global average pooling (`C' = C`): the torchvision / Keras default.
    #[default]
    Avg,
    /// Global max pooling (`C' = C`).
    Max,
    /// Average and max concatenated (`C' = 2C`): fastai's `AdaptiveConcatPool2d`.
    AvgMax,
}

impl Pooling {
    /// Width of the pooled vector for `channels` feature channels.
    pub fn output_channels(&self, channels: usize) -> usize {
        match self {
            Pooling::AvgMax => 2 * channels,
            _ => channels,
        }
    }

    /// Pools `features [N, C, h, w]` into `[N, C']`.
    pub fn apply(&self, features: Tensor<4>) -> Tensor<2> {
        let [n, c, h, w] = features.dims();
        let flat: Tensor<3> = features.reshape([n, c, h * w]);
        match self {
            Pooling::Avg => flat.mean_dim(2).reshape([n, c]),
            Pooling::Max => flat.max_dim(2).reshape([n, c]),
            Pooling::AvgMax => {
                let avg: Tensor<2> = flat.clone().mean_dim(2).reshape([n, c]);
                let max: Tensor<2> = flat.max_dim(2).reshape([n, c]);
                Tensor::cat(vec![avg, max], 1)
            }
        }
    }
}
