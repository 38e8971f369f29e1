//! The fine-tune loop's use of the cache: one pass of the frozen backbone over the training
//! and validation sources before the first epoch, kept in memory (within a budget) or in
//! files reused by later runs, then served in exactly the batches and order the sources
//! would have yielded.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;

use super::cache::{CacheOptions, Computed, FeatureCache};
use super::file::{CachePrecision, CacheStorage};
use super::fingerprint::fingerprint;
use crate::finetune::Reporter;
use crate::progress::PassProgress;
use crate::source::{DataSource, EpochRequest, HostBatch};
use crate::{Backbone, GrafterError, Result};

/// Where the loop keeps the features.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum LoopStorage {
    /// In memory, within a budget ([`FineTune::feature_cache_budget`](crate::FineTune::feature_cache_budget)).
    #[default]
    Memory,
    /// In the folder `dir`, one memory-mapped file per source named after its fingerprint
    /// (`train-<16 hex>.features`): a later run with the same backbone and data reuses it.
    Files {
        /// The folder (created if missing).
        dir: PathBuf,
        /// Number format of the files.
        precision: CachePrecision,
    },
}

/// The training and validation features, or why they cannot stand in for the backbone.
pub(crate) type CachedOrWhyNot = std::result::Result<(FeatureCache, FeatureCache), String>;

/// One inference pass of `backbone` over both sources, stored as `storage` says (in memory:
/// at most `budget` bytes). The inner `Err` says why the features cannot be used (the loop
/// then trains live).
pub(crate) fn compute<B: Backbone>(
    backbone: &B,
    [train, valid]: [&dyn DataSource; 2],
    batch_size: usize,
    budget: u64,
    storage: &LoopStorage,
    device: &Device,
    reporter: &Reporter,
) -> Result<CachedOrWhyNot> {
    let started = Instant::now();
    let backbone = backbone.valid().to_device(device);
    let mut left = budget;
    let mut caches = Vec::with_capacity(2);
    for (source, role) in [(train, "train"), (valid, "valid")] {
        let options = CacheOptions {
            batch_size,
            ..Default::default()
        };
        let cache = match storage {
            LoopStorage::Memory => {
                reporter.say(&format!(
                    "feature cache: backbone frozen for every epoch; computing the features of {} {role} images once",
                    source.len()
                ));
                match pass(
                    &backbone,
                    source,
                    role,
                    &options,
                    Some(left),
                    device,
                    reporter,
                )? {
                    Computed::Cache(cache) => {
                        left -= cache.resident_bytes();
                        cache
                    }
                    Computed::OverBudget(needed) => {
                        return Ok(Err(too_big(needed + (budget - left), budget)));
                    }
                }
            }
            LoopStorage::Files { dir, precision } => file_cache(
                &backbone, source, role, dir, *precision, options, device, reporter,
            )?,
        };
        if cache.len() != source.len() {
            return Ok(Err(format!(
                "the feature pass yielded {} of the {} {role} images (files failed to load)",
                cache.len(),
                source.len()
            )));
        }
        caches.push(cache);
    }
    let cvalid = caches.pop().expect("two sources");
    let ctrain = caches.pop().expect("two sources");
    reporter.say(&format!(
        "feature cache: features ready in {:.1}s ({:.1} MB in memory); training the head from them",
        started.elapsed().as_secs_f64(),
        ctrain.megabytes() + cvalid.megabytes()
    ));
    Ok(Ok((ctrain, cvalid)))
}

