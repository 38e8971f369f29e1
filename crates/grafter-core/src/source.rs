//! What the fine-tune loop consumes: batches of normalised images and labels, on the host.
//!
//! The loop owns the device; data sources only produce host memory. That keeps datasets
//! independent of the backend and lets a loader decode on CPU threads while the device trains.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::{GrafterError, Result};

/// Labels of one batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Labels {
    /// One class index per image (single-label and binary tasks).
    Classes(Vec<usize>),
    /// Row-major `[N, num_classes]` 0/1 values (multi-label task).
    MultiHot {
        /// The values, `N * num_classes` of them.
        values: Vec<f32>,
        /// Width of each row.
        num_classes: usize,
    },
}

impl Labels {
    /// Number of images labelled.
    pub fn len(&self) -> usize {
        match self {
            Labels::Classes(c) => c.len(),
            Labels::MultiHot {
                values,
                num_classes,
            } => values.len() / (*num_classes).max(1),
        }
    }

    /// True for a batch without labels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch in host memory: `images` is row-major `[N, 3, H, W]`, already normalised.
#[derive(Clone, Debug)]
pub struct HostBatch {
    /// Pixel values, `N·3·H·W` of them.
    pub images: Vec<f32>,
    /// `[N, 3, H, W]`.
    pub shape: [usize; 4],
    /// One label (or label vector) per image.
    pub labels: Labels,
}

impl HostBatch {
    /// Checks that the image buffer and the labels agree with `shape`.
    pub fn validate(&self) -> Result<()> {
        let [n, c, h, w] = self.shape;
        if self.images.len() != n * c * h * w {
            return Err(GrafterError::Data(format!(
                "image buffer holds {} values but the shape {:?} needs {}",
                self.images.len(),
                self.shape,
                n * c * h * w
            )));
        }
        if self.labels.len() != n {
            return Err(GrafterError::Data(format!(
                "{} images but {} labels",
                n,
                self.labels.len()
            )));
        }
        if n == 0 {
            return Err(GrafterError::Data("empty batch".into()));
        }
        Ok(())
    }
}

/// What the loop asks of a data source for one pass.
#[derive(Clone, Copy, Debug)]
pub struct EpochRequest {
    /// Zero-based epoch.
    pub epoch: usize,
    /// The run's seed; shuffling and augmentation must derive from `(seed, epoch)` only, so
    /// that a resumed run sees exactly the batches the uninterrupted one saw.
    pub seed: u64,
    /// Images per batch (the last batch may be smaller).
    pub batch_size: usize,
    /// Training pass (shuffle, augment) or evaluation pass (fixed order, no augmentation).
    pub train: bool,
}

impl EpochRequest {
    /// An RNG seeded from `(seed, epoch)` and a stream id.
    pub fn rng(&self, stream: u64) -> StdRng {
        StdRng::seed_from_u64(mix_seed(self.seed, self.epoch as u64, stream))
    }
}

/// Mixes a seed with an epoch and a stream id (splitmix64), for independent reproducible RNGs.
pub fn mix_seed(seed: u64, epoch: u64, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_add(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Anything that yields labelled batches: an in-memory set, an image folder loader, a
/// feature cache.
pub trait DataSource: Send + Sync {
    /// Number of samples in one pass.
    fn len(&self) -> usize;

    /// True when there is nothing to train or evaluate on.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of classes of the labels.
    fn num_classes(&self) -> usize;

    /// The batches of one pass, in order.
    fn batches<'a>(
        &'a self,
        request: EpochRequest,
    ) -> Box<dyn Iterator<Item = Result<HostBatch>> + Send + 'a>;

    /// The source as the feature cache sees it: `Some` when every pass yields the same
    /// images and labels, only in another order (no augmentation, no randomness besides
    /// shuffling). A frozen backbone's features of such a source can be computed once and
    /// reused by every epoch (the feature cache of [`FineTune`](crate::FineTune)).
    /// Default: `None`.
    fn cacheable(&self) -> Option<&dyn Cacheable> {
        None
    }

    /// The number of samples of each class (single-label data), when the source knows it
    /// without decoding its images: what [`ClassWeights::Balanced`] is computed from.
    /// Default: `None` (unknown).
    ///
    /// [`ClassWeights::Balanced`]: crate::finetune::ClassWeights::Balanced
    fn class_counts(&self) -> Option<Vec<usize>> {
        None
    }

    /// The class of every sample (single-label data), by position in the evaluation pass,
    /// when the source knows them without decoding its images: what the class-balanced
    /// [`Sampler`](crate::finetune::Sampler) draws from. Default: `None` (unknown).
    fn sample_labels(&self) -> Option<Vec<usize>> {
        None
    }

    /// What sample `index` (a position in the evaluation pass) is, for people: its file
    /// path, for instance. Named in reports such as `top_losses.json`. Default: `None`.
    fn sample_name(&self, index: usize) -> Option<String> {
        let _ = index;
        None
    }

    /// A training pass over the samples `order` names (positions in the evaluation pass; a
    /// sample may come more than once), cut into batches of `request.batch_size` (the last
    /// one may be smaller) and transformed as `request` asks: the pass a
    /// [`Sampler`](crate::finetune::Sampler) draws. Default: `None` (the source serves only
    /// its own orders).
    fn batches_of<'a>(
        &'a self,
        order: Vec<usize>,
        request: EpochRequest,
    ) -> Option<Box<dyn Iterator<Item = Result<HostBatch>> + Send + 'a>> {
        let _ = (order, request);
        None
    }
}

