//! Features of a frozen backbone, computed once and reused by every epoch.
//!
//! With the backbone frozen (feature extraction), every epoch recomputes the same backbone
//! forward — by far the most expensive part of a step. The cache runs it once per image (or
//! once per augmented view), keeps the feature maps in memory or in a file (f32 or f16,
//! memory-mapped), and serves them as a [`DataSource`] to train the head alone, wrapped in
//! [`CachedFeatures`], an identity "backbone" with no parameters.
//!
//! Validity: the cache equals the live computation only while the backbone is frozen (no
//! stage trains, BatchNorm in inference mode) and without augmentation beyond the cached
//! views. Record what the cache was built from in [`CacheOptions::fingerprint`]; a file is
//! refused by [`FeatureCache::open`] when its fingerprint differs.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use grafter_core::source::{DataSource, EpochRequest, HostBatch, Labels};
use grafter_core::{Backbone, Classifier, Head, Preprocess};
use serde::{Deserialize, Serialize};

use crate::{DataError, ImageLoader, Result};

const MAGIC: &[u8; 8] = b"GRFTFC01";

/// Number format of a cache file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CachePrecision {
    /// 4 bytes per value, exact.
    #[default]
    F32,
    /// 2 bytes per value: half the disk and page cache, ~3 significant digits (fine for
    /// training a head, not for bit-exact comparisons).
    F16,
}

/// Where the features live.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum CacheStorage {
    /// In a `Vec<f32>` (exact; as large as the features).
    #[default]
    Memory,
    /// In a file, written once, then memory-mapped (the OS pages it in and out).
    File {
        /// The cache file (written atomically: temporary name, then rename).
        path: PathBuf,
        /// Number format.
        precision: CachePrecision,
    },
}

/// How to build a cache.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// Images per backbone forward.
    pub batch_size: usize,
    /// Views per image: 1 = the evaluation transform only; `k > 1` adds `k - 1` augmented
    /// views (needs an [`ImageLoader`], see [`FeatureCache::build_views`]); training epoch
    /// `e` reads view `e % k`.
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

/// Metadata stored at the end of a cache file (after the values).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Header {
    samples: usize,
    views: usize,
    feature_shape: [usize; 3],
    num_classes: usize,
    precision: CachePrecision,
    classes: Option<Vec<usize>>,
    multi_hot: Option<Vec<f32>>,
    fingerprint: String,
}

impl Header {
    /// Whether the header can be served without an index going out of bounds.
    fn check(&self) -> std::result::Result<(), String> {
        if self.views == 0 || self.samples == 0 {
            return Err(format!(
                "{} views of {} samples (both must be at least 1)",
                self.views, self.samples
            ));
        }
        if self.feature_shape.contains(&0) {
            return Err(format!("feature shape {:?}", self.feature_shape));
        }
        match (&self.classes, &self.multi_hot) {
            (Some(c), None) => {
                if c.len() != self.samples {
                    return Err(format!("{} labels for {} samples", c.len(), self.samples));
                }
                if let Some(bad) = c.iter().find(|&&l| l >= self.num_classes) {
                    return Err(format!(
                        "label {bad} is out of range for {} classes",
                        self.num_classes
                    ));
                }
            }
            (None, Some(m)) => {
                if Some(m.len()) != self.samples.checked_mul(self.num_classes) {
                    return Err(format!(
                        "{} multi-hot values for {} samples of {} classes",
                        m.len(),
                        self.samples,
                        self.num_classes
                    ));
                }
            }
            _ => return Err("the labels are missing or given twice".into()),
        }
        Ok(())
    }
}

#[derive(Debug)]
enum Values {
    Memory(Vec<f32>),
    Mapped(memmap2::Mmap, CachePrecision),
}

/// A frozen backbone's feature maps `[C, h, w]` for every sample (and view), served as a
/// [`DataSource`] whose "images" are the features.
///
/// Training order and shuffling are those of [`ImageLoader`] (`EpochRequest::rng(0)`), so a
/// head trained from the cache sees exactly the batches it would see without it.
#[derive(Debug)]
pub struct FeatureCache {
    values: Values,
    header: Header,
}

impl FeatureCache {
    /// Runs `backbone` (in inference mode, on `device`) over one pass of `source` in
    /// evaluation order and caches the features (one view).
    pub fn build<B: Backbone>(
        backbone: &B,
        source: &dyn DataSource,
        options: &CacheOptions,
        device: &Device,
    ) -> Result<Self> {
        if options.views != 1 {
            return Err(DataError::Config(
                "augmented views need an ImageLoader: use FeatureCache::build_views".into(),
            ));
        }
        let request = EpochRequest {
            epoch: 0,
            seed: options.seed,
            batch_size: options.batch_size.max(1),
            train: false,
        };
        Self::compute(backbone, source.num_classes(), options, device, |_| {
            source.batches(request)
        })
    }

