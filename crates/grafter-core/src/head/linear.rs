//! Pooling, dropout, one linear layer: the classic transfer-learning head.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::{Head, Pooling, check_dropout, check_sizes};

/// Configuration of a [`LinearHead`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use grafter_core::{Head, LinearHeadConfig, Pooling};
///
/// let device = Device::flex();
/// let head = LinearHeadConfig::new(512, 10)
///     .with_pooling(Pooling::AvgMax)
///     .try_init(&device)
///     .unwrap();
/// let logits = head.forward(Tensor::zeros([2, 512, 7, 7], &device));
/// assert_eq!(logits.dims(), [2, 10]);
/// ```
#[derive(Config, Debug)]
pub struct LinearHeadConfig {
    /// Feature channels of the backbone.
    pub in_channels: usize,
    /// Number of logits (classes; 1 for binary).
    pub num_outputs: usize,
    /// Global pooling.
    #[config(default = "Pooling::Avg")]
    pub pooling: Pooling,
    /// Dropout before the linear layer.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl LinearHeadConfig {
    /// Builds the head, checking the sizes.
    pub fn try_init(&self, device: &Device) -> crate::Result<LinearHead> {
        check_sizes(self.in_channels, self.num_outputs)?;
        check_dropout(self.dropout)?;
        let width = self.pooling.output_channels(self.in_channels);
        Ok(LinearHead {
            pooling: self.pooling,
            dropout: DropoutConfig::new(self.dropout).init(),
            linear: LinearConfig::new(width, self.num_outputs).init(device),
            in_channels: self.in_channels,
            num_outputs: self.num_outputs,
        })
    }
}

/// Global pooling → dropout → linear.
#[derive(Module, Debug)]
pub struct LinearHead {
    /// Global pooling.
    #[module(skip)]
    pub pooling: Pooling,
    /// Dropout before the classifier.
    pub dropout: Dropout,
    /// The classifier.
    pub linear: Linear,
    in_channels: usize,
    num_outputs: usize,
}

impl Head for LinearHead {
    fn forward(&self, features: Tensor<4>) -> Tensor<2> {
        let pooled = self.pooling.apply(features);
        self.linear.forward(self.dropout.forward(pooled))
    }

    fn in_channels(&self) -> usize {
        self.in_channels
    }

    fn num_outputs(&self) -> usize {
        self.num_outputs
    }
}
