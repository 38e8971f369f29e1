//! Fine-tunes an ImageNet-pretrained backbone on Food-101 — the main job grafter exists for:
//! data (the train list split into train/validation) → `grafter::zoo::pretrained_or_random`
//! (registry, cache, checked download; or any `.onnx` file) → a new linear head → fastai's
//! two-phase fine-tune → best checkpoint, `metrics.jsonl`, `curves.svg` → the test list →
//! `run.json`, `confusion.svg` and what `Predictor::from_run` reads (`model.onnx`,
//! `classes.json`, `preprocess.json`). Without the real data it trains on grafter's synthetic
//! demo set in the Food-101 layout; without network and cached weights, from a random
//! initialisation: both said loudly.
//!
//! ```text
//! cargo run --release --example food101                      # real data if present, else the demo set
//! cargo run --release --example food101 -- --download        # fetch Food-101 (5 GB) into data/
//! cargo run --release --example food101 -- --data ~/food-101 --backbone resnet18 --per-class 100
//! cargo run --release --example food101 -- --lr auto --ema 0.999 --accumulate 2   # the recipes
//! cargo run --release --example food101 -- --augment trivial --erasing 0.25 --mixup --tensorboard
//! cargo run --release --example food101 -- --devices cpu:2                    # data parallel
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use grafter::data::{Augment, AutoAugment, Food101Split, ImageDataset, ImageLoader};
use grafter::data::{ClassNames, RandomErasing};
use grafter::datasets::Food101;
use grafter::finetune::{ClassWeights, Ema, LrFind, Precision, Sampler, next_run_dir};
use grafter::mixup::Mixup;
use grafter::policy::PolicyName;
use grafter::prelude::*;
use grafter::run_report::RunReport;
use grafter::tensorboard::TensorBoard;
use grafter::zoo::download::{Cache, Downloader};
use grafter::zoo::pretrained_or_random;

#[derive(Parser, Debug)]
#[command(about = "Fine-tune a pretrained backbone on Food-101 (or the embedded demo set).")]
struct Args {
    /// Food-101 folder (holding images/ and meta/). Default: data/food-101, else the demo set.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Download and extract the official Food-101 archive (5 GB) into data/ first.
    #[arg(long)]
    download: bool,
    /// A zoo architecture (resnet18…152, vgg11…19, vgg16_bn…), weight set
    /// (resnet50.a1_in1k…) or .onnx CNN. Default: resnet50, resnet18 on the demo set.
    #[arg(long)]
    backbone: Option<String>,
    /// Never download weights: the cache, else a random initialisation.
    #[arg(long)]
    offline: bool,
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    /// two-phase: epochs that train the head alone before the backbone thaws (at most
    /// epochs − 1).
    #[arg(long, default_value_t = 1)]
    freeze_epochs: usize,
    /// Images per step (default: 32 on Food-101, 16 on the demo set).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate (one-cycle), or `auto` for the range test's valley (lr_find.svg).
    /// two-phase: the head at lr while the backbone is frozen, then the head at lr/2 and the
    /// stages from lr/20 (stem) rising geometrically to lr/(2·10^(1/n)) (last of n).
    /// frozen, full, gradual: lr for the head and every stage that trains.
    #[arg(long, default_value = "2e-3")]
    lr: String,
    /// two-phase, frozen (feature extraction, from the feature cache), full, or gradual
    /// (one more stage every epoch, from the top).
    #[arg(long, default_value = "two-phase")]
    policy: PolicyName,
    /// Training images per class (a subset); the test list keeps a third of it per class.
    #[arg(long)]
    per_class: Option<usize>,
    /// Input side in pixels (default: the weights' own, 224; 96 on the demo set).
    #[arg(long)]
    image_size: Option<usize>,
    /// Fraction of each class of the training list held out for validation.
    #[arg(long, default_value_t = 0.1)]
    valid_fraction: f64,
    /// cpu (Burn's flex), wgpu or cuda (with the cargo feature), or auto (the best there is).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Data-parallel replicas, each batch split across them: cpu:2, wgpu:0,wgpu:1, cuda:0,cuda:1.
    #[arg(long)]
    devices: Option<String>,
    /// f32, or f16 / bf16 mixed precision (f32 master weights; pays off on GPUs only).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Continue the run saved in this folder.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Seed of the split, initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Run folder (default: the next free runs/food101/run-NNN).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Never train from a feature cache, even when the backbone stays frozen.
    #[arg(long)]
    no_cache: bool,
    /// Decoding threads (default: all cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Batches whose gradients are summed into one optimiser step.
    #[arg(long, default_value_t = 1)]
    accumulate: usize,
    /// Keep a moving average of the weights with this decay (timm's model EMA, warm-up on).
    #[arg(long)]
    ema: Option<f64>,
    /// Weight the loss by class, n / (classes · count) (sklearn's "balanced").
    #[arg(long)]
    balanced_classes: bool,
    /// Draw training passes class-balanced (with replacement) instead of shuffling.
    #[arg(long)]
    balanced_sampler: bool,
    /// Stochastic depth of a ResNet backbone (timm's drop_path_rate).
    #[arg(long)]
    drop_path: Option<f64>,
    /// After the crop and flip: trivial (TrivialAugmentWide), rand, or rand-m<M>-n<N>.
    #[arg(long)]
    augment: Option<AutoAugment>,
    /// Erase a random rectangle of each training image with this probability (timm: 0.25).
    #[arg(long)]
    erasing: Option<f64>,
    /// Mix training batches with MixUp / CutMix (timm's recipe: α 0.8 / 1.0, half and half).
    #[arg(long)]
    mixup: bool,
    /// Also log the run as TensorBoard event files in the run folder.
    #[arg(long)]
    tensorboard: bool,
}