    /// Like [`build`](Self::build) with `options.views` views: view 0 with the evaluation
    /// transform, the others with `loader`'s augmentation seeded by `(options.seed, view)`.
    pub fn build_views<B: Backbone>(
        backbone: &B,
        loader: &ImageLoader,
        options: &CacheOptions,
        device: &Device,
    ) -> Result<Self> {
        let bs = options.batch_size.max(1);
        Self::compute(backbone, loader.num_classes(), options, device, |v| {
            loader.fixed_order_batches(options.seed, v, bs, v > 0)
        })
    }

    fn compute<'s, B: Backbone, I>(
        backbone: &B,
        num_classes: usize,
        options: &CacheOptions,
        device: &Device,
        view_batches: impl Fn(usize) -> I,
    ) -> Result<Self>
    where
        I: Iterator<Item = grafter_core::Result<HostBatch>> + 's,
    {
        if options.views == 0 {
            return Err(DataError::Config(
                "a feature cache needs at least one view".into(),
            ));
        }
        if let CacheStorage::File { path, .. } = &options.storage
            && options.fingerprint.is_empty()
        {
            return Err(DataError::Config(format!(
                "{}: a cache file needs a fingerprint (CacheOptions::fingerprint) saying what it was built from, or a stale file would be taken for a fresh one",
                path.display()
            )));
        }
        let backbone = backbone.valid().to_device(device);
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
                if *feature_shape.get_or_insert([c, h, w]) != [c, h, w] {
                    return Err(DataError::Config(format!(
                        "the backbone gave features {:?} then {:?}: a cache needs equally sized inputs",
                        feature_shape,
                        [c, h, w]
                    )));
                }
                let values = f
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .map_err(|e| DataError::Config(format!("cannot read features: {e:?}")))?;
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
            }
            match samples {
                None => samples = Some(count),
                Some(n) if n != count => {
                    return Err(DataError::Config(format!(
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
                CacheStorage::Memory => CachePrecision::F32,
            },
            classes,
            multi_hot,
            fingerprint: options.fingerprint.clone(),
        };
        if header.samples == 0 {
            return Err(DataError::Config("the feature cache would be empty".into()));
        }
        let values = sink.finish(&header)?;
        Ok(Self { values, header })
    }

    /// Reopens a cache file, refusing it when its fingerprint is not `fingerprint` (which
    /// must not be empty), or when its header does not describe its contents (sizes, views,
    /// labels), so a damaged or forged file is an error here, never a panic later.
    pub fn open(path: impl AsRef<Path>, fingerprint: &str) -> Result<Self> {
        let path = path.as_ref();
        if fingerprint.is_empty() {
            return Err(DataError::format(
                path,
                "an empty fingerprint cannot tell a stale feature cache from a fresh one: pass what the cache was built from",
            ));
        }
        let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        if len < 16 {
            return Err(DataError::format(
                path,
                "not a grafter feature cache (too short)",
            ));
        }
        let mut tail = [0u8; 16];
        file.seek(SeekFrom::End(-16))
            .map_err(|e| DataError::io(path, e))?;
        file.read_exact(&mut tail)
            .map_err(|e| DataError::io(path, e))?;
        if &tail[8..] != MAGIC {
            return Err(DataError::format(
                path,
                "not a grafter feature cache (bad magic)",
            ));
        }
        let header_len = u64::from_le_bytes(tail[..8].try_into().unwrap_or_default());
        if header_len.checked_add(16).is_none_or(|end| end > len) {
            return Err(DataError::format(
                path,
                format!(
                    "corrupt feature cache (header length {header_len} in a file of {len} bytes)"
                ),
            ));
        }
        let mut json = vec![0u8; header_len as usize];
        file.seek(SeekFrom::End(-16 - header_len as i64))
            .map_err(|e| DataError::io(path, e))?;
        file.read_exact(&mut json)
            .map_err(|e| DataError::io(path, e))?;
        let header: Header = serde_json::from_slice(&json)
            .map_err(|e| DataError::format(path, format!("corrupt feature cache header: {e}")))?;
        if header.fingerprint != fingerprint {
            return Err(DataError::format(
                path,
                format!(
                    "feature cache built from '{}', not '{fingerprint}': rebuild it",
                    header.fingerprint
                ),
            ));
        }
        header
            .check()
            .map_err(|e| DataError::format(path, format!("corrupt feature cache: {e}")))?;
        let width = match header.precision {
            CachePrecision::F32 => 4,
            CachePrecision::F16 => 2,
        };
        let data_len = header
            .feature_shape
            .iter()
            .chain([&header.samples, &header.views, &width])
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        if data_len.and_then(|d| d.checked_add(header_len + 16)) != Some(len) {
            return Err(DataError::format(
                path,
                "corrupt feature cache (size mismatch)",
            ));
        }
        // SAFETY: the file is ours (written atomically, then only read); a concurrent
        // truncation by another process is the documented hazard of any memory map.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            values: Values::Mapped(map, header.precision),
            header,
        })
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
    ) -> grafter_core::Result<Classifier<CachedFeatures, H>> {
        Classifier::new(
            CachedFeatures::new(self.header.feature_shape[0], preprocess),
            head,
        )
    }

    fn copy_sample(&self, view: usize, index: usize, out: &mut Vec<f32>) {
        let per = self.header.feature_shape.iter().product::<usize>();
        let start = (view * self.header.samples + index) * per;
        match &self.values {
            Values::Memory(v) => out.extend_from_slice(&v[start..start + per]),
            Values::Mapped(map, CachePrecision::F32) => out.extend(
                map[start * 4..(start + per) * 4]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            Values::Mapped(map, CachePrecision::F16) => out.extend(
                map[start * 2..(start + per) * 2]
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
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

impl DataSource for FeatureCache {
    fn len(&self) -> usize {
        self.header.samples
    }

    fn num_classes(&self) -> usize {
        self.header.num_classes
    }

    fn batches<'a>(
        &'a self,
        request: EpochRequest,
    ) -> Box<dyn Iterator<Item = grafter_core::Result<HostBatch>> + Send + 'a> {
        let mut order: Vec<usize> = (0..self.header.samples).collect();
        let view = if request.train {
            use rand::seq::SliceRandom;
            order.shuffle(&mut request.rng(0));
            request.epoch % self.header.views
        } else {
            0
        };
        let [c, h, w] = self.header.feature_shape;
        let chunks: Vec<Vec<usize>> = order
            .chunks(request.batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        Box::new(chunks.into_iter().map(move |idx| {
            let mut images = Vec::with_capacity(idx.len() * c * h * w);
            for &i in &idx {
                self.copy_sample(view, i, &mut images);
            }
            Ok(HostBatch {
                images,
                shape: [idx.len(), c, h, w],
                labels: self.labels(&idx),
            })
        }))
    }
}

/// A temporary file, removed on drop unless [`kept`](Self::keep) (a failed build leaves
/// nothing behind).
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A new temporary file beside `path`, named after it, this process and a counter, created
/// exclusively: two builders of the same cache (threads or processes) never share one.
fn unique_temp(path: &Path) -> Result<(File, PathBuf)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cache".into());
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.{}-{n}.partial", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(DataError::io(&tmp, e)),
        }
    }
}

