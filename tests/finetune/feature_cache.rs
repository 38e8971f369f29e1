//! The loop's feature cache: with the backbone frozen for the whole run and fixed images, the
//! head trains from features computed once — and ends where live training ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use grafter::feature_cache::FeatureCacheUse;
use grafter::prelude::*;
use grafter::source::{Cacheable, DataSource, EpochRequest, HostBatch, InMemoryDataset};

use crate::common::{NanAtEpoch, classifier, config, dataset, params};

/// An in-memory set that counts the training passes asked of it: a cached run asks none (it
/// only asks the sample order), a live run one per epoch.
struct Counting {
    inner: InMemoryDataset,
    train_passes: AtomicUsize,
}

impl Counting {
    fn new(inner: InMemoryDataset) -> Self {
        Self {
            inner,
            train_passes: AtomicUsize::new(0),
        }
    }

    fn train_passes(&self) -> usize {
        self.train_passes.load(Ordering::SeqCst)
    }
}

impl DataSource for Counting {
    fn len(&self) -> usize {
        self.inner.len()
    }

    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }

    fn batches<'a>(
        &'a self,
        request: EpochRequest,
    ) -> Box<dyn Iterator<Item = grafter::Result<HostBatch>> + Send + 'a> {
        if request.train {
            self.train_passes.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.batches(request)
    }

    fn cacheable(&self) -> Option<&dyn Cacheable> {
        self.inner.cacheable().map(|_| self as &dyn Cacheable)
    }
}

impl Cacheable for Counting {
    fn sample_order(&self, request: EpochRequest) -> Vec<usize> {
        self.inner.sample_order(request)
    }
}

/// `TinyCnn` with a stage list that forgets its last block.
#[derive(Module, Debug)]
struct PartialStages {
    inner: crate::common::TinyCnn,
}

impl Backbone for PartialStages {
    fn forward_features(&self, images: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<4> {
        self.inner.forward_features(images)
    }

    fn feature_channels(&self) -> usize {
        self.inner.feature_channels()
    }

    fn stages(&self) -> Vec<Stage> {
        self.inner.stages().into_iter().take(2).collect()
    }

    fn preprocess(&self) -> Preprocess {
        self.inner.preprocess()
    }
}

fn max_abs_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut max = 0f32;
    for ((name, x), (name2, y)) in a.iter().zip(b) {
        assert_eq!(name, name2);
        assert_eq!(x.len(), y.len(), "{name}");
        for (u, v) in x.iter().zip(y) {
            max = max.max((u - v).abs());
        }
    }
    max
}

