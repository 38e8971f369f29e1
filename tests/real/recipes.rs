//! The recipes measured on real weights and images (reported, not asserted): the frozen
//! Keras VGG16 ImageNet conv base with a new linear head on the Fashion-MNIST subset, the
//! settings of `transfer.rs` (a fixed rate) against the range test's rate plus the weight
//! average, over three seeds. docs/RECIPES.md records the numbers.

use burn::tensor::Device;
use grafter::evaluate;
use grafter::feature_cache::{CacheOptions, FeatureCache};
use grafter::finetune::{Ema, EmaSelect, LrFind};
use grafter::prelude::*;
use grafter::zoo::{Vgg, VggConfig, load_vgg_backbone_onnx};

use crate::fixtures::Reference;
use crate::transfer::{CLASSES, dataset};

/// The real Keras VGG16 ImageNet conv base.
fn keras_base(dir: &std::path::Path, device: &Device) -> Vgg {
    load_vgg_backbone_onnx(
        dir.join("vgg16_keras.onnx"),
        &VggConfig::vgg16(),
        Preprocess::caffe(),
        device,
    )
    .unwrap()
}

/// The settings every measured recipe starts from: 30 epochs, batch 50, rate 1e-3, the last
/// epoch's weights.
fn base_config(seed: u64) -> FineTuneConfig {
    FineTuneConfig::new()
        .with_epochs(30)
        .with_batch_size(50)
        .with_lr(1e-3)
        .with_restore_best(false)
        .with_progress(false)
        .with_seed(seed)
}

/// Test top-1 of a new linear head on the frozen base run live (the backbone every step):
/// the device seeded with `seed`, the head drawn, then the base loaded (loading draws from
/// the device's generator too, so the order is part of the recorded figures), `cfg` trained.
fn live_top1(
    dir: &std::path::Path,
    device: &Device,
    seed: u64,
    cfg: FineTuneConfig,
    train: &dyn DataSource,
    test: &dyn DataSource,
) -> f64 {
    device.seed(seed);
    let head = LinearHeadConfig::new(512, CLASSES)
        .try_init(device)
        .unwrap();
    let model = Classifier::new(keras_base(dir, device), head).unwrap();
    let outcome = FineTune::new(cfg, Frozen)
        .fit(model, train, test, device)
        .unwrap();
    evaluate(&outcome.model, test, Task::SingleLabel, 100, device, false)
        .unwrap()
        .top1
}

/// Mean and largest deviation from it, in percent, of top-1 fractions.
fn mean_spread(top1: &[f64]) -> (Vec<f64>, f64, f64) {
    let acc: Vec<f64> = top1.iter().map(|t| 100.0 * t).collect();
    let mean = acc.iter().sum::<f64>() / acc.len() as f64;
    let spread = acc.iter().fold(0.0f64, |m, a| m.max((a - mean).abs()));
    (acc, mean, spread)
}