/// Where computed features go while a cache is built.
enum Sink {
    Memory(Vec<f32>),
    File {
        path: PathBuf,
        tmp: TempFile,
        writer: BufWriter<File>,
        precision: CachePrecision,
    },
}

impl Sink {
    fn new(storage: &CacheStorage) -> Result<Self> {
        Ok(match storage {
            CacheStorage::Memory => Sink::Memory(Vec::new()),
            CacheStorage::File { path, precision } => {
                let (file, tmp) = unique_temp(path)?;
                Sink::File {
                    path: path.clone(),
                    tmp: TempFile(Some(tmp)),
                    writer: BufWriter::with_capacity(1 << 20, file),
                    precision: *precision,
                }
            }
        })
    }

    fn write(&mut self, values: &[f32]) -> Result<()> {
        match self {
            Sink::Memory(v) => v.extend_from_slice(values),
            Sink::File {
                writer,
                precision,
                tmp,
                ..
            } => {
                let bytes: Vec<u8> = match precision {
                    CachePrecision::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    CachePrecision::F16 => values
                        .iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                        .collect(),
                };
                writer
                    .write_all(&bytes)
                    .map_err(|e| DataError::io(tmp.path(), e))?;
            }
        }
        Ok(())
    }

    fn finish(self, header: &Header) -> Result<Values> {
        match self {
            Sink::Memory(v) => Ok(Values::Memory(v)),
            Sink::File {
                path,
                tmp,
                mut writer,
                precision,
            } => {
                let json = serde_json::to_vec(header)
                    .map_err(|e| DataError::format(&path, e.to_string()))?;
                let io = |e| DataError::io(tmp.path(), e);
                writer.write_all(&json).map_err(io)?;
                writer
                    .write_all(&(json.len() as u64).to_le_bytes())
                    .map_err(io)?;
                writer.write_all(MAGIC).map_err(io)?;
                let file = writer
                    .into_inner()
                    .map_err(|e| DataError::io(tmp.path(), e.into_error()))?;
                file.sync_all().map_err(io)?;
                drop(file);
                std::fs::rename(tmp.path(), &path).map_err(|e| DataError::io(&path, e))?;
                tmp.keep();
                let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
                // SAFETY: see `FeatureCache::open`.
                let map =
                    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(&path, e))?;
                Ok(Values::Mapped(map, precision))
            }
        }
    }
}