fn main() -> std::process::ExitCode {
    run(&Args::parse()).map_or_else(
        |e| {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        },
        |()| std::process::ExitCode::SUCCESS,
    )
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let (device, what) = grafter::device::describe_device(&args.device)
        .map_err(|e| format!("--device {}: {e}", args.device))?;
    eprintln!("device: {what}");
    device.seed(args.seed); // weight initialisation draws from the device's generator
    let data = Food101 {
        dir: args.data.clone(),
        download: args.download,
        demo_per_class: args.per_class.unwrap_or(48),
        seed: args.seed,
        ..Food101::default()
    }
    .locate()?;
    let demo = data.is_demo();
    // A from-scratch ResNet-50 (no weights offline) does not learn 300 images in a few
    // epochs; ResNet-18 does, in about a minute.
    let name = (args.backbone.clone()).unwrap_or(if demo { "resnet18" } else { "resnet50" }.into());
    let downloader = Downloader::new().progress(true).retries(1);
    let cache =
        Cache::from_env()?.with_downloader(downloader.connect_timeout(Duration::from_secs(10)));
    let (backbone, weights) = pretrained_or_random(&name, &cache.offline(args.offline), &device)?;
    if let Some(warning) = weights.warning(&name) {
        eprintln!("\n{warning}\n");
    }
    let backbone = match args.drop_path {
        Some(rate) => backbone.with_drop_path(rate)?,
        None => backbone,
    };
    let out =
        (args.resume.clone().or(args.out.clone())).unwrap_or_else(|| next_run_dir("runs/food101"));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;

    // Data: the official train list split into train/validation; the test list for the end.
    let (mut all_train, mut test) = (
        ImageDataset::food101(&data.root, Food101Split::Train)?,
        ImageDataset::food101(&data.root, Food101Split::Test)?,
    );
    if let (Some(n), false) = (args.per_class, demo) {
        all_train = all_train.per_class(n, args.seed);
        test = test.per_class(n.div_ceil(3).max(1), args.seed);
    }
    let (train_set, valid_set) = all_train.split_stratified(args.valid_fraction, args.seed)?;
    let classes: ClassNames = train_set.classes().clone();
    let size = (args.image_size).unwrap_or(if demo {
        96
    } else {
        backbone.preprocess().input_size[0]
    });
    let preprocess = backbone.preprocess().with_input_size(size, size);
    let loader = |ds| match args.workers {
        Some(w) if w > 0 => ImageLoader::new(ds, preprocess.clone()).threads(w),
        _ => ImageLoader::new(ds, preprocess.clone()),
    };
    let augment = (Augment::standard().with_auto(args.augment))
        .with_erasing(args.erasing.map(RandomErasing::with_p));
    let (train, valid, test) = (
        loader(train_set).augment(augment),
        loader(valid_set),
        loader(test),
    );
    eprintln!(
        "data: {} classes; {} train, {} validation, {} test images at {size}×{size}",
        classes.len(),
        train.len(),
        valid.len(),
        test.len()
    );

    let head =
        LinearHeadConfig::new(backbone.feature_channels(), classes.len()).try_init(&device)?;
    let model = Classifier::new(backbone, head)?;
    let freeze = args.freeze_epochs.min(args.epochs.saturating_sub(1));
    let lr_auto = args.lr.eq_ignore_ascii_case("auto");
    let lr = if lr_auto {
        2e-3
    } else {
        args.lr
            .parse()
            .map_err(|_| format!("--lr {}: not a number or auto", args.lr))?
    };
    let config = FineTuneConfig::fine_tune(freeze, args.epochs - freeze, lr)
        .with_batch_size(args.batch_size.unwrap_or(if demo { 16 } else { 32 }))
        .with_seed(args.seed)
        .with_label_smoothing(0.1)
        .with_precision(args.precision)
        .with_accumulate_steps(args.accumulate)
        .with_ema(args.ema.map(|decay| Ema::new(decay).with_warmup(true)))
        .with_class_weights(args.balanced_classes.then_some(ClassWeights::Balanced))
        .with_mixup(args.mixup.then(Mixup::timm))
        .with_sampler(if args.balanced_sampler {
            Sampler::ClassBalanced
        } else {
            Sampler::Shuffle
        });
    let mut fine_tune = match &args.resume {
        Some(dir) => FineTune::resume(dir)?,
        None => FineTune::new(config, args.policy.policy(freeze)).out_dir(&out),
    };
    if lr_auto && args.resume.is_none() {
        let (tuned, found) =
            fine_tune.with_found_lr(&model, &train, &device, &LrFind::default())?;
        eprintln!(
            "lr_find: valley {:?}, steepest {:?} (lr_find.svg)",
            found.valley, found.steepest
        );
        fine_tune = tuned;
    }
    let devices = match &args.devices {
        Some(spec) => {
            grafter::device::parse_devices(spec).map_err(|e| format!("--devices {spec}: {e}"))?
        }
        None => Vec::new(),
    };
    let mut fine_tune = fine_tune.feature_cache(!args.no_cache).devices(devices);
    if args.tensorboard {
        fine_tune = fine_tune.observer(TensorBoard::new(&out)?);
    }
    let c = fine_tune.config();
    eprintln!(
        "training: {} policy, {} epochs, batch {}, lr {:.1e}, {}; run folder {}",
        args.policy,
        c.epochs,
        c.batch_size,
        c.lr,
        c.precision,
        out.display()
    );
    let outcome = fine_tune.fit(model, &train, &valid, &device)?;

    // The official test list, once, with the best weights; then the run's report.
    let (task, batch) = (fine_tune.config().task, fine_tune.config().batch_size);
    let test_metrics = grafter::evaluate(&outcome.model, &test, task, batch, &device, true)?;
    let report = RunReport {
        data: data.describe(),
        backbone: name,
        weights,
        preprocess,
    };
    report.write(&out, &outcome, &test_metrics, &classes)?;
    for (set, loader) in [("train", &train), ("validation", &valid), ("test", &test)] {
        if !loader.bad_files().is_empty() {
            eprintln!(
                "bad files skipped ({set}): {}",
                loader.bad_files().summary()
            );
        }
    }
    println!("{}", report.summary(&out, &outcome, &test_metrics));
    println!(
        "predict  : cargo run --release --example predict -- --run {} IMAGE...",
        out.display()
    );
    eprintln!("done in {:.1} min", started.elapsed().as_secs_f64() / 60.0);
    Ok(())
}
