//! [`AnyBackbone`]: one backbone type for a choice made at run time (a command-line flag, a
//! config file), so the code that trains, saves and exports it is written once.

use burn::module::Module;
use burn::tensor::Tensor;
use grafter_core::{Backbone, FeatureInfo, FeatureMaps, Preprocess, Stage};
use grafter_onnx::{ExportError, OnnxBackbone, OnnxBackboneExport, OnnxEmitter};

use crate::ZooError;
use crate::resnet::ResNet;
use crate::vgg::Vgg;

/// A zoo ResNet, a zoo VGG or any ONNX CNN, as one [`Backbone`] (and one
/// [`OnnxBackboneExport`]): `Classifier<AnyBackbone, _>` trains, checkpoints, resumes and
/// exports whichever it holds.
///
/// It is a Burn module (Burn's derive supports enums of modules): its parameters are those of
/// the variant it holds, and a saved record loads back into a backbone of the same variant and
/// architecture.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use grafter_core::Backbone;
/// use grafter_zoo::{AnyBackbone, Architecture};
///
/// let device = Device::flex();
/// let backbone: AnyBackbone = Architecture::from_name("resnet18").unwrap().init(&device);
/// assert_eq!(backbone.feature_channels(), 512);
/// assert_eq!(backbone.stages().len(), 5);
/// let features = backbone.forward_features(Tensor::zeros([1, 3, 64, 64], &device));
/// assert_eq!(features.dims(), [1, 512, 2, 2]);
/// ```
// One backbone is built per run and moved a handful of times; boxing the variants would
// take them out of Burn's module derive, which needs each variant to be a module itself.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum AnyBackbone {
    /// A ResNet of the zoo.
    ResNet(ResNet),
    /// A VGG of the zoo.
    Vgg(Vgg),
    /// Any ONNX CNN, cut before its classifier.
    Onnx(OnnxBackbone),
}

impl AnyBackbone {
    /// What it holds, in words: `ResNet`, `VGG` or `ONNX`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ResNet(_) => "ResNet",
            Self::Vgg(_) => "VGG",
            Self::Onnx(_) => "ONNX",
        }
    }

    /// The same backbone with `preprocess` as its input convention (for weights trained with
    /// another one). An [`OnnxBackbone`] keeps the convention it was loaded with (set it with
    /// its load options).
    pub fn with_preprocess(self, preprocess: Preprocess) -> Self {
        match self {
            Self::ResNet(mut r) => {
                r.preprocess = preprocess;
                Self::ResNet(r)
            }
            Self::Vgg(mut v) => {
                v.preprocess = preprocess;
                Self::Vgg(v)
            }
            Self::Onnx(o) => Self::Onnx(o),
        }
    }

    /// Stochastic depth for a ResNet ([`ResNet::with_drop_path`]); an error for the others,
    /// which have no residual blocks of the zoo's (a rate of 0 leaves any backbone as it is).
    pub fn with_drop_path(self, rate: f64) -> Result<Self, ZooError> {
        match self {
            Self::ResNet(r) => Ok(Self::ResNet(r.with_drop_path(rate)?)),
            other if rate == 0.0 => Ok(other),
            other => Err(ZooError::Config(format!(
                "drop path needs a zoo ResNet, not a {} backbone",
                other.kind()
            ))),
        }
    }
}

impl From<ResNet> for AnyBackbone {
    fn from(b: ResNet) -> Self {
        Self::ResNet(b)
    }
}

impl From<Vgg> for AnyBackbone {
    fn from(b: Vgg) -> Self {
        Self::Vgg(b)
    }
}

impl From<OnnxBackbone> for AnyBackbone {
    fn from(b: OnnxBackbone) -> Self {
        Self::Onnx(b)
    }
}

impl Backbone for AnyBackbone {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        match self {
            Self::ResNet(b) => b.forward_features(images),
            Self::Vgg(b) => b.forward_features(images),
            Self::Onnx(b) => b.forward_features(images),
        }
    }

    fn feature_channels(&self) -> usize {
        match self {
            Self::ResNet(b) => b.feature_channels(),
            Self::Vgg(b) => b.feature_channels(),
            Self::Onnx(b) => b.feature_channels(),
        }
    }

    fn stages(&self) -> Vec<Stage> {
        match self {
            Self::ResNet(b) => b.stages(),
            Self::Vgg(b) => b.stages(),
            Self::Onnx(b) => b.stages(),
        }
    }

    fn preprocess(&self) -> Preprocess {
        match self {
            Self::ResNet(b) => b.preprocess(),
            Self::Vgg(b) => b.preprocess(),
            Self::Onnx(b) => b.preprocess(),
        }
    }
}

impl FeatureMaps for AnyBackbone {
    fn feature_info(&self) -> Vec<FeatureInfo> {
        match self {
            Self::ResNet(b) => b.feature_info(),
            Self::Vgg(b) => b.feature_info(),
            Self::Onnx(b) => b.feature_info(),
        }
    }

    fn forward_feature_maps(
        &self,
        images: Tensor<4>,
        indices: &[usize],
    ) -> grafter_core::Result<Vec<Tensor<4>>> {
        match self {
            Self::ResNet(b) => b.forward_feature_maps(images, indices),
            Self::Vgg(b) => b.forward_feature_maps(images, indices),
            Self::Onnx(b) => b.forward_feature_maps(images, indices),
        }
    }
}

impl OnnxBackboneExport for AnyBackbone {
    fn emit_backbone(&self, e: &mut OnnxEmitter, input: &str) -> Result<String, ExportError> {
        match self {
            Self::ResNet(b) => b.emit_backbone(e, input),
            Self::Vgg(b) => b.emit_backbone(e, input),
            Self::Onnx(b) => b.emit_backbone(e, input),
        }
    }
}
