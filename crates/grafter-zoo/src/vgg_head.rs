//! VGG's original classifier as a [`Head`]: adaptive avg-pool to 7×7, flatten, two hidden
//! layers of 4096 with ReLU and dropout, then the output layer. Used to rebuild the full
//! ImageNet model (sanity predictions, parity with onnxruntime), or as a head to fine-tune.

use burn::module::Module;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use grafter_core::Head;
use grafter_kernels::relu;

/// torchvision's `VGG.classifier` (with its `avgpool`).
#[derive(Module, Debug)]
pub struct VggHead {
    /// Adaptive average pool to 7×7 (an identity at 224×224 input).
    pub avgpool: AdaptiveAvgPool2d,
    /// 25088 → 4096.
    pub fc1: Linear,
    /// 4096 → 4096.
    pub fc2: Linear,
    /// 4096 → classes.
    pub fc3: Linear,
    /// Dropout after each hidden layer.
    pub dropout: Dropout,
    num_outputs: usize,
}

impl VggHead {
    /// A fresh classifier for `num_outputs` classes (1000 for ImageNet).
    pub fn new(num_outputs: usize, dropout: f64, device: &Device) -> Self {
        Self {
            avgpool: AdaptiveAvgPool2dConfig::new([7, 7]).init(),
            fc1: LinearConfig::new(512 * 7 * 7, 4096).init(device),
            fc2: LinearConfig::new(4096, 4096).init(device),
            fc3: LinearConfig::new(4096, num_outputs).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            num_outputs,
        }
    }
}

impl Head for VggHead {
    fn forward(&self, features: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = self.avgpool.forward(features).flatten(1, 3);
        let x = self.dropout.forward(relu(self.fc1.forward(x)));
        let x = self.dropout.forward(relu(self.fc2.forward(x)));
        self.fc3.forward(x)
    }

    fn in_channels(&self) -> usize {
        512
    }

    fn num_outputs(&self) -> usize {
        self.num_outputs
    }
}