/// The identity "backbone" of a [`FeatureCache`] (grafter-core's, shared with the loop's
/// automatic cache).
pub use grafter_core::finetune::CachedFeatures;

/// Trains `model`'s head on cached features of its frozen backbone, then grafts the trained
/// head back: the whole of a feature-extraction run (policy [`Frozen`]) at the cost of one
/// backbone pass per view instead of one per epoch.
///
/// Equivalent to `fine_tune.fit(model, train, valid, device)` **only when the backbone stays
/// frozen for every epoch** (give `fine_tune` the [`Frozen`] policy); the result is then the
/// same head, bit for bit, without augmentation (see `tests/data/feature_cache.rs`). With an
/// augmenting `train` loader, `options.views` (≥ 2) augmented views are cached and epoch `e`
/// reads view `e % views` — an approximation of live augmentation, logged as such.
/// Checkpoints written under the run's `out_dir` hold the head-only classifier.
///
/// [`Frozen`]: grafter_core::policy::Frozen
pub fn fit_frozen_cached<B: Backbone, H: Head>(
    fine_tune: &grafter_core::FineTune,
    model: Classifier<B, H>,
    train: &ImageLoader,
    valid: &ImageLoader,
    options: &CacheOptions,
    device: &Device,
) -> Result<grafter_core::FitOutcome<B, H>> {
    let augmented = train.augmentation() != crate::Augment::none();
    let Classifier { backbone, head } = model;
    let ctrain = if augmented {
        if options.views < 2 {
            return Err(DataError::Config(
                "the training loader augments: cache at least 2 views (CacheOptions::views) or train live".into(),
            ));
        }
        log::info!(
            "feature cache: {} augmented views per image stand in for live augmentation",
            options.views
        );
        FeatureCache::build_views(&backbone, train, options, device)?
    } else {
        FeatureCache::build(&backbone, train, options, device)?
    };
    let valid_options = CacheOptions {
        views: 1,
        storage: CacheStorage::Memory,
        ..options.clone()
    };
    let cvalid = FeatureCache::build(&backbone, valid, &valid_options, device)?;
    log::info!(
        "feature cache: backbone frozen, training the head on cached features {:?} of {} + {} images",
        ctrain.feature_shape(),
        ctrain.len(),
        cvalid.len()
    );
    let preprocess = backbone.preprocess();
    let outcome = fine_tune.fit(
        ctrain.head_classifier(head, preprocess)?,
        &ctrain,
        &cvalid,
        device,
    )?;
    let ema = match outcome.ema {
        Some(ema) => Some(Classifier::new(
            backbone.valid().to_device(device),
            ema.head,
        )?),
        None => None,
    };
    Ok(grafter_core::FitOutcome {
        model: Classifier::new(backbone.valid().to_device(device), outcome.model.head)?,
        ema,
        history: outcome.history,
        best: outcome.best,
        stopped_early: outcome.stopped_early,
        run_dir: outcome.run_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_builders_never_share_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CacheStorage::File {
            path: dir.path().join("cache.bin"),
            precision: CachePrecision::F32,
        };
        let (a, b) = (Sink::new(&storage).unwrap(), Sink::new(&storage).unwrap());
        let (Sink::File { tmp: ta, .. }, Sink::File { tmp: tb, .. }) = (&a, &b) else {
            panic!("file sinks expected");
        };
        assert_ne!(ta.path(), tb.path());
        assert!(ta.path().exists() && tb.path().exists());
        let (pa, pb) = (ta.path().to_path_buf(), tb.path().to_path_buf());
        drop((a, b));
        assert!(
            !pa.exists() && !pb.exists(),
            "an unfinished build leaves nothing"
        );
    }
}