/// The cache file of `source` in `dir`: reopened when a file of the same fingerprint is
/// there and sound, computed and written (atomically) otherwise.
#[allow(clippy::too_many_arguments)]
fn file_cache<B: Backbone>(
    backbone: &B,
    source: &dyn DataSource,
    role: &str,
    dir: &Path,
    precision: CachePrecision,
    options: CacheOptions,
    device: &Device,
    reporter: &Reporter,
) -> Result<FeatureCache> {
    std::fs::create_dir_all(dir).map_err(|e| GrafterError::io(dir, e))?;
    let fp = fingerprint(backbone, source, options.batch_size, device)?;
    let path = dir.join(format!("{role}-{fp}.features"));
    if path.exists() {
        match FeatureCache::open(&path, &fp) {
            Ok(cache) => {
                reporter.say(&format!(
                    "feature cache: reusing {} ({} images)",
                    path.display(),
                    cache.len()
                ));
                return Ok(cache);
            }
            Err(e) => reporter.say(&format!("feature cache: {e}; computing it again")),
        }
    }
    reporter.say(&format!(
        "feature cache: computing the features of {} {role} images into {}",
        source.len(),
        path.display()
    ));
    let options = CacheOptions {
        storage: CacheStorage::File { path, precision },
        fingerprint: fp,
        ..options
    };
    Ok(pass(backbone, source, role, &options, None, device, reporter)?.into_cache())
}

/// One evaluation pass of `source` through `backbone` into a cache as `options` say, with a
/// progress bar; in memory at most `budget` bytes.
fn pass<B: Backbone>(
    backbone: &B,
    source: &dyn DataSource,
    role: &str,
    options: &CacheOptions,
    budget: Option<u64>,
    device: &Device,
    reporter: &Reporter,
) -> Result<Computed> {
    let bar = PassProgress::new(
        format!("{role} features"),
        source.len(),
        reporter.progress(),
    );
    let computed = FeatureCache::compute(
        backbone,
        source.num_classes(),
        options,
        device,
        budget.map(|bytes| (source.len(), bytes)),
        Some(&bar),
        |_| source.batches(eval(options.batch_size)),
    );
    bar.finish();
    computed
}

/// The evaluation pass the features are computed from.
fn eval(batch_size: usize) -> EpochRequest {
    EpochRequest {
        epoch: 0,
        seed: 0,
        batch_size,
        train: false,
    }
}

fn too_big(needed: u64, budget: u64) -> String {
    format!(
        "the features would take {:.1} GB, more than the {:.1} GB budget \
         (FineTune::feature_cache_budget; FineTune::feature_cache_files keeps them \
         in memory-mapped files instead)",
        needed as f64 / 1e9,
        budget as f64 / 1e9
    )
}

/// Cached features served as a [`DataSource`]: training passes follow the original source's
/// [`sample_order`](crate::source::Cacheable::sample_order), evaluation passes the dataset order, both cut
/// into batches of the requested size exactly as the original source cuts them.
pub(crate) struct CachedSource<'a> {
    pub(crate) cache: FeatureCache,
    pub(crate) original: &'a dyn DataSource,
}

impl DataSource for CachedSource<'_> {
    fn len(&self) -> usize {
        self.cache.len()
    }

    fn num_classes(&self) -> usize {
        self.original.num_classes()
    }

    fn class_counts(&self) -> Option<Vec<usize>> {
        self.original.class_counts()
    }

    fn sample_labels(&self) -> Option<Vec<usize>> {
        self.original.sample_labels()
    }

    fn sample_name(&self, index: usize) -> Option<String> {
        self.original.sample_name(index)
    }

    /// The cached features of `order`: a sampled pass, as the original source would serve it.
    fn batches_of<'b>(
        &'b self,
        order: Vec<usize>,
        request: EpochRequest,
    ) -> Option<Box<dyn Iterator<Item = Result<HostBatch>> + Send + 'b>> {
        Some(self.cache.serve(order, 0, request.batch_size))
    }

    fn batches<'b>(
        &'b self,
        request: EpochRequest,
    ) -> Box<dyn Iterator<Item = Result<HostBatch>> + Send + 'b> {
        let order = if request.train {
            match self.original.cacheable() {
                Some(original) => original.sample_order(request),
                None => {
                    return Box::new(std::iter::once(Err(GrafterError::Data(
                        "the training data is no longer cacheable".into(),
                    ))));
                }
            }
        } else {
            (0..self.cache.len()).collect()
        };
        self.cache.serve(order, 0, request.batch_size)
    }
}
