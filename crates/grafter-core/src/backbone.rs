//! The [`Backbone`] trait: a pretrained feature extractor with its classifier cut off.

use burn::module::{Module, ModuleDisplay, ParamGroup};
use burn::tensor::Tensor;

use crate::Preprocess;

/// A named, ordered group of backbone layers that a [`FreezePolicy`](crate::FreezePolicy)
/// freezes, unfreezes or gives its own learning rate as a unit.
///
/// The group holds the ids of every parameter *and* every training flag of the layers, so
/// freezing a stage also puts its BatchNorm layers in inference mode.
#[derive(Clone, Debug)]
pub struct Stage {
    /// Human-readable name (`"stem"`, `"layer3"`, `"block5"`).
    pub name: String,
    /// The parameters and flags of the stage.
    pub params: ParamGroup,
}

impl Stage {
    /// A stage made of every parameter and flag of `module`.
    pub fn of<M: Module>(name: impl Into<String>, module: &M) -> Self {
        Self {
            name: name.into(),
            params: ParamGroup::ids_from_module(module.clone()),
        }
    }

    /// A stage made of several modules.
    pub fn of_many(name: impl Into<String>, groups: impl IntoIterator<Item = ParamGroup>) -> Self {
        let mut iter = groups.into_iter();
        let first = iter
            .next()
            .unwrap_or_else(|| ParamGroup::from_ids(Vec::new()));
        let params = iter.fold(first, |acc, g| acc.fuse(&g));
        Self {
            name: name.into(),
            params,
        }
    }
}

/// A Burn module mapping normalised images to a feature map.
///
/// Implementors are pretrained networks with their classifier removed: ResNet (stem and four
/// stages), VGG (five conv blocks), or any ONNX CNN cut before its global pooling.
pub trait Backbone: Module + ModuleDisplay {
    /// `images [N, 3, H, W]` (already normalised per [`preprocess`](Self::preprocess)) to
    /// `features [N, C, h, w]`.
    fn forward_features(&self, images: Tensor<4>) -> Tensor<4>;

    /// `C`, the channel count of the feature map.
    fn feature_channels(&self) -> usize;

    /// Ordered stages from the input to the output. Must cover every parameter of the
    /// backbone, and must be recomputed from the current module (parameter ids are restored
    /// when a checkpoint is loaded).
    fn stages(&self) -> Vec<Stage>;

    /// How input images must be prepared for this backbone.
    fn preprocess(&self) -> Preprocess;
}
