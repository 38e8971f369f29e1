//! [`ImageLoader`]: a [`DataSource`] that decodes and transforms images in parallel, a few
//! batches ahead of the training loop.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use grafter_core::source::{
    Cacheable, DataSource, EpochRequest, HostBatch, Labels, check_order, mix_seed, shuffled_order,
};
use grafter_core::{Preprocess, panic_text};
use rayon::prelude::*;

use crate::decode::decode_file;
use crate::{Augment, BadFiles, FoundAt, ImageDataset, Target, Transform};

/// RNG stream of the per-sample augmentation seeds (stream 0 is the shuffle).
const AUGMENT_STREAM: u64 = 0xA06;

/// Loads an [`ImageDataset`] as batches for [`FineTune`](grafter_core::FineTune).
///
/// * **Order**: evaluation passes keep dataset order; training passes shuffle with
///   `EpochRequest::rng(0)`, exactly as `InMemoryDataset` does.
/// * **Content**: the augmentation of sample `i` draws from its own RNG seeded by
///   `mix_seed(mix_seed(seed, epoch, AUGMENT_STREAM), i, 0)`, so a batch is the same whatever
///   the number of threads or their scheduling, and a resumed run sees the same pixels.
/// * **Parallelism**: a background thread assembles batches, each decoded by rayon's workers
///   in parallel, and keeps up to [`prefetch`](Self::prefetch) batches ready in a bounded
///   channel — decoding overlaps training without unbounded memory.
/// * **Bad files**: see [`BadFiles`]. A file that fails to decode is dropped from its batch
///   (the batch comes out one short), reported with the epoch, and skipped afterwards. A
///   batch whose every file failed is not emitted. A decoder that panics on a file counts
///   as that file failing. Should the prefetch thread itself stop before the end of the pass,
///   the pass ends with an error, never silently short.
#[derive(Clone, Debug)]
pub struct ImageLoader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dataset: ImageDataset,
    transform: Transform,
    augment: Augment,
    prefetch: usize,
    pool: Option<Arc<rayon::ThreadPool>>,
    failed: Vec<AtomicBool>,
    report: Mutex<BadFiles>,
}

