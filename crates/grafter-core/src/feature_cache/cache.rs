//! [`FeatureCache`]: a frozen backbone's feature maps of every sample (and view) of a source,
//! served back as a [`DataSource`] whose "images" are the features.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use super::file::{self, CacheStorage, Header, Sink, Values};
use super::identity::CachedFeatures;
use crate::progress::PassProgress;
use crate::source::{
    DataSource, EpochRequest, HostBatch, Labels, check_order, class_counts, shuffled_order,
};
use crate::{Backbone, Classifier, GrafterError, Head, Preprocess, Result};

/// How to build a [`FeatureCache`].
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// Images per backbone forward.
    pub batch_size: usize,
    /// Views per image: 1 = the evaluation transform only; `k > 1` caches `k` views made by
    /// [`FeatureCache::build_views`] and training epoch `e` reads view `e % k`.
    pub views: usize,
    /// Seed of the augmented views.
    pub seed: u64,
    /// Memory or file.
    pub storage: CacheStorage,
    /// What the cache was computed from (backbone weights, dataset, preprocessing), checked
    /// when a file is reopened. Required (non-empty) for [`CacheStorage::File`]: an empty
    /// fingerprint would match any stale file.
    pub fingerprint: String,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            views: 1,
            seed: 0,
            storage: CacheStorage::Memory,
            fingerprint: String::new(),
        }
    }
}

/// A frozen backbone's feature maps `[C, h, w]` for every sample (and view), in the source's
/// evaluation order, with their labels; a [`DataSource`] whose "images" are the features.
///
/// [`FineTune`](crate::FineTune) builds one by itself when the backbone stays frozen (see
/// [`FineTune::feature_cache`](crate::FineTune::feature_cache)); build one yourself to
/// reuse features across runs or to look at them. Served alone, a training pass is shuffled
/// by [`shuffled_order`], the order every source of this workspace draws, so a head trained
/// from the cache sees exactly the batches it would see through the backbone.
///
/// ```
/// use burn::tensor::Device;
/// use grafter_core::feature_cache::{CacheOptions, FeatureCache};
/// use grafter_core::prelude::*;
/// # use grafter_core::{Backbone, Preprocess, Stage};
/// # #[derive(burn::module::Module, Debug)]
/// # struct Mean;
/// # impl Backbone for Mean {
/// #     fn forward_features(&self, x: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<4> { x.mean_dim(2).mean_dim(3) }
/// #     fn feature_channels(&self) -> usize { 3 }
/// #     fn stages(&self) -> Vec<Stage> { Vec::new() }
/// #     fn preprocess(&self) -> Preprocess { Preprocess::imagenet().with_input_size(4, 4) }
/// # }
/// let device = Device::flex();
/// let data = InMemoryDataset::new(vec![0.5; 4 * 3 * 4 * 4], [3, 4, 4], vec![0, 1, 0, 1], 2)?;
/// let cache = FeatureCache::build(&Mean, &data, &CacheOptions::default(), &device)?;
/// assert_eq!(cache.feature_shape(), [3, 1, 1]);
/// assert_eq!(cache.len(), 4);
/// # Ok::<(), grafter_core::GrafterError>(())
/// ```
#[derive(Debug)]
pub struct FeatureCache {
    values: Values,
    header: Header,
}

/// What a budgeted pass gave: the cache, or why it is not one.
pub(super) enum Computed {
    Cache(FeatureCache),
    /// The features would take this many bytes, more than the budget.
    OverBudget(u64),
}

impl FeatureCache {
    /// Runs `backbone` (in inference mode, on `device`) over one evaluation pass of `source`
    /// and caches the features (one view).
    pub fn build<B: Backbone>(
        backbone: &B,
        source: &dyn DataSource,
        options: &CacheOptions,
        device: &Device,
    ) -> Result<Self> {
        if options.views != 1 {
            return Err(GrafterError::Config(
                "augmented views need their own batches: use FeatureCache::build_views (grafter-data's ImageLoader::feature_cache_views)".into(),
            ));
        }
        let request = EpochRequest {
            epoch: 0,
            seed: options.seed,
            batch_size: options.batch_size.max(1),
            train: false,
        };
        let backbone = backbone.valid().to_device(device);
        let computed = Self::compute(
            &backbone,
            source.num_classes(),
            options,
            device,
            None,
            None,
            |_| source.batches(request),
        )?;
        Ok(computed.into_cache())
    }