/// What the feature cache needs of a [`DataSource`] whose passes differ only in order (see
/// [`DataSource::cacheable`]): which samples each training pass yields, so cached features
/// can be served in exactly those batches.
pub trait Cacheable: Sync {
    /// The samples that the training pass `request` yields, in order, each named by its
    /// position in the evaluation pass (`train: false`, which yields every sample once). The
    /// pass must cut this order into batches of `request.batch_size` (the last one may be
    /// smaller), as [`InMemoryDataset`] does with [`shuffled_order`].
    fn sample_order(&self, request: EpochRequest) -> Vec<usize>;
}

/// The error a pass over `order` yields when it names a sample past `len`.
pub fn check_order(order: &[usize], len: usize) -> Result<()> {
    match order.iter().find(|&&i| i >= len) {
        Some(bad) => Err(GrafterError::Data(format!(
            "the pass names sample {bad} of a source of {len}"
        ))),
        None => Ok(()),
    }
}

/// How many of `labels` fall in each of `num_classes` classes (every label below it): what
/// single-label sources answer [`DataSource::class_counts`] with.
pub(crate) fn class_counts(labels: &[usize], num_classes: usize) -> Vec<usize> {
    let mut counts = vec![0; num_classes];
    for &l in labels {
        counts[l] += 1;
    }
    counts
}

/// The order of a pass over `len` samples as [`InMemoryDataset`] (and grafter-data's loader)
/// draw it: dataset order for evaluation, a shuffle by `request.rng(0)` for training.
pub fn shuffled_order(len: usize, request: &EpochRequest) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if request.train {
        order.shuffle(&mut request.rng(0));
    }
    order
}

/// A dataset of equally sized, already normalised images held in memory.
///
/// ```
/// use grafter_core::source::{DataSource, EpochRequest, InMemoryDataset};
/// let ds = InMemoryDataset::new(vec![0.0; 4 * 3 * 2 * 2], [3, 2, 2], vec![0, 1, 0, 1], 2).unwrap();
/// let req = EpochRequest { epoch: 0, seed: 1, batch_size: 3, train: true };
/// let sizes: Vec<usize> = ds.batches(req).map(|b| b.unwrap().shape[0]).collect();
/// assert_eq!(sizes, vec![3, 1]);
/// ```
#[derive(Clone, Debug)]
pub struct InMemoryDataset {
    images: Vec<f32>,
    image_shape: [usize; 3],
    labels: Vec<usize>,
    num_classes: usize,
}

