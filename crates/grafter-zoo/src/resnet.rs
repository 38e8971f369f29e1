//! ResNet-18/34/50/101/152 in torchvision's layout, as a [`Backbone`].

use burn::config::Config;
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use grafter_core::{Backbone, Preprocess, Stage};
use grafter_kernels::{batch_norm_layer, conv2d_layer, max_pool2d_layer};
use serde::{Deserialize, Serialize};

use crate::layers::{bn, conv};

/// Residual block kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34), expansion 1.
    Basic,
    /// 1×1, 3×3, 1×1 convolutions (ResNet-50/101/152), expansion 4.
    Bottleneck,
}

impl BlockKind {
    /// Output channels per base width.
    pub fn expansion(&self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// Architecture of a ResNet.
#[derive(Config, Debug, PartialEq)]
pub struct ResNetConfig {
    /// Block kind.
    pub block: BlockKind,
    /// Blocks in layer1…layer4.
    pub layers: [usize; 4],
    /// Original ResNet v1 (stride on the first 1×1 conv of a bottleneck, as Caffe, MXNet and
    /// the ONNX Model Zoo's v1 models) instead of torchvision's "v1.5" (stride on the 3×3).
    #[config(default = false)]
    pub stride_in_1x1: bool,
}

impl ResNetConfig {
    /// ResNet-18.
    pub fn resnet18() -> Self {
        Self::new(BlockKind::Basic, [2, 2, 2, 2])
    }
    /// ResNet-34.
    pub fn resnet34() -> Self {
        Self::new(BlockKind::Basic, [3, 4, 6, 3])
    }
    /// ResNet-50.
    pub fn resnet50() -> Self {
        Self::new(BlockKind::Bottleneck, [3, 4, 6, 3])
    }
    /// ResNet-101.
    pub fn resnet101() -> Self {
        Self::new(BlockKind::Bottleneck, [3, 4, 23, 3])
    }
    /// ResNet-152.
    pub fn resnet152() -> Self {
        Self::new(BlockKind::Bottleneck, [3, 8, 36, 3])
    }

    /// By depth (18, 34, 50, 101 or 152).
    pub fn depth(depth: usize) -> Option<Self> {
        Some(match depth {
            18 => Self::resnet18(),
            34 => Self::resnet34(),
            50 => Self::resnet50(),
            101 => Self::resnet101(),
            152 => Self::resnet152(),
            _ => return None,
        })
    }

    /// Channels of the final feature map (512 or 2048).
    pub fn feature_channels(&self) -> usize {
        512 * self.block.expansion()
    }

    /// Builds the backbone with fresh (random) weights.
    pub fn init(&self, device: &Device) -> ResNet {
        let mut inplanes = 64;
        let mut make_layer = |planes: usize, blocks: usize, stride: usize| {
            (0..blocks)
                .map(|i| {
                    let s = if i == 0 { stride } else { 1 };
                    let block = Block::new(self, inplanes, planes, s, device);
                    inplanes = planes * self.block.expansion();
                    block
                })
                .collect::<Vec<_>>()
        };
        let layer1 = make_layer(64, self.layers[0], 1);
        let layer2 = make_layer(128, self.layers[1], 2);
        let layer3 = make_layer(256, self.layers[2], 2);
        let layer4 = make_layer(512, self.layers[3], 2);
        ResNet {
            conv1: conv(3, 64, 7, 2, false, device),
            bn1: bn(64, device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
            feature_channels: self.feature_channels(),
            preprocess: Preprocess::imagenet(),
        }
    }
}

/// Projection shortcut: 1×1 conv with stride, then BatchNorm (`downsample.0/.1` in torchvision).
#[derive(Module, Debug)]
pub struct Downsample {
    /// 1×1 convolution.
    pub conv: Conv2d,
    /// BatchNorm.
    pub bn: BatchNorm,
}

/// A residual block; `conv3`/`bn3` exist for bottlenecks only.
#[derive(Module, Debug)]
pub struct Block {
    /// First convolution (3×3 basic, 1×1 bottleneck).
    pub conv1: Conv2d,
    /// Its BatchNorm.
    pub bn1: BatchNorm,
    /// Second convolution (3×3).
    pub conv2: Conv2d,
    /// Its BatchNorm.
    pub bn2: BatchNorm,
    /// Third convolution (1×1, bottleneck only).
    pub conv3: Option<Conv2d>,
    /// Its BatchNorm.
    pub bn3: Option<BatchNorm>,
    /// Projection shortcut when the shape changes.
    pub downsample: Option<Downsample>,
}

impl Block {
    fn new(
        cfg: &ResNetConfig,
        inplanes: usize,
        planes: usize,
        stride: usize,
        device: &Device,
    ) -> Self {
        let out = planes * cfg.block.expansion();
        let downsample = (stride != 1 || inplanes != out).then(|| Downsample {
            conv: conv(inplanes, out, 1, stride, false, device),
            bn: bn(out, device),
        });
        match cfg.block {
            BlockKind::Basic => Self {
                conv1: conv(inplanes, planes, 3, stride, false, device),
                bn1: bn(planes, device),
                conv2: conv(planes, planes, 3, 1, false, device),
                bn2: bn(planes, device),
                conv3: None,
                bn3: None,
                downsample,
            },
            BlockKind::Bottleneck => {
                let (s1, s3) = if cfg.stride_in_1x1 {
                    (stride, 1)
                } else {
                    (1, stride)
                };
                Self {
                    conv1: conv(inplanes, planes, 1, s1, false, device),
                    bn1: bn(planes, device),
                    conv2: conv(planes, planes, 3, s3, false, device),
                    bn2: bn(planes, device),
                    conv3: Some(conv(planes, out, 1, 1, false, device)),
                    bn3: Some(bn(out, device)),
                    downsample,
                }
            }
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => batch_norm_layer(&d.bn, conv2d_layer(&d.conv, x.clone())),
            None => x.clone(),
        };
        let mut y = relu(batch_norm_layer(&self.bn1, conv2d_layer(&self.conv1, x)));
        y = batch_norm_layer(&self.bn2, conv2d_layer(&self.conv2, y));
        if let (Some(c3), Some(b3)) = (&self.conv3, &self.bn3) {
            y = batch_norm_layer(b3, conv2d_layer(c3, relu(y)));
        }
        relu(y + identity)
    }
}

/// A ResNet without its average pool and classifier. Parameter names follow torchvision
/// (`conv1`, `bn1`, `layer1.0.conv1`, …) so state dicts map directly.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem convolution 7×7/2.
    pub conv1: Conv2d,
    /// Stem BatchNorm.
    pub bn1: BatchNorm,
    /// Stem max-pool 3×3/2.
    pub maxpool: MaxPool2d,
    /// Stage 1 (stride 4 overall).
    pub layer1: Vec<Block>,
    /// Stage 2 (stride 8).
    pub layer2: Vec<Block>,
    /// Stage 3 (stride 16).
    pub layer3: Vec<Block>,
    /// Stage 4 (stride 32).
    pub layer4: Vec<Block>,
    feature_channels: usize,
    /// Input convention of the weights (torchvision's by default).
    #[module(skip)]
    pub preprocess: Preprocess,
}

impl Backbone for ResNet {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        let stem = relu(batch_norm_layer(
            &self.bn1,
            conv2d_layer(&self.conv1, images),
        ));
        let mut x = max_pool2d_layer(&self.maxpool, stem);
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                x = block.forward(x);
            }
        }
        x
    }

    fn feature_channels(&self) -> usize {
        self.feature_channels
    }

    fn stages(&self) -> Vec<Stage> {
        vec![
            Stage::of_many(
                "stem",
                [
                    burn::module::ParamGroup::ids_from_module(self.conv1.clone()),
                    burn::module::ParamGroup::ids_from_module(self.bn1.clone()),
                ],
            ),
            Stage::of("layer1", &self.layer1),
            Stage::of("layer2", &self.layer2),
            Stage::of("layer3", &self.layer3),
            Stage::of("layer4", &self.layer4),
        ]
    }

    fn preprocess(&self) -> Preprocess {
        self.preprocess.clone()
    }
}
