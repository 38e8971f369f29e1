//! ResNet-18/34/50/101/152 in torchvision's layout, as a [`Backbone`].

use burn::config::Config;
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::{Device, Distribution, Tensor};
use grafter_core::feature_maps::Taps;
use grafter_core::{Backbone, FeatureInfo, FeatureMaps, Preprocess, Stage};
use grafter_kernels::relu;
use grafter_kernels::{conv_bn_layer, conv_bn_relu_layer, max_pool2d_layer};
use serde::{Deserialize, Serialize};

use crate::ZooError;
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
    /// Probability of dropping the residual branch of a sample in training (stochastic
    /// depth; 0 by default, see [`ResNet::with_drop_path`]).
    #[module(skip)]
    pub drop_path: f64,
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
                drop_path: 0.0,
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
                    drop_path: 0.0,
                }
            }
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => conv_bn_layer(&d.conv, &d.bn, x.clone()),
            None => x.clone(),
        };
        let y = conv_bn_relu_layer(&self.conv1, &self.bn1, x, None);
        // The block's last convolution: conv2 (basic), conv3 after conv2 + ReLU (bottleneck).
        let (y, conv, bn) = match (&self.conv3, &self.bn3) {
            (Some(c3), Some(b3)) => (conv_bn_relu_layer(&self.conv2, &self.bn2, y, None), c3, b3),
            _ => (y, &self.conv2, &self.bn2),
        };
        if self.drops_path(&y) {
            return relu(self.drop_residual(conv_bn_layer(conv, bn, y)) + identity);
        }
        // The addition and ReLU inside the convolution where it runs folded (inference).
        conv_bn_relu_layer(conv, bn, y, Some(identity))
    }

    /// Whether stochastic depth applies to this forward pass: a drop probability, on an
    /// autodiff device, the block not frozen.
    fn drops_path(&self, y: &Tensor<4>) -> bool {
        self.drop_path > 0.0 && y.device().is_autodiff() && self.bn1.training.is_enabled()
    }

    /// Stochastic depth (timm's `drop_path`): in training, each sample's residual branch is
    /// dropped with probability `drop_path` and the kept ones scaled by `1 / (1 − p)`, so the
    /// expectation is the inference output. Only while the block trains: on an autodiff
    /// device, and not frozen (a frozen stage's BatchNorm, hence the block, is in inference
    /// mode). The mask is drawn from the device's generator, which the fine-tune loop seeds
    /// per epoch, so resumed runs draw the same masks.
    fn drop_residual(&self, y: Tensor<4>) -> Tensor<4> {
        let p = self.drop_path;
        if !self.drops_path(&y) {
            return y;
        }
        let keep = 1.0 - p;
        let n = y.dims()[0];
        let mask = Tensor::<4>::random([n, 1, 1, 1], Distribution::Bernoulli(keep), &y.device());
        y * mask.div_scalar(keep)
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

impl ResNet {
    /// Stochastic depth with timm's schedule: the residual branch of block `i` of `n` (all
    /// stages, input side first) is dropped per sample with probability
    /// `rate · i / (n − 1)` while training, so the first block never and the last with
    /// `rate` (timm's `drop_path_rate`; 0.05–0.1 is usual for fine-tuning). Records and
    /// exports are unchanged: it acts in training forwards only.
    ///
    /// ```
    /// use burn::tensor::Device;
    /// use grafter_zoo::ResNetConfig;
    ///
    /// let net = ResNetConfig::resnet18().init(&Device::flex()).with_drop_path(0.1).unwrap();
    /// assert_eq!(net.layer1[0].drop_path, 0.0);
    /// assert!((net.layer4[1].drop_path - 0.1).abs() < 1e-12);
    /// ```
    pub fn with_drop_path(mut self, rate: f64) -> Result<Self, ZooError> {
        if !(0.0..1.0).contains(&rate) {
            return Err(ZooError::Config(format!(
                "drop_path rate must be in [0, 1), got {rate}"
            )));
        }
        let n: usize = [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .iter()
            .map(|l| l.len())
            .sum();
        let mut i = 0;
        for layer in [
            &mut self.layer1,
            &mut self.layer2,
            &mut self.layer3,
            &mut self.layer4,
        ] {
            for block in layer.iter_mut() {
                block.drop_path = rate * i as f64 / (n.max(2) - 1) as f64;
                i += 1;
            }
        }
        Ok(self)
    }
}

impl ResNet {
    /// Runs the stem and the first `deepest` stages, handing map `i` (0 = the stem's
    /// activation, 1…4 = layer1…layer4) to `tap` as it passes.
    fn forward_maps(
        &self,
        images: Tensor<4>,
        deepest: usize,
        mut tap: impl FnMut(usize, &Tensor<4>),
    ) -> Tensor<4> {
        let mut x = conv_bn_relu_layer(&self.conv1, &self.bn1, images, None);
        tap(0, &x);
        if deepest == 0 {
            return x;
        }
        x = max_pool2d_layer(&self.maxpool, x);
        let layers = [&self.layer1, &self.layer2, &self.layer3, &self.layer4];
        for (i, layer) in layers.into_iter().enumerate().take(deepest) {
            for block in layer {
                x = block.forward(x);
            }
            tap(i + 1, &x);
        }
        x
    }
}

/// timm's `features_only` maps: the stem's activation (reduction 2, 64 channels) and the output
/// of each of the four stages (4, 8, 16, 32).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use grafter_core::FeatureMaps;
/// use grafter_zoo::ResNetConfig;
///
/// let device = Device::flex();
/// let resnet = ResNetConfig::resnet50().init(&device);
/// let names: Vec<_> = resnet.feature_info().into_iter().map(|f| (f.name, f.channels, f.reduction)).collect();
/// assert_eq!(names[1], ("layer1".to_string(), 256, 4));
/// let maps = resnet.forward_feature_maps(Tensor::zeros([1, 3, 64, 64], &device), &[2, 4])?;
/// assert_eq!(maps[0].dims(), [1, 512, 8, 8]);
/// assert_eq!(maps[1].dims(), [1, 2048, 2, 2]);
/// # Ok::<(), grafter_core::GrafterError>(())
/// ```
impl FeatureMaps for ResNet {
    fn feature_info(&self) -> Vec<FeatureInfo> {
        let stem = FeatureInfo {
            name: "stem".into(),
            channels: 64,
            reduction: 2,
        };
        let stages = (0..4).map(|i| FeatureInfo {
            name: format!("layer{}", i + 1),
            channels: self.feature_channels >> (3 - i),
            reduction: 4 << i,
        });
        std::iter::once(stem).chain(stages).collect()
    }

    fn forward_feature_maps(
        &self,
        images: Tensor<4>,
        indices: &[usize],
    ) -> grafter_core::Result<Vec<Tensor<4>>> {
        let mut taps = Taps::new(indices, 5)?;
        self.forward_maps(images, taps.deepest(), |i, map| taps.offer(i, map));
        Ok(taps.into_maps())
    }
}

impl Backbone for ResNet {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        self.forward_maps(images, 4, |_, _| {})
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(t: Tensor<4>) -> Vec<Vec<f32>> {
        let n = t.dims()[0];
        let v = t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        v.chunks(v.len() / n).map(<[f32]>::to_vec).collect()
    }

    /// Eight copies of one image: in a training forward only stochastic depth can make
    /// their features differ (BatchNorm sees identical samples).
    #[test]
    fn drop_path_acts_per_sample_while_training_only() {
        let device = Device::flex();
        let one = Tensor::<4>::random([1, 3, 32, 32], Distribution::Default, &device);
        let x = one.repeat_dim(0, 8);
        let build = |rate| {
            ResNetConfig::resnet18()
                .init(&device)
                .with_drop_path(rate)
                .unwrap()
        };
        let all_same = |r: &[Vec<f32>]| r.iter().all(|row| row == &r[0]);

        let dropping = build(0.5);
        assert!(
            all_same(&rows(dropping.forward_features(x.clone()))),
            "inference"
        );
        let ad = device.clone().autodiff();
        let training = dropping.fork(&ad).train();
        let out = rows(training.forward_features(x.clone().to_device(&ad)));
        assert!(!all_same(&out), "no sample's residual branch was dropped");
        // a frozen network (BatchNorm in inference mode) drops nothing
        let frozen = training.freeze();
        assert!(all_same(&rows(
            frozen.forward_features(x.clone().to_device(&ad))
        )));
        // rate 0: nothing dropped while training either
        let plain = build(0.0).fork(&ad).train();
        assert!(all_same(&rows(plain.forward_features(x.to_device(&ad)))));
        assert!(build(0.0).with_drop_path(1.0).is_err());
    }
}