#[test]
#[ignore = "a measurement: cargo test --test real recipes -- --ignored --nocapture"]
fn recipes_against_a_fixed_rate_on_fashion_mnist() {
    let _rng = crate::real_data::rng_lock();
    let Some(dir) = crate::real_data::dir() else {
        return;
    };
    let device = Device::flex();
    let started = std::time::Instant::now();
    let r = Reference::load_file(&dir.join("fashion_mnist.safetensors"));
    let backbone = keras_base(&dir, &device);
    let pre = backbone.preprocess.clone();
    let options = CacheOptions::default();
    let build = |split| {
        FeatureCache::build(&backbone, &dataset(&r, split, &pre), &options, &device).unwrap()
    };
    let (train, test) = (build("train"), build("test"));
    // the last epoch's weights (trained, or their average) on the test images
    let run = |seed: u64, (find, average): (bool, bool)| -> (f64, f64) {
        device.seed(seed);
        let head = LinearHeadConfig::new(512, CLASSES)
            .try_init(&device)
            .unwrap();
        let model = train.head_classifier(head, pre.clone()).unwrap();
        let mut cfg = base_config(seed);
        if find {
            let found = FineTune::new(cfg.clone(), Frozen)
                .lr_find(&model, &train, &device, &LrFind::default())
                .unwrap();
            cfg.lr = found.valley.unwrap();
        }
        if average {
            cfg = cfg.with_ema(Some(
                Ema::new(0.99).with_warmup(true).with_select(EmaSelect::Ema),
            ));
        }
        let lr = cfg.lr;
        let outcome = FineTune::new(cfg, Frozen)
            .fit(model, &train, &test, &device)
            .unwrap();
        let model = match outcome.ema {
            Some(ema) => ema,
            None => outcome.model,
        };
        let top1 = evaluate(&model, &test, Task::SingleLabel, 100, &device, false)
            .unwrap()
            .top1;
        (top1, lr)
    };
    let summary = |name: &str, recipe: (bool, bool)| {
        let results: Vec<(f64, f64)> = (1..=3).map(|seed| run(seed, recipe)).collect();
        let top1: Vec<f64> = results.iter().map(|r| r.0).collect();
        let (acc, mean, spread) = mean_spread(&top1);
        let lrs: Vec<String> = results.iter().map(|r| format!("{:.1e}", r.1)).collect();
        println!(
            "RECIPES {name}: test top-1 {mean:.1}% ± {spread:.1} (seeds 1-3: {acc:.1?}; lr {})",
            lrs.join(", ")
        );
    };
    summary("fixed lr 1e-3 (transfer.rs)", (false, false));
    summary("lr_find valley", (true, false));
    summary("EMA 0.99 (warm-up), lr 1e-3", (false, true));
    summary("lr_find valley + EMA 0.99 (warm-up)", (true, true));
    println!(
        "RECIPES frozen Keras VGG16 + linear head, Fashion-MNIST 600 train / 400 test at 32x32, 30 epochs, batch 50, AdamW one-cycle ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
}

/// timm's MixUp / CutMix on the same frozen base: it mixes images, so the backbone runs live
/// every epoch (the feature cache turns itself off); the fixed-rate row of the test above is
/// its baseline (the cached run is bit-identical to a live one without mixing).
#[test]
#[ignore = "a measurement: cargo test --test real mixup -- --ignored --nocapture"]
fn mixup_and_cutmix_on_fashion_mnist() {
    use grafter::mixup::Mixup;
    let _rng = crate::real_data::rng_lock();
    let Some(dir) = crate::real_data::dir() else {
        return;
    };
    let device = Device::flex();
    let started = std::time::Instant::now();
    let r = Reference::load_file(&dir.join("fashion_mnist.safetensors"));
    let pre = keras_base(&dir, &device).preprocess;
    let (train, test) = (dataset(&r, "train", &pre), dataset(&r, "test", &pre));
    let mut top1s = Vec::new();
    for seed in 1..=3 {
        let cfg = base_config(seed).with_mixup(Some(Mixup::timm()));
        let top1 = live_top1(&dir, &device, seed, cfg, &train, &test);
        top1s.push(top1);
        println!(
            "RECIPES MixUp/CutMix seed {seed}: test top-1 {:.1}%",
            100.0 * top1
        );
    }
    let (acc, mean, spread) = mean_spread(&top1s);
    println!(
        "RECIPES timm MixUp 0.8 / CutMix 1.0, lr 1e-3: test top-1 {mean:.1}% ± {spread:.1} (seeds 1-3: {acc:.1?}; {:.0} s)",
        started.elapsed().as_secs_f64()
    );
}

/// Fashion-MNIST's split `split` written as 32×32 PNG files (`<dir>/<split>/c<label>/`, the
/// same padded pixels `transfer::dataset` makes): what an image loader with augmentation
/// reads.
fn image_folder(r: &Reference, split: &str, dir: &std::path::Path) -> std::path::PathBuf {
    use grafter::data::image::{Rgb, RgbImage};
    let (pixels, shape) = r.host(&format!("{split}_images"));
    let (labels, _) = r.host(&format!("{split}_labels"));
    let root = dir.join(split);
    for i in 0..shape[0] {
        let img = RgbImage::from_fn(32, 32, |x, y| {
            let (sx, sy) = (x as isize - 2, y as isize - 2);
            let v = if (0..28).contains(&sx) && (0..28).contains(&sy) {
                pixels[i * 784 + sy as usize * 28 + sx as usize] as u8
            } else {
                0
            };
            Rgb([v, v, v])
        });
        let class = root.join(format!("c{}", labels[i] as usize));
        std::fs::create_dir_all(&class).unwrap();
        img.save(class.join(format!("{i:04}.png"))).unwrap();
    }
    root
}

/// torchvision's TrivialAugmentWide with a horizontal flip and timm's RandomErasing, through
/// the image loader on the same frozen base (live: augmented images change every epoch);
/// the loader without augmentation (cached, so exact and quick) is its baseline.
#[test]
#[ignore = "a measurement: cargo test --test real trivial_augment -- --ignored --nocapture"]
fn trivial_augment_and_random_erasing_on_fashion_mnist() {
    use grafter::data::{Augment, AutoAugment, RandomErasing};
    loader_recipes(&[
        ("loader, no augmentation", Augment::none()),
        (
            "TrivialAugmentWide + flip 0.5 + RandomErasing 0.25",
            Augment {
                hflip: 0.5,
                ..Augment::none()
            }
            .with_auto(AutoAugment::trivial_augment_wide())
            .with_erasing(RandomErasing::with_p(0.25)),
        ),
    ]);
}

/// torchvision's RandAugment (2 operations, magnitude 9 of 31) with a horizontal flip, the
/// same way; its baseline is the loader row of the test above.
#[test]
#[ignore = "a measurement: cargo test --test real rand_augment -- --ignored --nocapture"]
fn rand_augment_on_fashion_mnist() {
    use grafter::data::{Augment, AutoAugment};
    loader_recipes(&[(
        "RandAugment n 2 m 9 + flip 0.5",
        Augment {
            hflip: 0.5,
            ..Augment::none()
        }
        .with_auto(AutoAugment::rand_augment()),
    )]);
}

/// Each recipe through the image loader (Fashion-MNIST written as PNG files) on the frozen
/// Keras base, seeds 1-3, printed as `RECIPES` lines.
fn loader_recipes(recipes: &[(&str, grafter::data::Augment)]) {
    use grafter::data::{ImageDataset, ImageLoader};
    let _rng = crate::real_data::rng_lock();
    let Some(dir) = crate::real_data::dir() else {
        return;
    };
    let device = Device::flex();
    let started = std::time::Instant::now();
    let r = Reference::load_file(&dir.join("fashion_mnist.safetensors"));
    let files = tempfile::tempdir().unwrap();
    let (train_dir, test_dir) = (
        image_folder(&r, "train", files.path()),
        image_folder(&r, "test", files.path()),
    );
    // 32×32 in, no resize or crop: the pixels `transfer::dataset` feeds
    let pre = Preprocess {
        crop_ratio: 1.0,
        ..keras_base(&dir, &device).preprocess.with_input_size(32, 32)
    };
    let loader =
        |d: &std::path::Path| ImageLoader::new(ImageDataset::image_folder(d).unwrap(), pre.clone());
    let test = loader(&test_dir);
    for (name, augment) in recipes {
        let train = loader(&train_dir).augment(*augment);
        let mut top1s = Vec::new();
        for seed in 1..=3 {
            let top1 = live_top1(&dir, &device, seed, base_config(seed), &train, &test);
            println!(
                "RECIPES {name} seed {seed}: test top-1 {:.1}%",
                100.0 * top1
            );
            top1s.push(top1);
        }
        let (acc, mean, spread) = mean_spread(&top1s);
        println!(
            "RECIPES {name}, lr 1e-3: test top-1 {mean:.1}% ± {spread:.1} (seeds 1-3: {acc:.1?}; {:.0} s so far)",
            started.elapsed().as_secs_f64()
        );
    }
}