/// Same seed, no augmentation, `Frozen`: the head trained from cached features equals the
/// head trained through the frozen backbone (BatchNorm included: frozen stages run it in
/// inference mode, as the cache does), and so do the metrics and the run directory's files.
#[test]
fn head_trained_from_cached_features_equals_head_trained_live() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = Counting::new(dataset(48, 1));
    let valid = Counting::new(dataset(16, 2));
    // head dropout: the device RNG must be drawn the same way with and without the cache
    let cfg = config(4).with_restore_best(false);

    let live_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let live = FineTune::new(cfg.clone(), Frozen)
        .feature_cache(false)
        .out_dir(live_dir.path())
        .fit(classifier(&device, 31, 0.2), &train, &valid, &device)
        .unwrap();
    let live_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        train.train_passes(),
        4,
        "the live run trains through the source"
    );

    let cached_dir = tempfile::tempdir().unwrap();
    let fine_tune = FineTune::new(cfg, Frozen).out_dir(cached_dir.path());
    let model = classifier(&device, 31, 0.2);
    assert_eq!(
        fine_tune.feature_cache_use(&model, &train, &valid).unwrap(),
        FeatureCacheUse::On
    );
    let started = Instant::now();
    let cached = fine_tune.fit(model, &train, &valid, &device).unwrap();
    let cached_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        train.train_passes(),
        4,
        "the cached run must not run training passes through the source"
    );
    eprintln!(
        "4 epochs of {} + {} images: live {live_secs:.2}s, cached {cached_secs:.2}s ({:.1}x)",
        train.len(),
        valid.len(),
        live_secs / cached_secs
    );

    let a = params(&live.model);
    let b = params(&cached.model);
    let backbone = |p: &[(String, Vec<f32>)]| {
        p.iter()
            .filter(|(n, _)| n.starts_with("backbone"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(backbone(&a), backbone(&b), "the backbone must be untouched");
    let diff = max_abs_diff(&a, &b);
    eprintln!("max |live - cached| over all parameters: {diff:e}");
    assert!(diff <= 1e-5, "heads differ by {diff}");

    // On flex an image's features do not depend on the batch they are computed in, so the
    // two runs agree bit for bit (measured difference: 0; the tolerance above is for other
    // backends' kernels), and so do the metrics and the run directory's log.
    assert_eq!(live.history.len(), 4);
    assert_eq!(live.best, cached.best);
    assert_eq!(live.history, cached.history);
    let log = |d: &std::path::Path| std::fs::read(d.join("metrics.jsonl")).unwrap();
    assert_eq!(log(live_dir.path()), log(cached_dir.path()));
    // the run directory holds the full classifier: the best checkpoint loads into it
    let best = std::fs::read(cached_dir.path().join("best.bpk")).unwrap();
    let record =
        burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(best)).unwrap();
    let loaded = classifier(&device, 99, 0.2)
        .try_load_record(record)
        .unwrap();
    assert_eq!(backbone(&params(&loaded)), backbone(&a));
}

/// The cache stands in for the backbone only when that is exact.
#[test]
fn the_cache_is_used_only_when_the_backbone_stays_frozen_on_fixed_images() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = Counting::new(dataset(8, 1));
    let valid = dataset(4, 2);
    let model = classifier(&device, 5, 0.0);

    // TwoPhase unfreezes everything after its first epoch
    let two_phase = FineTune::new(config(3), TwoPhase::new(1, 10.0));
    match two_phase.feature_cache_use(&model, &train, &valid).unwrap() {
        FeatureCacheUse::Off(why) => assert!(why.contains("epoch 2 trains stage 'stem'"), "{why}"),
        FeatureCacheUse::On => panic!("TwoPhase must train live"),
    }
    let outcome = two_phase.fit(model, &train, &valid, &device).unwrap();
    assert_eq!(train.train_passes(), 3, "TwoPhase ran from the cache");
    assert_eq!(outcome.history.len(), 3);

    // FreezeFirst leaves the last stage trainable
    let model = classifier(&device, 5, 0.0);
    let use_ = FineTune::new(config(2), FreezeFirst(2))
        .feature_cache_use(&model, &train, &valid)
        .unwrap();
    assert!(!use_.is_on(), "{use_:?}");

    // a source that is not cacheable (its pixels change with the epoch)
    let inner = dataset(8, 1);
    let poisoned = NanAtEpoch {
        inner: &inner,
        epoch: 7,
    };
    match FineTune::new(config(2), Frozen)
        .feature_cache_use(&model, &poisoned, &valid)
        .unwrap()
    {
        FeatureCacheUse::Off(why) => assert!(why.contains("not cacheable"), "{why}"),
        FeatureCacheUse::On => panic!("an uncacheable source must train live"),
    }

    // a backbone whose stages leave a block out: Frozen would still train that block
    let partial = Classifier::new(
        PartialStages {
            inner: crate::common::TinyCnn::new(&device),
        },
        grafter::LinearHeadConfig::new(32, crate::common::CLASSES)
            .try_init(&device)
            .unwrap(),
    )
    .unwrap();
    match FineTune::new(config(2), Frozen)
        .feature_cache_use(&partial, &train, &valid)
        .unwrap()
    {
        FeatureCacheUse::Off(why) => assert!(why.contains("stage2"), "{why}"),
        FeatureCacheUse::On => panic!("parameters outside the stages would train"),
    }

    // turned off by hand
    assert!(
        !FineTune::new(config(2), Frozen)
            .feature_cache(false)
            .feature_cache_use(&model, &train, &valid)
            .unwrap()
            .is_on()
    );
    // and on by default
    assert!(
        FineTune::new(config(2), Frozen)
            .feature_cache_use(&model, &train, &valid)
            .unwrap()
            .is_on()
    );
}

