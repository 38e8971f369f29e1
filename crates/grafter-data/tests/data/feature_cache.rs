//! The feature cache over image files: training the head from cached features equals
//! training through the frozen backbone, by hand or by the loop's own cache in files; files
//! round-trip in f32 and f16 and refuse a wrong fingerprint; augmented views rotate.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use grafter_core::feature_cache::{CacheOptions, CachePrecision, CacheStorage, FeatureCache};
use grafter_core::policy::Frozen;
use grafter_core::source::{DataSource, EpochRequest};
use grafter_core::{Backbone, Classifier, FineTune, FineTuneConfig, LinearHeadConfig};
use grafter_data::{Augment, ImageDataset, ImageLoader};

use crate::common::{Tiny, drain, image_folder};

fn params<M: Module>(module: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.extend(
                p.val()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap(),
            );
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}

fn loaders(dir: &std::path::Path, backbone: &Tiny) -> (ImageLoader, ImageLoader) {
    let ds = ImageDataset::image_folder(dir).unwrap();
    let (train, valid) = ds.split_stratified(0.25, 1).unwrap();
    let p = backbone.preprocess();
    (
        ImageLoader::new(train, p.clone()).augment(Augment::none()),
        ImageLoader::new(valid, p),
    )
}

#[test]
fn head_trained_from_the_cache_equals_head_trained_through_the_frozen_backbone() {
    let dir = tempfile::tempdir().unwrap();
    image_folder(dir.path(), &["a", "b", "c"], 8);
    let device = Device::flex();
    device.seed(5);
    let backbone = Tiny::new(&device);
    let head = LinearHeadConfig::new(12, 3).try_init(&device).unwrap();
    let (train, valid) = loaders(dir.path(), &backbone);
    let cfg = FineTuneConfig::new()
        .with_epochs(3)
        .with_batch_size(4)
        .with_lr(2e-2)
        .with_seed(9)
        .with_restore_best(false)
        .with_progress(false);

    let live_head_start = head.clone();
    let live = Classifier::new(backbone.clone(), head.clone()).unwrap();
    // Live means through the backbone: the loop's own automatic cache is switched off.
    let live = FineTune::new(cfg.clone(), Frozen)
        .feature_cache(false)
        .fit(live, &train, &valid, &device)
        .unwrap();

    let options = CacheOptions {
        batch_size: 5,
        ..Default::default()
    };
    let ctrain = FeatureCache::build(&backbone, &train, &options, &device).unwrap();
    let cvalid = FeatureCache::build(&backbone, &valid, &options, &device).unwrap();
    assert_eq!(ctrain.feature_shape(), [12, 4, 4]);
    assert_eq!(ctrain.len(), train.len());
    let cached = ctrain.head_classifier(head, backbone.preprocess()).unwrap();
    let cached = FineTune::new(cfg.clone(), Frozen)
        .fit(cached, &ctrain, &cvalid, &device)
        .unwrap();

    let a = params(&live.model.head);
    let b = params(&cached.model.head);
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    eprintln!("max |head(live) - head(cached)| = {diff:e}");
    assert!(diff <= 1e-6, "heads differ by {diff}");
    assert_ne!(
        a,
        params(&LinearHeadConfig::new(12, 3).try_init(&device).unwrap())
    );
    for (l, c) in live.history.iter().zip(&cached.history) {
        assert!(
            (l.train.loss - c.train.loss).abs() < 1e-5,
            "{} vs {}",
            l.train.loss,
            c.train.loss
        );
    }
    // The trained head grafts back onto the real backbone.
    let grafted = Classifier::new(backbone.clone(), cached.model.head).unwrap();
    assert_eq!(grafted.num_outputs(), 3);

    // The loop does all of the above by itself, here with its cache in files: the same head
    // bit for bit, on the real backbone; a second run reuses the files.
    let files = tempfile::tempdir().unwrap();
    let start = Classifier::new(backbone, live_head_start).unwrap();
    let run = FineTune::new(cfg, Frozen).feature_cache_files(files.path(), CachePrecision::F32);
    let auto = run.fit(start.clone(), &train, &valid, &device).unwrap();
    assert_eq!(params(&auto.model.head), a);
    assert_eq!(params(&auto.model.backbone), params(&grafted.backbone));
    let written: Vec<_> = std::fs::read_dir(files.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 2, "{written:?}");
    let modified = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before: Vec<_> = written.iter().map(|p| modified(p)).collect();
    let again = run.fit(start, &train, &valid, &device).unwrap();
    assert_eq!(params(&again.model.head), a);
    let after: Vec<_> = written.iter().map(|p| modified(p)).collect();
    assert_eq!(before, after, "the second run reuses the files");
}

#[test]
fn cache_files_round_trip_in_f32_and_f16_and_check_their_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    image_folder(&dir.path().join("imgs"), &["a", "b"], 5);
    let device = Device::flex();
    device.seed(2);
    let backbone = Tiny::new(&device);
    let (train, _) = loaders(&dir.path().join("imgs"), &backbone);
    let mem = FeatureCache::build(&backbone, &train, &CacheOptions::default(), &device).unwrap();
    let req = EpochRequest {
        epoch: 1,
        seed: 4,
        batch_size: 3,
        train: true,
    };
    let (reference, labels, _) = drain(&mem, req);
    for (precision, tol) in [(CachePrecision::F32, 0.0), (CachePrecision::F16, 2e-3)] {
        let path = dir.path().join(format!("{precision:?}.cache"));
        let options = CacheOptions {
            storage: CacheStorage::File {
                path: path.clone(),
                precision,
            },
            fingerprint: "tiny@seed2".into(),
            ..Default::default()
        };
        let built = FeatureCache::build(&backbone, &train, &options, &device).unwrap();
        let reopened = FeatureCache::open(&path, "tiny@seed2").unwrap();
        for cache in [&built, &reopened] {
            let (values, l, _) = drain(cache, req);
            assert_eq!(l, labels);
            let err = values
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0f32, f32::max);
            assert!(err <= tol, "{precision:?}: error {err}");
        }
        let refused = FeatureCache::open(&path, "other").unwrap_err().to_string();
        assert!(
            refused.contains("rebuild")
                && refused.contains(path.file_name().unwrap().to_str().unwrap()),
            "{refused}"
        );
    }
}

#[test]
fn augmented_views_rotate_with_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    image_folder(dir.path(), &["a", "b"], 3);
    let device = Device::flex();
    let backbone = Tiny::new(&device);
    let ds = ImageDataset::image_folder(dir.path()).unwrap();
    let loader = ImageLoader::new(ds, backbone.preprocess()).augment(Augment::standard());
    let options = CacheOptions {
        views: 3,
        seed: 1,
        ..Default::default()
    };
    let cache = loader
        .feature_cache_views(&backbone, &options, &device)
        .unwrap();
    assert_eq!(cache.views(), 3);
    let at = |epoch| {
        drain(
            &cache,
            EpochRequest {
                epoch,
                seed: 0,
                batch_size: 6,
                train: true,
            },
        )
        .0
    };
    let eval = drain(
        &cache,
        EpochRequest {
            epoch: 1,
            seed: 0,
            batch_size: 6,
            train: false,
        },
    )
    .0;
    assert_eq!(at(0).len(), eval.len());
    assert_ne!(at(1), at(2));
    assert!(
        FeatureCache::build(&backbone, &loader, &options, &device).is_err(),
        "views need the loader's feature_cache_views"
    );
}
