//! The feature cache's options of [`FineTune`]: whether the loop may train the head from
//! backbone features computed once, within what memory, or in which files — and whether it
//! would, for a given model and data.

use std::path::PathBuf;

use super::fine_tune::FineTune;
use super::plan::plans_of;
use crate::feature_cache::{CachePrecision, FeatureCacheUse, LoopStorage, decide};
use crate::source::DataSource;
use crate::{Backbone, Classifier, Head, Result};

#[cfg(doc)]
use super::fine_tune::DEFAULT_FEATURE_CACHE_BUDGET;

impl FineTune {
    /// Lets [`fit`](Self::fit) train the head from cached backbone features when that gives
    /// the same result as running the backbone every step (on by default).
    ///
    /// When the policy keeps every backbone stage frozen for the whole run and both data
    /// sources are [cacheable](DataSource::cacheable) (no augmentation), the loop computes the
    /// backbone's features once, in inference mode, keeps them in memory (or in files, see
    /// [`feature_cache_files`](Self::feature_cache_files)) and trains the head from them: one
    /// backbone pass instead of one per epoch. The head sees the features of
    /// exactly the images, batches and order it would have seen, so the weights, metrics,
    /// checkpoints and `metrics.jsonl` are those of the uncached run (up to floating-point
    /// rounding), and the run directory resumes either way. The loop says (log and progress
    /// output) when it uses the cache, and when it does not although on, why;
    /// [`feature_cache_use`](Self::feature_cache_use) tells in advance.
    ///
    /// ```
    /// use grafter_core::FineTune;
    /// use grafter_core::feature_cache::FeatureCacheUse;
    /// use grafter_core::policy::{Frozen, TwoPhase};
    /// use grafter_core::prelude::*;
    /// # use burn::tensor::Device;
    /// # use grafter_core::Stage;
    /// # #[derive(burn::module::Module, Debug)]
    /// # struct Id { c: usize }
    /// # impl Backbone for Id {
    /// #     fn forward_features(&self, x: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<4> { x }
    /// #     fn feature_channels(&self) -> usize { self.c }
    /// #     fn stages(&self) -> Vec<Stage> { vec![Stage::of("all", self)] }
    /// #     fn preprocess(&self) -> Preprocess { Preprocess::imagenet() }
    /// # }
    /// let device = Device::flex();
    /// let head = LinearHeadConfig::new(3, 2).try_init(&device)?;
    /// let model = Classifier::new(Id { c: 3 }, head)?;
    /// let data = InMemoryDataset::new(vec![0.5; 4 * 3 * 2 * 2], [3, 2, 2], vec![0, 1, 0, 1], 2)?;
    /// let config = FineTuneConfig::new().with_epochs(2).with_progress(false);
    ///
    /// // frozen backbone, fixed images: the head trains from features computed once
    /// let frozen = FineTune::new(config.clone(), Frozen);
    /// assert!(frozen.feature_cache_use(&model, &data, &data)?.is_on());
    /// // the second phase unfreezes the backbone: live training
    /// let two_phase = FineTune::new(config.clone(), TwoPhase::new(1, 10.0));
    /// assert!(!two_phase.feature_cache_use(&model, &data, &data)?.is_on());
    /// // or turned off by hand
    /// let live = FineTune::new(config, Frozen).feature_cache(false);
    /// assert!(matches!(live.feature_cache_use(&model, &data, &data)?, FeatureCacheUse::Off(_)));
    /// # Ok::<(), grafter_core::GrafterError>(())
    /// ```
    pub fn feature_cache(mut self, on: bool) -> Self {
        self.feature_cache = on;
        self
    }

    /// Bytes the automatic feature cache may hold in memory (default 4 GB, see
    /// [`DEFAULT_FEATURE_CACHE_BUDGET`]). Checked after the first batch, when the feature size
    /// is known; above it the loop says so and trains live. Un-pooled ResNet-50 features at
    /// 224 take 400 kB per image, so the full Food-101 would need 30 GB.
    pub fn feature_cache_budget(mut self, bytes: u64) -> Self {
        self.feature_cache_budget = bytes;
        self
    }

    /// Keeps the automatic feature cache in memory-mapped files under `dir` instead of in
    /// memory: no memory budget applies (the OS pages the features in and out), and a later
    /// run — a resumed one, another seed, another head — with the same backbone and data
    /// reuses the files instead of running the backbone again. Each file is named after a
    /// fingerprint of what it was computed from (the backbone's features of the first batch,
    /// every pixel, label and sample name of the source; see
    /// [`LoopStorage::Files`]); f16 halves the disk at ~3 significant digits.
    ///
    /// ```no_run
    /// use grafter_core::feature_cache::CachePrecision;
    /// use grafter_core::policy::Frozen;
    /// use grafter_core::{FineTune, FineTuneConfig};
    ///
    /// let run = FineTune::new(FineTuneConfig::new(), Frozen)
    ///     .feature_cache_files("features", CachePrecision::F16);
    /// # let _ = run;
    /// ```
    pub fn feature_cache_files(
        mut self,
        dir: impl Into<PathBuf>,
        precision: CachePrecision,
    ) -> Self {
        self.feature_cache_storage = LoopStorage::Files {
            dir: dir.into(),
            precision,
        };
        self
    }

    /// Whether [`fit`](Self::fit) would train `model`'s head from cached backbone features
    /// with these data, and if not, why.
    ///
    /// The cache is used when it is on ([`feature_cache`](Self::feature_cache)), the policy
    /// freezes every backbone stage in every epoch, the stages cover every parameter and
    /// training flag of the backbone, and both sources are
    /// [cacheable](DataSource::cacheable). `fit` falls back to live training, saying so, when
    /// the feature pass does not yield every sample (files that fail to load).
    pub fn feature_cache_use<B: Backbone, H: Head>(
        &self,
        model: &Classifier<B, H>,
        train: &dyn DataSource,
        valid: &dyn DataSource,
    ) -> Result<FeatureCacheUse> {
        let stages = model.stages();
        let plans = plans_of(self.policy.as_ref(), self.config.epochs, stages.len())?;
        Ok(decide(
            self.feature_cache,
            &model.backbone,
            &stages,
            &plans,
            train,
            valid,
        ))
    }
}