/// A cached run paused and resumed (with the cache, or live) ends where a straight cached run
/// ends: the run directory holds the full classifier and the optimiser state of the head.
#[test]
fn a_cached_run_resumes_with_or_without_the_cache() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(16, 1);
    let valid = dataset(8, 2);
    let cfg = config(4).with_restore_best(false);

    let straight_dir = tempfile::tempdir().unwrap();
    let straight = FineTune::new(cfg.clone(), Frozen)
        .out_dir(straight_dir.path())
        .fit(classifier(&device, 41, 0.3), &train, &valid, &device)
        .unwrap();
    let straight_params = params(&straight.model);

    for cache_on_resume in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let first = FineTune::new(cfg.clone(), Frozen)
            .out_dir(dir.path())
            .pause_after(2)
            .fit(classifier(&device, 41, 0.3), &train, &valid, &device)
            .unwrap();
        assert_eq!(first.history.len(), 2);
        let resumed = FineTune::resume(dir.path())
            .unwrap()
            .progress(false)
            .feature_cache(cache_on_resume)
            .fit(classifier(&device, 999, 0.3), &train, &valid, &device)
            .unwrap();
        assert_eq!(resumed.history.len(), 4);
        let diff = max_abs_diff(&straight_params, &params(&resumed.model));
        assert!(
            diff <= 1e-5,
            "resumed with cache {cache_on_resume}: differs by {diff}"
        );
        if cache_on_resume {
            assert_eq!(straight.history, resumed.history);
            let log = |d: &std::path::Path| std::fs::read(d.join("metrics.jsonl")).unwrap();
            assert_eq!(log(straight_dir.path()), log(dir.path()));
        }
    }
}

/// A small image folder: `per_class` PNGs per class, class `k` brightest in channel `k % 3`.
fn image_folder(root: &std::path::Path, per_class: usize) {
    use grafter::data::image::{Rgb, RgbImage};
    for class in 0..crate::common::CLASSES {
        let dir = root.join(format!("class{class}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let img = RgbImage::from_fn(20 + i as u32 % 5, 18, |x, y| {
                let mut px = [(x * 7 + y * 3 + i as u32 * 11) as u8 % 90; 3];
                px[class % 3] = px[class % 3].saturating_add(120 + (class as u8) * 20);
                Rgb(px)
            });
            img.save(dir.join(format!("{i:02}.png"))).unwrap();
        }
    }
}

/// grafter-data's loader is cacheable without augmentation, and its training passes yield the
/// samples of its evaluation pass in the order it announces; with augmentation it is not.
/// A frozen run on it then trains from the cache, and ends where the live run ends.
#[test]
fn an_image_loader_without_augmentation_is_cached_exactly() {
    use grafter::data::{Augment, ImageDataset, ImageLoader};
    let _rng = crate::common::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    image_folder(dir.path(), 6);
    let device = Device::flex();
    let preprocess = classifier(&device, 1, 0.0).backbone.preprocess();
    let ds = ImageDataset::image_folder(dir.path()).unwrap();
    let (train_ds, valid_ds) = ds.split_stratified(0.25, 3).unwrap();
    let train = ImageLoader::new(train_ds.clone(), preprocess.clone());
    let valid = ImageLoader::new(valid_ds, preprocess.clone());
    assert!(train.cacheable().is_some());

    // the order a training pass announces is the order it yields
    let eval = EpochRequest {
        epoch: 0,
        seed: 0,
        batch_size: 4,
        train: false,
    };
    let per = 3 * crate::common::SIDE * crate::common::SIDE;
    let samples: Vec<f32> = train
        .batches(eval)
        .flat_map(|b| b.unwrap().images)
        .collect();
    assert_eq!(samples.len(), train.len() * per);
    let request = EpochRequest {
        epoch: 2,
        seed: 7,
        batch_size: 5,
        train: true,
    };
    let order = train.cacheable().unwrap().sample_order(request);
    assert_ne!(order, (0..train.len()).collect::<Vec<_>>(), "not shuffled");
    let batches: Vec<HostBatch> = train.batches(request).map(|b| b.unwrap()).collect();
    let sizes: Vec<usize> = batches.iter().map(|b| b.shape[0]).collect();
    let expected: Vec<usize> = order.chunks(5).map(<[usize]>::len).collect();
    assert_eq!(sizes, expected);
    let yielded: Vec<f32> = batches.into_iter().flat_map(|b| b.images).collect();
    let announced: Vec<f32> = order
        .iter()
        .flat_map(|&i| samples[i * per..(i + 1) * per].iter().copied())
        .collect();
    assert!(yielded == announced);

    let augmented = ImageLoader::new(train_ds, preprocess).augment(Augment::standard());
    assert!(augmented.cacheable().is_none());
    assert!(
        !FineTune::new(config(2), Frozen)
            .feature_cache_use(&classifier(&device, 1, 0.0), &augmented, &valid)
            .unwrap()
            .is_on()
    );

    let cfg = config(3).with_batch_size(5).with_restore_best(false);
    let fine_tune = FineTune::new(cfg.clone(), Frozen);
    assert!(
        fine_tune
            .feature_cache_use(&classifier(&device, 2, 0.2), &train, &valid)
            .unwrap()
            .is_on()
    );
    let cached = fine_tune
        .fit(classifier(&device, 2, 0.2), &train, &valid, &device)
        .unwrap();
    let live = FineTune::new(cfg, Frozen)
        .feature_cache(false)
        .fit(classifier(&device, 2, 0.2), &train, &valid, &device)
        .unwrap();
    let diff = max_abs_diff(&params(&live.model), &params(&cached.model));
    assert!(diff <= 1e-5, "heads differ by {diff}");
    assert_eq!(live.history, cached.history);
}

