//! Pooling, then hidden layers (linear, optional BatchNorm, ReLU, dropout), then linear.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::{Head, Pooling, check_dropout, check_sizes};

/// Configuration of an [`MlpHead`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use grafter_core::{Head, MlpHeadConfig};
///
/// let device = Device::flex();
/// let head = MlpHeadConfig::new(2048, 101, vec![512])
///     .with_batch_norm(true)
///     .with_dropout(0.25)
///     .try_init(&device)
///     .unwrap();
/// assert_eq!(head.forward(Tensor::zeros([4, 2048, 7, 7], &device)).dims(), [4, 101]);
/// ```
#[derive(Config, Debug)]
pub struct MlpHeadConfig {
    /// Feature channels of the backbone.
    pub in_channels: usize,
    /// Number of logits.
    pub num_outputs: usize,
    /// Widths of the hidden layers, input side first.
    pub hidden: Vec<usize>,
    /// Global pooling.
    #[config(default = "Pooling::Avg")]
    pub pooling: Pooling,
    /// Dropout after each hidden layer.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// BatchNorm after each hidden linear layer (before the ReLU).
    #[config(default = false)]
    pub batch_norm: bool,
}

impl MlpHeadConfig {
    /// Builds the head, checking the sizes.
    pub fn try_init(&self, device: &Device) -> crate::Result<MlpHead> {
        check_sizes(self.in_channels, self.num_outputs)?;
        check_dropout(self.dropout)?;
        if let Some(pos) = self.hidden.iter().position(|&h| h == 0) {
            return Err(crate::GrafterError::Config(format!(
                "hidden layer {pos} of the MLP head has width 0"
            )));
        }
        let mut width = self.pooling.output_channels(self.in_channels);
        let mut blocks = Vec::with_capacity(self.hidden.len());
        for &h in &self.hidden {
            blocks.push(MlpBlock {
                linear: LinearConfig::new(width, h).init(device),
                norm: self
                    .batch_norm
                    .then(|| BatchNormConfig::new(h).init(device)),
                dropout: DropoutConfig::new(self.dropout).init(),
            });
            width = h;
        }
        Ok(MlpHead {
            pooling: self.pooling,
            blocks,
            out: LinearConfig::new(width, self.num_outputs).init(device),
            in_channels: self.in_channels,
            num_outputs: self.num_outputs,
        })
    }
}

/// One hidden layer of an [`MlpHead`]: linear → (BatchNorm) → ReLU → dropout.
#[derive(Module, Debug)]
pub struct MlpBlock {
    /// The linear layer.
    pub linear: Linear,
    /// Optional BatchNorm over the hidden units.
    pub norm: Option<BatchNorm>,
    /// Dropout after the activation.
    pub dropout: Dropout,
}

impl MlpBlock {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut x = self.linear.forward(x);
        if let Some(norm) = &self.norm {
            x = norm.forward(x);
        }
        self.dropout.forward(relu(x))
    }
}

/// Global pooling → hidden blocks → linear.
#[derive(Module, Debug)]
pub struct MlpHead {
    /// Global pooling.
    #[module(skip)]
    pub pooling: Pooling,
    /// Hidden layers.
    pub blocks: Vec<MlpBlock>,
    /// Output layer.
    pub out: Linear,
    in_channels: usize,
    num_outputs: usize,
}

impl Head for MlpHead {
    fn forward(&self, features: Tensor<4>) -> Tensor<2> {
        let mut x = self.pooling.apply(features);
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.out.forward(x)
    }

    fn in_channels(&self) -> usize {
        self.in_channels
    }

    fn num_outputs(&self) -> usize {
        self.num_outputs
    }
}
