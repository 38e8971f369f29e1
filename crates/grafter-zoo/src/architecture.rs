//! [`Architecture`]: which network a weight set fits, as a closed, typed set — the registry's
//! entries carry one, and it builds the matching [`AnyBackbone`].

use std::fmt;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::any::AnyBackbone;
use crate::resnet::ResNetConfig;
use crate::vgg::VggConfig;

/// ResNet depths with a torchvision layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResNetDepth {
    /// ResNet-18 (basic blocks).
    R18,
    /// ResNet-34 (basic blocks).
    R34,
    /// ResNet-50 (bottlenecks).
    R50,
    /// ResNet-101 (bottlenecks).
    R101,
    /// ResNet-152 (bottlenecks).
    R152,
}

impl ResNetDepth {
    /// Every depth, shallowest first.
    pub const ALL: [Self; 5] = [Self::R18, Self::R34, Self::R50, Self::R101, Self::R152];

    /// 18, 34, 50, 101 or 152.
    pub fn layers(self) -> usize {
        match self {
            Self::R18 => 18,
            Self::R34 => 34,
            Self::R50 => 50,
            Self::R101 => 101,
            Self::R152 => 152,
        }
    }
}

/// Where a ResNet bottleneck downsamples. Weight sets of one variant do not fit the other:
/// the shapes agree, the features do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResNetVariant {
    /// The original ResNet (Caffe, MXNet Gluon, the ONNX Model Zoo's `-v1-` models): the
    /// stride sits on the first 1×1 convolution of a downsampling bottleneck.
    V1,
    /// torchvision's and timm's "v1.5" (ResNet-B): the stride sits on the 3×3 convolution.
    V1_5,
}

/// VGG depths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VggDepth {
    /// VGG-11 (configuration A).
    V11,
    /// VGG-13 (configuration B).
    V13,
    /// VGG-16 (configuration D).
    V16,
    /// VGG-19 (configuration E).
    V19,
}

impl VggDepth {
    /// Every depth, shallowest first.
    pub const ALL: [Self; 4] = [Self::V11, Self::V13, Self::V16, Self::V19];

    /// 11, 13, 16 or 19.
    pub fn layers(self) -> usize {
        match self {
            Self::V11 => 11,
            Self::V13 => 13,
            Self::V16 => 16,
            Self::V19 => 19,
        }
    }
}

/// A zoo architecture: everything needed to build the backbone a weight set fits.
///
/// ```
/// use grafter_zoo::{Architecture, ResNetVariant};
///
/// let arch = Architecture::from_name("resnet50").unwrap();
/// assert_eq!(arch.name(), "resnet50");
/// assert_eq!(arch, Architecture::resnet50(ResNetVariant::V1_5));
/// assert_eq!(Architecture::from_name("vgg16_bn").unwrap().name(), "vgg16_bn");
/// assert!(Architecture::from_name("resnet42").is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Architecture {
    /// A ResNet in torchvision's layout ([`crate::ResNet`]).
    ResNet {
        /// Depth.
        depth: ResNetDepth,
        /// Where bottlenecks downsample (irrelevant, and `V1_5` by convention, for 18/34).
        variant: ResNetVariant,
    },
    /// A VGG's convolutional base in torchvision's layout ([`crate::Vgg`]).
    Vgg {
        /// Depth.
        depth: VggDepth,
        /// BatchNorm after every convolution (`vgg16_bn`).
        batch_norm: bool,
    },
}

impl Architecture {
    /// A ResNet of `depth` with torchvision's v1.5 strides.
    pub const fn resnet(depth: ResNetDepth) -> Self {
        Self::ResNet {
            depth,
            variant: ResNetVariant::V1_5,
        }
    }

    /// ResNet-50 of `variant`.
    pub const fn resnet50(variant: ResNetVariant) -> Self {
        Self::ResNet {
            depth: ResNetDepth::R50,
            variant,
        }
    }

    /// A VGG of `depth`, with or without BatchNorm.
    pub const fn vgg(depth: VggDepth, batch_norm: bool) -> Self {
        Self::Vgg { depth, batch_norm }
    }

