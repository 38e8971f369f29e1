//! A feature cache of augmented views: the loader's augmentation drawn a fixed number of
//! times per image, for a head trained on cached features with some augmentation.

use burn::tensor::Device;
use grafter_core::Backbone;
use grafter_core::feature_cache::{CacheOptions, FeatureCache};
use grafter_core::source::DataSource;

use crate::{ImageLoader, Result};

impl ImageLoader {
    /// A [`FeatureCache`] of `options.views` views of every image through the frozen
    /// `backbone`: view 0 with the evaluation transform, the others with this loader's
    /// augmentation seeded by `(options.seed, view)`. Training epoch `e` reads view
    /// `e % views`: an approximation of live augmentation with a fixed number of draws
    /// (the fine-tune loop's own cache is used only where it is exact, so it never does
    /// this by itself).
    ///
    /// Train the head on it with `FineTune::fit(cache.head_classifier(head, preprocess)?,
    /// &cache, &valid_cache, &device)` and graft it back with `Classifier::new(backbone,
    /// outcome.model.head)`.
    pub fn feature_cache_views<B: Backbone>(
        &self,
        backbone: &B,
        options: &CacheOptions,
        device: &Device,
    ) -> Result<FeatureCache> {
        let bs = options.batch_size.max(1);
        Ok(FeatureCache::build_views(
            backbone,
            self.num_classes(),
            options,
            device,
            |v| self.fixed_order_batches(options.seed, v, bs, v > 0),
        )?)
    }
}