impl ImageLoader {
    /// A loader of `dataset` for a backbone expecting `preprocess`, without augmentation
    /// (add it with [`augment`](Self::augment)), prefetching 4 batches, decoding on rayon's
    /// global pool.
    pub fn new(dataset: ImageDataset, preprocess: Preprocess) -> Self {
        let failed = (0..dataset.len()).map(|_| AtomicBool::new(false)).collect();
        Self {
            inner: Arc::new(Inner {
                transform: Transform::new(preprocess),
                augment: Augment::none(),
                prefetch: 4,
                pool: None,
                failed,
                report: Mutex::new(dataset.bad_files().clone()),
                dataset,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("configure a loader before cloning it");
        f(inner);
        self
    }

    /// Training augmentation (evaluation passes never augment).
    pub fn augment(self, augment: Augment) -> Self {
        self.edit(|i| i.augment = augment)
    }

    /// Batches kept ready ahead of the consumer (at least 1).
    pub fn prefetch(self, batches: usize) -> Self {
        self.edit(|i| i.prefetch = batches.max(1))
    }

    /// Decodes on a dedicated pool of `threads` threads instead of rayon's global pool.
    pub fn threads(self, threads: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("grafter-data-{i}"))
            .build()
            .ok()
            .map(Arc::new);
        self.edit(|i| i.pool = pool)
    }

    /// Uses another transform (e.g. another resize engine).
    pub fn transform(self, transform: Transform) -> Self {
        self.edit(|i| i.transform = transform)
    }

    /// The dataset.
    pub fn dataset(&self) -> &ImageDataset {
        &self.inner.dataset
    }

    /// The training augmentation.
    pub fn augmentation(&self) -> Augment {
        self.inner.augment
    }

    /// Every file skipped so far: at scan time, and while loading (with the epoch).
    pub fn bad_files(&self) -> BadFiles {
        self.inner
            .report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The batches of one pass in a fixed order (dataset order), augmented when `augment`
    /// with seeds from `(seed, epoch)`: what a feature cache needs for its augmented views.
    pub fn fixed_order_batches(
        &self,
        seed: u64,
        epoch: usize,
        batch_size: usize,
        augment: bool,
    ) -> Box<dyn Iterator<Item = grafter_core::Result<HostBatch>> + Send + 'static> {
        let request = EpochRequest {
            epoch,
            seed,
            batch_size,
            train: augment,
        };
        let order: Vec<usize> = (0..self.inner.dataset.len()).collect();
        self.run(request, order, augment)
    }

    fn run(
        &self,
        request: EpochRequest,
        order: Vec<usize>,
        augment: bool,
    ) -> Box<dyn Iterator<Item = grafter_core::Result<HostBatch>> + Send + 'static> {
        let inner = self.inner.clone();
        let (tx, rx) = sync_channel(inner.prefetch);
        // Set by the prefetch thread once every sample of the pass is accounted for (loaded,
        // or reported bad) or the consumer left: a channel closing without it means the
        // thread died mid-pass, which the consumer must hear about.
        let done = Arc::new(AtomicBool::new(false));
        let thread_done = done.clone();
        let total = order.len();
        let spawned = std::thread::Builder::new()
            .name("grafter-data-prefetch".into())
            .spawn(move || {
                let before = inner.report.lock().map(|r| r.len()).unwrap_or(0);
                let mut accounted = 0usize;
                for chunk in order.chunks(request.batch_size.max(1)) {
                    let load = || match &inner.pool {
                        Some(pool) => pool.install(|| inner.load_batch(chunk, &request, augment)),
                        None => inner.load_batch(chunk, &request, augment),
                    };
                    let batch = match catch_unwind(AssertUnwindSafe(load)) {
                        Ok(batch) => batch,
                        Err(payload) => {
                            let _ = tx.send(Err(grafter_core::GrafterError::Data(format!(
                                "the image loader failed after {accounted} of {total} samples of epoch {}: {}",
                                request.epoch,
                                panic_text(payload.as_ref())
                            ))));
                            thread_done.store(true, Ordering::Release);
                            return;
                        }
                    };
                    accounted += chunk.len();
                    let Some(batch) = batch else { continue };
                    if tx.send(Ok(batch)).is_err() {
                        thread_done.store(true, Ordering::Release);
                        return; // the consumer stopped early
                    }
                }
                thread_done.store(true, Ordering::Release);
                let report = inner.report.lock().unwrap_or_else(|p| p.into_inner());
                if report.len() > before {
                    log::warn!(
                        "epoch {}: {} file(s) failed to load and were skipped; {}",
                        request.epoch,
                        report.len() - before,
                        report.summary()
                    );
                }
            });
        let mut told = false;
        let ended_early = std::iter::from_fn(move || {
            if told || done.load(Ordering::Acquire) {
                return None;
            }
            told = true;
            Some(Err(grafter_core::GrafterError::Data(format!(
                "the image loader stopped before the end of the pass ({total} samples)"
            ))))
        });
        match spawned {
            Ok(_) => Box::new(rx.into_iter().chain(ended_early)),
            Err(e) => Box::new(std::iter::once(Err(grafter_core::GrafterError::Data(
                format!("cannot start the prefetch thread: {e}"),
            )))),
        }
    }
}

impl Inner {
    /// Decodes and transforms `indices` in parallel; drops (and reports) the failures.
    fn load_batch(
        &self,
        indices: &[usize],
        request: &EpochRequest,
        augment: bool,
    ) -> Option<HostBatch> {
        let limits = self.dataset.limits();
        let base = mix_seed(request.seed, request.epoch as u64, AUGMENT_STREAM);
        let results: Vec<(usize, Result<Vec<f32>, String>)> = indices
            .par_iter()
            .filter(|&&i| !self.failed[i].load(Ordering::Relaxed))
            .map(|&i| {
                let sample = &self.dataset.samples()[i];
                // A decoder or transform panicking on one file is that file failing.
                let out = catch_unwind(AssertUnwindSafe(|| {
                    #[cfg(test)]
                    tests::fault_at(&sample.path, tests::Fault::Sample);
                    decode_file(&sample.path, &limits)
                        .map_err(|e| e.to_string())
                        .map(|img| {
                            if augment {
                                self.transform.train(
                                    &img,
                                    &self.augment,
                                    mix_seed(base, i as u64, 0),
                                )
                            } else {
                                self.transform.eval(&img)
                            }
                        })
                }))
                .unwrap_or_else(|payload| {
                    Err(format!(
                        "decoding panicked: {}",
                        panic_text(payload.as_ref())
                    ))
                });
                (i, out)
            })
            .collect();
        let [h, w] = self.transform.preprocess().input_size;
        let mut images = Vec::with_capacity(results.len() * 3 * h * w);
        let mut kept = Vec::with_capacity(results.len());
        for (i, r) in results {
            match r {
                Ok(pixels) => {
                    images.extend_from_slice(&pixels);
                    kept.push(i);
                }
                Err(reason) => self.mark_failed(i, reason, request.epoch),
            }
        }
        if kept.is_empty() {
            return None;
        }
        let labels = self.labels(&kept);
        Some(HostBatch {
            images,
            shape: [kept.len(), 3, h, w],
            labels,
        })
    }