    /// Every architecture the zoo builds: the ResNets (v1.5; v1 for the bottleneck depths
    /// too) and the VGGs with and without BatchNorm.
    pub fn all() -> Vec<Self> {
        let mut all = Vec::new();
        for depth in ResNetDepth::ALL {
            all.push(Self::resnet(depth));
            if depth.layers() >= 50 {
                all.push(Self::ResNet {
                    depth,
                    variant: ResNetVariant::V1,
                });
            }
        }
        for depth in VggDepth::ALL {
            for batch_norm in [false, true] {
                all.push(Self::vgg(depth, batch_norm));
            }
        }
        all
    }

    /// timm's / torchvision's name: `resnet50`, `vgg16_bn`. The ResNet variant is not part
    /// of it (see [`Display`](fmt::Display), which adds it).
    pub fn name(&self) -> String {
        match self {
            Self::ResNet { depth, .. } => format!("resnet{}", depth.layers()),
            Self::Vgg { depth, batch_norm } => {
                format!(
                    "vgg{}{}",
                    depth.layers(),
                    if *batch_norm { "_bn" } else { "" }
                )
            }
        }
    }

    /// The architecture called `name` (`resnet18`…`resnet152`, `vgg11`…`vgg19`, with `_bn`
    /// for BatchNorm); ResNets get torchvision's v1.5 strides.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        if let Some(d) = name.strip_prefix("resnet") {
            let d: usize = d.parse().ok()?;
            return ResNetDepth::ALL
                .into_iter()
                .find(|r| r.layers() == d)
                .map(Self::resnet);
        }
        let rest = name.strip_prefix("vgg")?;
        let (d, batch_norm) = match rest.strip_suffix("_bn") {
            Some(d) => (d, true),
            None => (rest, false),
        };
        let d: usize = d.parse().ok()?;
        VggDepth::ALL
            .into_iter()
            .find(|v| v.layers() == d)
            .map(|depth| Self::vgg(depth, batch_norm))
    }

    /// The ResNet configuration, for a ResNet.
    pub fn resnet_config(&self) -> Option<ResNetConfig> {
        match *self {
            Self::ResNet { depth, variant } => Some(resnet_config(depth, variant)),
            Self::Vgg { .. } => None,
        }
    }

    /// The VGG configuration, for a VGG.
    pub fn vgg_config(&self) -> Option<VggConfig> {
        match *self {
            Self::Vgg { depth, batch_norm } => Some(vgg_config(depth, batch_norm)),
            Self::ResNet { .. } => None,
        }
    }

    /// Channels of the feature map (512 or 2048).
    pub fn feature_channels(&self) -> usize {
        match *self {
            Self::ResNet { depth, variant } => resnet_config(depth, variant).feature_channels(),
            Self::Vgg { .. } => 512,
        }
    }

    /// The backbone with fresh (random) weights and ImageNet's default preprocessing.
    pub fn init(&self, device: &Device) -> AnyBackbone {
        match *self {
            Self::ResNet { depth, variant } => {
                AnyBackbone::ResNet(resnet_config(depth, variant).init(device))
            }
            Self::Vgg { depth, batch_norm } => {
                AnyBackbone::Vgg(vgg_config(depth, batch_norm).init(device))
            }
        }
    }
}

fn resnet_config(depth: ResNetDepth, variant: ResNetVariant) -> ResNetConfig {
    let cfg = match depth {
        ResNetDepth::R18 => ResNetConfig::resnet18(),
        ResNetDepth::R34 => ResNetConfig::resnet34(),
        ResNetDepth::R50 => ResNetConfig::resnet50(),
        ResNetDepth::R101 => ResNetConfig::resnet101(),
        ResNetDepth::R152 => ResNetConfig::resnet152(),
    };
    cfg.with_stride_in_1x1(variant == ResNetVariant::V1)
}

fn vgg_config(depth: VggDepth, batch_norm: bool) -> VggConfig {
    let convs = match depth {
        VggDepth::V11 => [1, 1, 2, 2, 2],
        VggDepth::V13 => [2, 2, 2, 2, 2],
        VggDepth::V16 => [2, 2, 3, 3, 3],
        VggDepth::V19 => [2, 2, 4, 4, 4],
    };
    VggConfig::new(convs).with_batch_norm(batch_norm)
}

impl fmt::Display for Architecture {
    /// The name, plus ` (v1)` for an original-ResNet bottleneck network.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ResNet {
                depth,
                variant: ResNetVariant::V1,
            } if depth.layers() >= 50 => write!(f, "{} (v1)", self.name()),
            _ => f.write_str(&self.name()),
        }
    }
}
