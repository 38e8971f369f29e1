//! VGG-11/13/16/19, with and without BatchNorm, in torchvision's layout, as a [`Backbone`].

use burn::config::Config;
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::{Device, Tensor};
use grafter_core::feature_maps::Taps;
use grafter_core::{Backbone, FeatureInfo, FeatureMaps, Preprocess, Stage};
use grafter_kernels::{conv_bn_relu_layer, conv_relu_layer, max_pool2d_layer};

use crate::layers::{bn, conv};

/// Architecture of a VGG.
#[derive(Config, Debug, PartialEq)]
pub struct VggConfig {
    /// Convolutions per block (five blocks); widths are 64, 128, 256, 512, 512.
    pub convs: [usize; 5],
    /// BatchNorm after every convolution.
    #[config(default = false)]
    pub batch_norm: bool,
}

/// Widths of the five blocks.
pub const VGG_WIDTHS: [usize; 5] = [64, 128, 256, 512, 512];

impl VggConfig {
    /// VGG-11 / 13 / 16 / 19 by depth.
    pub fn depth(depth: usize, batch_norm: bool) -> Option<Self> {
        let convs = match depth {
            11 => [1, 1, 2, 2, 2],
            13 => [2, 2, 2, 2, 2],
            16 => [2, 2, 3, 3, 3],
            19 => [2, 2, 4, 4, 4],
            _ => return None,
        };
        Some(Self::new(convs).with_batch_norm(batch_norm))
    }

    /// VGG-16.
    pub fn vgg16() -> Self {
        Self::new([2, 2, 3, 3, 3])
    }

    /// Indices of the conv (and BN) layers in torchvision's `features` Sequential, block by
    /// block: `(conv index, bn index)`.
    pub fn torchvision_indices(&self) -> Vec<Vec<(usize, Option<usize>)>> {
        let mut i = 0;
        self.convs
            .iter()
            .map(|&n| {
                let block = (0..n)
                    .map(|_| {
                        let c = i;
                        let b = self.batch_norm.then_some(i + 1);
                        i += if self.batch_norm { 3 } else { 2 };
                        (c, b)
                    })
                    .collect();
                i += 1; // max-pool
                block
            })
            .collect()
    }

    /// Builds the backbone with fresh weights.
    pub fn init(&self, device: &Device) -> Vgg {
        let mut cin = 3;
        let blocks = self
            .convs
            .iter()
            .zip(VGG_WIDTHS)
            .map(|(&n, w)| VggBlock {
                layers: (0..n)
                    .map(|_| {
                        let layer = ConvBnRelu {
                            conv: conv(cin, w, 3, 1, true, device),
                            bn: self.batch_norm.then(|| bn(w, device)),
                        };
                        cin = w;
                        layer
                    })
                    .collect(),
                pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            })
            .collect();
        Vgg {
            blocks,
            preprocess: Preprocess::imagenet(),
        }
    }
}

/// conv3×3 (with bias, as torchvision) → optional BatchNorm → ReLU.
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    /// The convolution.
    pub conv: Conv2d,
    /// BatchNorm, for the `_bn` variants.
    pub bn: Option<BatchNorm>,
}

/// Convolutions followed by a 2×2 max-pool.
#[derive(Module, Debug)]
pub struct VggBlock {
    /// The conv layers.
    pub layers: Vec<ConvBnRelu>,
    /// The max-pool closing the block.
    pub pool: MaxPool2d,
}

/// The convolutional part of a VGG (torchvision's `features`), without avg-pool or classifier.
#[derive(Module, Debug)]
pub struct Vgg {
    /// The five blocks.
    pub blocks: Vec<VggBlock>,
    /// Input convention of the weights (torchvision's by default; Keras "caffe" for Keras
    /// weights).
    #[module(skip)]
    pub preprocess: Preprocess,
}

impl Vgg {
    /// Runs the blocks up to map `deepest`, handing map `i` to `tap` as it passes: map `i` <
    /// blocks is block `i`'s last activation before its pooling, the last map the pooled output.
    fn forward_maps(
        &self,
        images: Tensor<4>,
        deepest: usize,
        mut tap: impl FnMut(usize, &Tensor<4>),
    ) -> Tensor<4> {
        let mut x = images;
        for (i, block) in self.blocks.iter().enumerate().take(deepest + 1) {
            for l in &block.layers {
                x = match &l.bn {
                    Some(bn) => conv_bn_relu_layer(&l.conv, bn, x, None),
                    None => conv_relu_layer(&l.conv, x, None),
                };
            }
            tap(i, &x);
            if i == deepest {
                return x;
            }
            x = max_pool2d_layer(&block.pool, x);
        }
        tap(self.blocks.len(), &x);
        x
    }
}

/// timm's `features_only` maps: each block's last activation before its max-pool (reductions
/// 1, 2, 4, 8, 16) and the pooled output of the last block (32, what `forward_features`
/// returns).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use grafter_core::FeatureMaps;
/// use grafter_zoo::VggConfig;
///
/// let device = Device::flex();
/// let vgg = VggConfig::depth(11, false).unwrap().init(&device);
/// let info = vgg.feature_info();
/// assert_eq!((info[2].channels, info[2].reduction), (256, 4));
/// let maps = vgg.forward_feature_maps(Tensor::zeros([1, 3, 64, 64], &device), &[2, 5])?;
/// assert_eq!(maps[0].dims(), [1, 256, 16, 16]);
/// assert_eq!(maps[1].dims(), [1, 512, 2, 2]);
/// # Ok::<(), grafter_core::GrafterError>(())
/// ```
impl FeatureMaps for Vgg {
    fn feature_info(&self) -> Vec<FeatureInfo> {
        let channels = |b: &VggBlock| b.layers.last().map_or(0, |l| l.conv.weight.dims()[0]);
        let mut info: Vec<FeatureInfo> = self
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| FeatureInfo {
                name: format!("block{}", i + 1),
                channels: channels(b),
                reduction: 1 << i,
            })
            .collect();
        if let Some(last) = self.blocks.last() {
            info.push(FeatureInfo {
                name: format!("block{}_pool", self.blocks.len()),
                channels: channels(last),
                reduction: 1 << self.blocks.len(),
            });
        }
        info
    }

    fn forward_feature_maps(
        &self,
        images: Tensor<4>,
        indices: &[usize],
    ) -> grafter_core::Result<Vec<Tensor<4>>> {
        let mut taps = Taps::new(indices, self.blocks.len() + 1)?;
        self.forward_maps(images, taps.deepest(), |i, map| taps.offer(i, map));
        Ok(taps.into_maps())
    }
}

impl Backbone for Vgg {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        self.forward_maps(images, self.blocks.len(), |_, _| {})
    }

    fn feature_channels(&self) -> usize {
        512
    }

    fn stages(&self) -> Vec<Stage> {
        self.blocks
            .iter()
            .enumerate()
            .map(|(i, b)| Stage::of(format!("block{}", i + 1), b))
            .collect()
    }

    fn preprocess(&self) -> Preprocess {
        self.preprocess.clone()
    }
}