/// Features that would not fit the memory budget are not cached: the loop trains live (and
/// says so) instead of running the machine out of memory.
#[test]
fn features_over_the_memory_budget_are_not_cached() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = Counting::new(dataset(24, 1));
    let valid = Counting::new(dataset(8, 2));
    let cfg = config(2).with_restore_best(false);
    let live = FineTune::new(cfg.clone(), Frozen)
        .feature_cache(false)
        .fit(classifier(&device, 7, 0.0), &train, &valid, &device)
        .unwrap();
    assert_eq!(train.train_passes(), 2);
    let fine_tune = FineTune::new(cfg, Frozen).feature_cache_budget(1_000);
    let model = classifier(&device, 7, 0.0);
    // the decision before training cannot know the feature size: it says On ...
    assert!(
        fine_tune
            .feature_cache_use(&model, &train, &valid)
            .unwrap()
            .is_on()
    );
    let over = fine_tune.fit(model, &train, &valid, &device).unwrap();
    // ... and the feature pass stops at the first batch and the run goes through the source.
    assert_eq!(train.train_passes(), 4, "over budget: trained live");
    assert_eq!(live.history, over.history);
    assert_eq!(
        grafter::DEFAULT_FEATURE_CACHE_BUDGET,
        4_000_000_000,
        "documented default"
    );
}

/// The cache in files: no memory budget applies, the features equal the in-memory ones bit
/// for bit (f32), a second run with the same backbone and data reuses the files, another
/// backbone gets its own, and a damaged file is computed again rather than trusted.
#[test]
fn the_cache_in_files_is_reused_only_for_the_same_backbone_and_data() {
    use grafter::feature_cache::CachePrecision;
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = Counting::new(dataset(24, 1));
    let valid = Counting::new(dataset(8, 2));
    let cfg = config(2).with_restore_best(false);
    let memory = FineTune::new(cfg.clone(), Frozen)
        .fit(classifier(&device, 7, 0.0), &train, &valid, &device)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = FineTune::new(cfg, Frozen)
        .feature_cache_budget(1_000)
        .feature_cache_files(dir.path(), CachePrecision::F32);
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };

    let first = files
        .fit(classifier(&device, 7, 0.0), &train, &valid, &device)
        .unwrap();
    assert_eq!(
        train.train_passes(),
        0,
        "cached in files despite the budget"
    );
    assert_eq!(first.history, memory.history);
    assert_eq!(params(&first.model), params(&memory.model));
    let names = listing();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("train-") && names[1].starts_with("valid-"));
    assert!(names.iter().all(|n| n.ends_with(".features")), "{names:?}");

    let train_file = dir.path().join(&names[0]);
    let written = std::fs::metadata(&train_file).unwrap().modified().unwrap();
    let second = files
        .fit(classifier(&device, 7, 0.0), &train, &valid, &device)
        .unwrap();
    assert_eq!(second.history, memory.history);
    assert_eq!(
        std::fs::metadata(&train_file).unwrap().modified().unwrap(),
        written,
        "reused, not rewritten"
    );

    // another backbone: its own files beside the first ones
    files
        .fit(classifier(&device, 8, 0.0), &train, &valid, &device)
        .unwrap();
    assert_eq!(listing().len(), 4, "{:?}", listing());

    // a damaged file is computed again, and the run is the same
    let bytes = std::fs::read(&train_file).unwrap();
    std::fs::write(&train_file, &bytes[..bytes.len() / 2]).unwrap();
    let repaired = files
        .fit(classifier(&device, 7, 0.0), &train, &valid, &device)
        .unwrap();
    assert_eq!(repaired.history, memory.history);
    assert_eq!(std::fs::read(&train_file).unwrap(), bytes);
    assert_eq!(train.train_passes(), 0);
}