    fn mark_failed(&self, index: usize, reason: String, epoch: usize) {
        if !self.failed[index].swap(true, Ordering::Relaxed) {
            let path: PathBuf = self.dataset.samples()[index].path.clone();
            log::warn!("{}: skipped while loading: {reason}", path.display());
            self.report.lock().unwrap_or_else(|p| p.into_inner()).push(
                path,
                reason,
                FoundAt::Load { epoch },
            );
        }
    }

    fn labels(&self, kept: &[usize]) -> Labels {
        let samples = self.dataset.samples();
        #[cfg(test)]
        for &i in kept {
            tests::fault_at(&samples[i].path, tests::Fault::Thread);
        }
        if self.dataset.is_multi_label() {
            let k = self.dataset.classes().len();
            let mut values = vec![0f32; kept.len() * k];
            for (row, &i) in kept.iter().enumerate() {
                if let Target::Multi(v) = &samples[i].target {
                    for &c in v {
                        values[row * k + c] = 1.0;
                    }
                }
            }
            Labels::MultiHot {
                values,
                num_classes: k,
            }
        } else {
            Labels::Classes(
                kept.iter()
                    .map(|&i| samples[i].target.primary().unwrap_or(0))
                    .collect(),
            )
        }
    }
}

impl DataSource for ImageLoader {
    fn len(&self) -> usize {
        self.inner.dataset.len()
    }

    fn num_classes(&self) -> usize {
        self.inner.dataset.classes().len()
    }

    /// The dataset's counts (single-label datasets only).
    fn class_counts(&self) -> Option<Vec<usize>> {
        (!self.inner.dataset.is_multi_label()).then(|| self.inner.dataset.class_counts())
    }

    /// The image's path.
    fn sample_name(&self, index: usize) -> Option<String> {
        let sample = self.inner.dataset.samples().get(index)?;
        Some(sample.path.display().to_string())
    }

    /// The dataset's classes (single-label datasets only).
    fn sample_labels(&self) -> Option<Vec<usize>> {
        self.inner
            .dataset
            .samples()
            .iter()
            .map(|s| match s.target {
                Target::Class(c) => Some(c),
                Target::Multi(_) => None,
            })
            .collect()
    }