    /// A cache of `options.views` views: `view_batches(v)` yields view `v` of every sample in
    /// evaluation order (view 0 untransformed, the others augmented, as grafter-data's
    /// `ImageLoader::feature_cache_views` makes them). Training epoch `e` then reads view
    /// `e % views`: an approximation of live augmentation with `views` fixed draws.
    pub fn build_views<'s, B: Backbone, I>(
        backbone: &B,
        num_classes: usize,
        options: &CacheOptions,
        device: &Device,
        view_batches: impl Fn(usize) -> I,
    ) -> Result<Self>
    where
        I: Iterator<Item = Result<HostBatch>> + 's,
    {
        let backbone = backbone.valid().to_device(device);
        let computed = Self::compute(
            &backbone,
            num_classes,
            options,
            device,
            None,
            None,
            view_batches,
        )?;
        Ok(computed.into_cache())
    }

    /// The one feature pass: `backbone` (already in inference mode on `device`) over every
    /// view. With `budget = Some((samples, bytes))`, the pass stops after the first batch
    /// when `samples` samples of that feature size would exceed `bytes` in memory.
    pub(super) fn compute<'s, B: Backbone, I>(
        backbone: &B,
        num_classes: usize,
        options: &CacheOptions,
        device: &Device,
        budget: Option<(usize, u64)>,
        bar: Option<&PassProgress>,
        view_batches: impl Fn(usize) -> I,
    ) -> Result<Computed>
    where
        I: Iterator<Item = Result<HostBatch>> + 's,
    {
        if options.views == 0 {
            return Err(GrafterError::Config(
                "a feature cache needs at least one view".into(),
            ));
        }
        if let CacheStorage::File { path, .. } = &options.storage
            && options.fingerprint.is_empty()
        {
            return Err(GrafterError::feature_cache(
                path,
                "a cache file needs a fingerprint (CacheOptions::fingerprint) saying what it was built from, or a stale file would be taken for a fresh one",
            ));
        }
        let in_memory = options.storage == CacheStorage::Memory;
        let mut sink = Sink::new(&options.storage)?;
        let mut feature_shape = None;
        let mut samples = None;
        let mut classes: Option<Vec<usize>> = None;
        let mut multi_hot: Option<Vec<f32>> = None;
        for view in 0..options.views {
            let mut count = 0;
            for batch in view_batches(view) {
                let batch = batch?;
                batch.validate()?;
                let x = Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), device);
                let f = backbone.forward_features(x);
                let [n, c, h, w] = f.dims();
                if feature_shape.is_none()
                    && let Some((samples, bytes)) = budget
                    && in_memory
                {
                    let needed = (samples * options.views * c * h * w * 4) as u64;
                    if needed > bytes {
                        return Ok(Computed::OverBudget(needed));
                    }
                }
                if *feature_shape.get_or_insert([c, h, w]) != [c, h, w] {
                    return Err(GrafterError::Data(format!(
                        "the backbone gave features {:?} then {:?}: a feature cache needs equally sized inputs",
                        feature_shape,
                        [c, h, w]
                    )));
                }
                let values = f
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .map_err(|e| GrafterError::Data(format!("cannot read features: {e:?}")))?;
                sink.write(&values)?;
                count += n;
                if view == 0 {
                    match batch.labels {
                        Labels::Classes(c) => classes.get_or_insert_with(Vec::new).extend(c),
                        Labels::MultiHot { values, .. } => {
                            multi_hot.get_or_insert_with(Vec::new).extend(values)
                        }
                    }
                }
                if let Some(bar) = bar {
                    bar.advance(n, String::new());
                }
            }
            match samples {
                None => samples = Some(count),
                Some(n) if n != count => {
                    return Err(GrafterError::Data(format!(
                        "view {view} has {count} samples but view 0 had {n} (files failed to load in between)"
                    )));
                }
                _ => {}
            }
        }
        let header = Header {
            samples: samples.unwrap_or(0),
            views: options.views,
            feature_shape: feature_shape.unwrap_or([0, 0, 0]),
            num_classes,
            precision: match &options.storage {
                CacheStorage::File { precision, .. } => *precision,
                CacheStorage::Memory => Default::default(),
            },
            classes,
            multi_hot,
            fingerprint: options.fingerprint.clone(),
        };
        if header.samples == 0 {
            return Err(GrafterError::Data(
                "the feature cache would be empty".into(),
            ));
        }
        header.check().map_err(GrafterError::Data)?;
        let values = sink.finish(&header)?;
        Ok(Computed::Cache(Self { values, header }))
    }

    /// Reopens a cache file, refusing it when its fingerprint is not `fingerprint` (which
    /// must not be empty), or when its header does not describe its contents (sizes, views,
    /// labels), so a damaged or forged file is an error here, never a panic later.
    pub fn open(path: impl AsRef<Path>, fingerprint: &str) -> Result<Self> {
        let (values, header) = file::open(path.as_ref(), fingerprint)?;
        Ok(Self { values, header })
    }

    /// `[C, h, w]` of one sample's features.
    pub fn feature_shape(&self) -> [usize; 3] {
        self.header.feature_shape
    }

    /// Number of views per sample.
    pub fn views(&self) -> usize {
        self.header.views
    }

    /// A [`Classifier`] of the identity backbone and `head`, to train with `FineTune` on this
    /// cache (any policy: there is no backbone stage). Graft the trained head back with
    /// `Classifier::new(backbone, outcome.model.head)`.
    pub fn head_classifier<H: Head>(
        &self,
        head: H,
        preprocess: Preprocess,
    ) -> Result<Classifier<CachedFeatures, H>> {
        Classifier::new(
            CachedFeatures::new(self.header.feature_shape[0], preprocess),
            head,
        )
    }

    /// Bytes held in memory (a mapped file's pages belong to the OS).
    pub(super) fn resident_bytes(&self) -> u64 {
        self.values.resident_bytes() as u64
    }

    /// Megabytes held in memory.
    pub(super) fn megabytes(&self) -> f64 {
        self.resident_bytes() as f64 / 1e6
    }

    /// The labels of every sample, when single-label.
    pub(super) fn classes(&self) -> Option<&[usize]> {
        self.header.classes.as_deref()
    }

    /// The features of view `view` of the samples `order` (checked to be in range), in
    /// batches of `batch_size`.
    pub(super) fn serve(
        &self,
        order: Vec<usize>,
        view: usize,
        batch_size: usize,
    ) -> Box<dyn Iterator<Item = Result<HostBatch>> + Send + '_> {
        if let Err(e) = check_order(&order, self.header.samples) {
            return Box::new(std::iter::once(Err(e)));
        }
        let [c, h, w] = self.header.feature_shape;
        let per = self.header.per_sample();
        let chunks: Vec<Vec<usize>> = order
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        Box::new(chunks.into_iter().map(move |idx| {
            let mut images = Vec::with_capacity(idx.len() * per);
            for &i in &idx {
                let start = (view * self.header.samples + i) * per;
                self.values.copy(start, per, &mut images);
            }
            Ok(HostBatch {
                images,
                shape: [idx.len(), c, h, w],
                labels: self.labels(&idx),
            })
        }))
    }

    /// The view a pass reads: `epoch % views` in training, view 0 (untransformed) otherwise.
    pub(super) fn view_of(&self, request: &EpochRequest) -> usize {
        if request.train {
            request.epoch % self.header.views
        } else {
            0
        }
    }

    fn labels(&self, idx: &[usize]) -> Labels {
        match (&self.header.classes, &self.header.multi_hot) {
            (Some(c), _) => Labels::Classes(idx.iter().map(|&i| c[i]).collect()),
            (None, Some(m)) => {
                let k = self.header.num_classes;
                Labels::MultiHot {
                    values: idx
                        .iter()
                        .flat_map(|&i| m[i * k..(i + 1) * k].iter().copied())
                        .collect(),
                    num_classes: k,
                }
            }
            (None, None) => Labels::Classes(Vec::new()),
        }
    }
}

