//! [`Classifier`]: a backbone with a grafted head, itself a Burn module.

use burn::module::{Module, ParamGroup};
use burn::tensor::Tensor;

use crate::{Backbone, GrafterError, Head, Result, Stage};

/// A pretrained backbone and a new head, trained together by [`FineTune`](crate::FineTune).
///
/// Being a `Module`, it saves, loads, moves between devices and freezes like any Burn module.
#[derive(Module, Debug)]
pub struct Classifier<B, H> {
    /// The feature extractor.
    pub backbone: B,
    /// The new task head.
    pub head: H,
}

impl<B: Backbone, H: Head> Classifier<B, H> {
    /// Grafts `head` onto `backbone`, checking that the head takes the backbone's channels.
    pub fn new(backbone: B, head: H) -> Result<Self> {
        let backbone_channels = backbone.feature_channels();
        if head.in_channels() != backbone_channels {
            return Err(GrafterError::ChannelMismatch {
                backbone: backbone_channels,
                head: head.in_channels(),
            });
        }
        Ok(Self { backbone, head })
    }

    /// `images [N, 3, H, W]` to logits `[N, K]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.backbone.forward_features(images))
    }

    /// Number of logits.
    pub fn num_outputs(&self) -> usize {
        self.head.num_outputs()
    }

    /// The backbone's stages (input side first).
    pub fn stages(&self) -> Vec<Stage> {
        self.backbone.stages()
    }

    /// The model on `device`'s autodiff counterpart with every parameter trainable, for a
    /// training loop of your own ([`FineTune`](crate::FineTune) does this itself).
    ///
    /// Burn's `fork` keeps a parameter's gradient flag only when its tensor already tracks
    /// gradients; weights loaded from files are plain tensors, so after `fork(..).train()`
    /// they would silently receive no gradient. This re-enables them.
    pub fn for_training(self, device: &burn::tensor::Device) -> Self {
        self.fork(&device.clone().autodiff()).train().unfreeze()
    }

    /// Every parameter and flag of the head.
    pub fn head_params(&self) -> ParamGroup {
        ParamGroup::ids_from_module(self.head.clone())
    }
}