    /// Decoded and transformed as a shuffled pass is; a sample that comes twice in one pass
    /// is augmented the same way both times (augmentation is seeded per sample and epoch).
    fn batches_of<'a>(
        &'a self,
        order: Vec<usize>,
        request: EpochRequest,
    ) -> Option<Box<dyn Iterator<Item = grafter_core::Result<HostBatch>> + Send + 'a>> {
        if let Err(e) = check_order(&order, self.inner.dataset.len()) {
            return Some(Box::new(std::iter::once(Err(e))));
        }
        Some(self.run(request, order, request.train))
    }

    fn batches<'a>(
        &'a self,
        request: EpochRequest,
    ) -> Box<dyn Iterator<Item = grafter_core::Result<HostBatch>> + Send + 'a> {
        let order = shuffled_order(self.inner.dataset.len(), &request);
        self.run(request, order, request.train)
    }

    /// True without augmentation: training passes then transform exactly as evaluation
    /// passes, only shuffled. (Files that fail to load make a pass come out short; the fine-tune
    /// loop's feature cache notices and trains live instead.)
    fn cacheable(&self) -> Option<&dyn Cacheable> {
        (self.inner.augment == Augment::none()).then_some(self)
    }
}

impl Cacheable for ImageLoader {
    fn sample_order(&self, request: EpochRequest) -> Vec<usize> {
        shuffled_order(self.inner.dataset.len(), &request)
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use super::*;

    /// Where a test makes the loader panic.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Fault {
        /// In the per-sample decode (a rayon worker).
        Sample,
        /// In the prefetch thread, outside any sample.
        Thread,
    }

    static FAULTS: Mutex<Vec<(PathBuf, Fault)>> = Mutex::new(Vec::new());

    /// Panics when a test asked for `fault` at `path`.
    pub(super) fn fault_at(path: &Path, fault: Fault) {
        let hit = FAULTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(p, f)| p == path && *f == fault);
        if hit {
            panic!("injected fault at {}", path.display());
        }
    }

    fn folder(n: usize) -> (tempfile::TempDir, ImageLoader) {
        let dir = tempfile::tempdir().unwrap();
        for class in ["a", "b"] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            for i in 0..n {
                image::RgbImage::from_pixel(12, 10, image::Rgb([i as u8 * 20, 50, 90]))
                    .save(dir.path().join(class).join(format!("{i}.png")))
                    .unwrap();
            }
        }
        let ds = ImageDataset::image_folder(dir.path()).unwrap();
        let loader = ImageLoader::new(ds, Preprocess::imagenet().with_input_size(8, 8)).threads(2);
        (dir, loader)
    }

    fn request() -> EpochRequest {
        EpochRequest {
            epoch: 0,
            seed: 1,
            batch_size: 3,
            train: false,
        }
    }

    #[test]
    fn a_decoder_panic_is_a_bad_file_and_the_pass_goes_on() {
        let (dir, loader) = folder(4);
        let victim = dir.path().join("b").join("1.png");
        FAULTS.lock().unwrap().push((victim.clone(), Fault::Sample));
        let mut samples = 0;
        for batch in loader.batches(request()) {
            samples += batch.unwrap().shape[0];
        }
        assert_eq!(samples, 7, "every other sample is loaded");
        let report = loader.bad_files();
        let bad = report.find(&victim).expect("reported");
        assert!(bad.reason.contains("panicked"), "{}", bad.reason);
    }

    #[test]
    fn a_panic_of_the_prefetch_thread_ends_the_pass_with_an_error() {
        let (dir, loader) = folder(4);
        let victim = dir.path().join("b").join("2.png");
        FAULTS.lock().unwrap().push((victim, Fault::Thread));
        let results: Vec<_> = loader.batches(request()).collect();
        let last = results.last().expect("some result");
        let err = last.as_ref().expect_err("the pass must end with an error");
        assert!(err.to_string().contains("of 8 samples"), "{err}");
        let loaded: usize = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|b| b.shape[0])
            .sum();
        assert!(loaded < 8);
    }
}