impl Computed {
    /// The cache of a pass that had no budget.
    pub(super) fn into_cache(self) -> FeatureCache {
        match self {
            Computed::Cache(cache) => cache,
            Computed::OverBudget(_) => unreachable!("a pass without a budget is never over it"),
        }
    }
}

impl DataSource for FeatureCache {
    fn len(&self) -> usize {
        self.header.samples
    }

    fn num_classes(&self) -> usize {
        self.header.num_classes
    }

    /// Training passes: [`shuffled_order`] of view `epoch % views`; evaluation: view 0 in
    /// order.
    fn batches<'a>(
        &'a self,
        request: EpochRequest,
    ) -> Box<dyn Iterator<Item = Result<HostBatch>> + Send + 'a> {
        let order = shuffled_order(self.header.samples, &request);
        self.serve(order, self.view_of(&request), request.batch_size)
    }

    fn class_counts(&self) -> Option<Vec<usize>> {
        Some(class_counts(self.classes()?, self.header.num_classes))
    }

    fn sample_labels(&self) -> Option<Vec<usize>> {
        self.classes().map(<[usize]>::to_vec)
    }

    fn batches_of<'a>(
        &'a self,
        order: Vec<usize>,
        request: EpochRequest,
    ) -> Option<Box<dyn Iterator<Item = Result<HostBatch>> + Send + 'a>> {
        Some(self.serve(order, self.view_of(&request), request.batch_size))
    }
}
