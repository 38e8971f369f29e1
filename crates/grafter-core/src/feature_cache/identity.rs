//! The identity "backbone" a head trains on when its inputs are cached features.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::{Backbone, Preprocess, Stage};

/// The identity "backbone" of a feature cache: its input *is* the cached feature map. No
/// parameters and no stages, so `FineTune` with any policy trains the head alone. Used by the
/// loop's automatic cache and by grafter-data's file-backed `FeatureCache`.
#[derive(Module, Debug)]
pub struct CachedFeatures {
    channels: usize,
    #[module(skip)]
    preprocess: Preprocess,
}

impl CachedFeatures {
    /// Stands in for a backbone whose feature maps have `channels` channels and whose inputs
    /// were prepared with `preprocess`.
    pub fn new(channels: usize, preprocess: Preprocess) -> Self {
        Self {
            channels,
            preprocess,
        }
    }

    /// Stands in for `backbone`.
    pub fn of<B: Backbone>(backbone: &B) -> Self {
        Self::new(backbone.feature_channels(), backbone.preprocess())
    }
}

impl Backbone for CachedFeatures {
    fn forward_features(&self, features: Tensor<4>) -> Tensor<4> {
        features
    }

    fn feature_channels(&self) -> usize {
        self.channels
    }

    fn stages(&self) -> Vec<Stage> {
        Vec::new()
    }

    fn preprocess(&self) -> Preprocess {
        self.preprocess.clone()
    }
}