impl InMemoryDataset {
    /// `images` is row-major `[N, C, H, W]` with `[C, H, W] = image_shape`.
    pub fn new(
        images: Vec<f32>,
        image_shape: [usize; 3],
        labels: Vec<usize>,
        num_classes: usize,
    ) -> Result<Self> {
        let per = image_shape.iter().product::<usize>();
        if per == 0 {
            return Err(GrafterError::Config(format!(
                "image shape {image_shape:?} has a zero dimension"
            )));
        }
        if images.len() != per * labels.len() {
            return Err(GrafterError::Data(format!(
                "{} labels need {} image values, got {}",
                labels.len(),
                per * labels.len(),
                images.len()
            )));
        }
        if num_classes == 0 {
            return Err(GrafterError::Config(
                "a dataset needs at least one class".into(),
            ));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, l)| **l >= num_classes) {
            return Err(GrafterError::Data(format!(
                "label {l} of sample {i} is out of range for {num_classes} classes"
            )));
        }
        Ok(Self {
            images,
            image_shape,
            labels,
            num_classes,
        })
    }

    /// The label of every sample.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// `[C, H, W]`.
    pub fn image_shape(&self) -> [usize; 3] {
        self.image_shape
    }

    /// A copy where the values of sample `index` are replaced (used to inject faults in tests
    /// and to patch data in place).
    pub fn image_mut(&mut self, index: usize) -> &mut [f32] {
        let per = self.image_shape.iter().product::<usize>();
        &mut self.images[index * per..(index + 1) * per]
    }
}

impl DataSource for InMemoryDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn batches<'a>(
        &'a self,
        request: EpochRequest,
    ) -> Box<dyn Iterator<Item = Result<HostBatch>> + Send + 'a> {
        let order = shuffled_order(self.labels.len(), &request);
        self.serve(order, request)
    }

    /// Always: the images are fixed, only their order changes.
    fn cacheable(&self) -> Option<&dyn Cacheable> {
        Some(self)
    }

    fn class_counts(&self) -> Option<Vec<usize>> {
        Some(class_counts(&self.labels, self.num_classes))
    }

    fn sample_labels(&self) -> Option<Vec<usize>> {
        Some(self.labels.clone())
    }

    fn batches_of<'a>(
        &'a self,
        order: Vec<usize>,
        request: EpochRequest,
    ) -> Option<Box<dyn Iterator<Item = Result<HostBatch>> + Send + 'a>> {
        if let Err(e) = check_order(&order, self.labels.len()) {
            return Some(Box::new(std::iter::once(Err(e))));
        }
        Some(self.serve(order, request))
    }
}

impl Cacheable for InMemoryDataset {
    fn sample_order(&self, request: EpochRequest) -> Vec<usize> {
        shuffled_order(self.labels.len(), &request)
    }
}

impl InMemoryDataset {
    /// The samples of `order`, in batches of `request.batch_size`.
    fn serve(
        &self,
        order: Vec<usize>,
        request: EpochRequest,
    ) -> Box<dyn Iterator<Item = Result<HostBatch>> + Send + '_> {
        let per = self.image_shape.iter().product::<usize>();
        let [c, h, w] = self.image_shape;
        let batch = request.batch_size.max(1);
        let chunks: Vec<Vec<usize>> = order.chunks(batch).map(|c| c.to_vec()).collect();
        Box::new(chunks.into_iter().map(move |idx| {
            let mut images = Vec::with_capacity(idx.len() * per);
            for &i in &idx {
                images.extend_from_slice(&self.images[i * per..(i + 1) * per]);
            }
            Ok(HostBatch {
                images,
                shape: [idx.len(), c, h, w],
                labels: Labels::Classes(idx.iter().map(|&i| self.labels[i]).collect()),
            })
        }))
    }
}
