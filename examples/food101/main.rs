//! Fine-tunes an ImageNet-pretrained backbone on Food-101 — the main job grafter exists for:
//! data (the train list split into train/validation) → `grafter::zoo::pretrained` (registry,
//! cache, checked download; or any `.onnx` file) → a new linear head → fastai's two-phase
//! fine-tune → best checkpoint, `metrics.jsonl`, `curves.svg` → the test list,
//! `confusion.svg` → `classes.json`, `preprocess.json`, `run.json`, `model.onnx`.
//! Without the real data it trains on grafter's synthetic demo set in the Food-101 layout;
//! without network and cached weights, from a random initialisation: both said loudly.
//!
//! ```text
//! cargo run --release --example food101                      # real data if present, else the demo set
//! cargo run --release --example food101 -- --download        # fetch Food-101 (5 GB) into data/
//! cargo run --release --example food101 -- --data ~/food-101 --backbone resnet18 --per-class 100
//! cargo run --release --example food101 -- --lr auto --ema 0.999 --accumulate 2   # the recipes
//! cargo run --release --example food101 -- --augment trivial --erasing 0.25 --mixup --tensorboard
//! cargo run --release --example food101 -- --devices cpu:2                    # data parallel
//! ```

mod fetch;
mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use burn::tensor::Device;
use clap::{Parser, ValueEnum};
use grafter::data_pipeline::{
    Augment, AutoAugment, Food101Split, ImageDataset, ImageLoader, RandomErasing,
};
use grafter::finetune::{ClassWeights, Ema, LrFind, Sampler};
use grafter::mixup::Mixup;
use grafter::onnx::export_classifier;
use grafter::prelude::*;
use grafter::tensorboard::TensorBoard;
use grafter::zoo::download::{Cache, Downloader};
use grafter::zoo::{AnyBackbone, Weights, pretrained_or_random, registry};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Parser, Debug)]
#[command(about = "Fine-tune a pretrained backbone on Food-101 (or the embedded demo set).")]
struct Args {
    /// Food-101 folder (holding images/ and meta/). Default: data/food-101, else the demo set.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Download and extract the official Food-101 archive (5 GB) into data/ first.
    #[arg(long)]
    download: bool,
    /// A zoo architecture (resnet18…152, vgg11…19, vgg16_bn…) or weight set, or an .onnx CNN
    /// (default: resnet50 on Food-101, resnet18 on the demo set).
    #[arg(long)]
    backbone: Option<String>,
    /// Weight set from grafter::zoo::registry (default: the architecture's), or "none".
    #[arg(long)]
    weights: Option<String>,
    /// Never download weights; use the cache or a random initialisation.
    #[arg(long)]
    offline: bool,
    /// Total epochs (default: 6).
    #[arg(long)]
    epochs: Option<usize>,
    /// two-phase only: epochs that train the head alone (at --lr) before the backbone thaws;
    /// at most epochs − 1, so that the backbone trains at least one epoch.
    #[arg(long, default_value_t = 1)]
    freeze_epochs: usize,
    /// Images per step (default: 32 on Food-101, 16 on the demo set).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate (one-cycle). two-phase: the head at lr while the backbone is
    /// frozen; then the head at lr/2 and the backbone's n stages from lr/20 (stem) rising
    /// geometrically to lr/(2·10^(1/n)) (last stage). frozen, full, gradual: lr for the head
    /// and every stage that trains. `auto`: the range test's suggestion (fastai's lr_find,
    /// its "valley"), plotted in the run folder's lr_find.svg.
    #[arg(long, default_value = "2e-3")]
    lr: LrArg,
    /// Freeze policy.
    #[arg(long, value_enum, default_value_t = PolicyChoice::TwoPhase)]
    policy: PolicyChoice,
    /// Training images per class (a subset); the test list keeps a third of it per class.
    #[arg(long)]
    per_class: Option<usize>,
    /// Input side in pixels (default: the weights' size, 224; 96 on the demo set).
    #[arg(long)]
    image_size: Option<usize>,
    /// Fraction of each class of the training list held out for validation.
    #[arg(long, default_value_t = 0.1)]
    valid_fraction: f64,
    /// cpu (Burn's flex), wgpu or cuda (with the cargo feature), or auto (the best there is).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Train data-parallel on these devices, each batch split across them: `cpu:2` (two
    /// replicas on the CPU), `wgpu:0,wgpu:1`, `cuda:0,cuda:1`. `--device` keeps the master
    /// weights and validates.
    #[arg(long)]
    devices: Option<String>,
    /// f32, or f16 / bf16 mixed precision (f32 master weights), which pays off on GPUs only.
    #[arg(long, default_value = "f32")]
    precision: grafter::finetune::Precision,
    /// Continue the run saved in this folder (same options as when it started).
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
    /// Batches whose gradients are summed into one optimiser step (an effective batch this
    /// many times larger).
    #[arg(long, default_value_t = 1)]
    accumulate: usize,
    /// Keep a moving average of the weights with this decay (timm's model EMA, with
    /// warm-up), evaluated beside the trained weights; the better of the two is kept.
    #[arg(long)]
    ema: Option<f64>,
    /// Weight the loss by class, n / (classes · count) from the training data (sklearn's
    /// "balanced").
    #[arg(long)]
    balanced_classes: bool,
    /// Draw training passes class-balanced (with replacement, each class equally often)
    /// instead of shuffling every image once.
    #[arg(long)]
    balanced_sampler: bool,
    /// Stochastic depth of a ResNet backbone: the last block's residual branch is dropped per
    /// image with this probability while training, earlier blocks less (timm's
    /// drop_path_rate).
    #[arg(long)]
    drop_path: Option<f64>,
    /// The random augmentation after the crop and flip: none, TrivialAugmentWide or
    /// RandAugment (torchvision's operations and magnitudes).
    #[arg(long, value_enum, default_value_t = AutoChoice::None)]
    augment: AutoChoice,
    /// Erase a random rectangle of each training image with this probability
    /// (torchvision's RandomErasing; timm's recipes use 0.25).
    #[arg(long)]
    erasing: Option<f64>,
    /// Mix training batches with MixUp / CutMix (timm's recipe: α 0.8 / 1.0, half and half).
    #[arg(long)]
    mixup: bool,
    /// Also log the run as TensorBoard event files in the run folder.
    #[arg(long)]
    tensorboard: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AutoChoice {
    None,
    Trivial,
    Rand,
}

/// `--lr`: a rate, or `auto` for the range test's suggestion.
#[derive(Clone, Copy, Debug)]
enum LrArg {
    Auto,
    Value(f64),
}

/// Used when `--lr auto` finds too few steps for a suggestion.
const FALLBACK_LR: f64 = 2e-3;

impl std::str::FromStr for LrArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(LrArg::Auto);
        }
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(LrArg::Value(v)),
            _ => Err(format!("'{s}' is neither a positive number nor 'auto'")),
        }
    }
}

/// The `--policy` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PolicyChoice {
    /// fastai's fine_tune: head only for --freeze-epochs, then all at the rates of --lr.
    TwoPhase,
    /// Backbone frozen throughout (feature extraction; uses the feature cache).
    Frozen,
    /// Everything trains from the first step.
    Full,
    /// One more stage unfrozen every epoch, from the top.
    Gradual,
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

fn run(args: &Args) -> AnyResult<()> {
    let started = Instant::now();
    let (device, what) = grafter::device::describe_device(&args.device)
        .map_err(|e| format!("--device {}: {e}", args.device))?;
    eprintln!("device: {what}");
    device.seed(args.seed); // weight initialisation draws from the device's generator
    let (root, demo) = fetch::data(
        args.data.as_deref(),
        args.download,
        args.per_class,
        args.seed,
    )?;
    // A from-scratch ResNet-50 (no weights offline) does not learn 300 images in a few epochs;
    // ResNet-18 does, in about a minute.
    let name = args.backbone.clone().unwrap_or_else(|| match demo {
        true => "resnet18".into(),
        false => "resnet50".into(),
    });
    let (backbone, weights) = backbone(args, &name, &device)?;
    let backbone = match args.drop_path {
        Some(rate) => backbone.with_drop_path(rate)?,
        None => backbone,
    };
    let out = (args.resume.clone().or(args.out.clone())).unwrap_or_else(|| {
        (1..)
            .map(|i| PathBuf::from(format!("runs/food101/run-{i:03}")))
            .find(|p| !p.exists())
            .expect("a free run folder")
    });
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;

    // Data: the official train list split into train/validation; the test list for the end.
    let (mut all_train, mut test) = (
        ImageDataset::food101(&root, Food101Split::Train)?,
        ImageDataset::food101(&root, Food101Split::Test)?,
    );
    if let (Some(n), false) = (args.per_class, demo) {
        all_train = all_train.per_class(n, args.seed);
        test = test.per_class(n.div_ceil(3).max(1), args.seed);
    }
    let (train_set, valid_set) = all_train.split_stratified(args.valid_fraction, args.seed)?;
    let classes = train_set.classes().clone();
    let size = (args.image_size).unwrap_or(if demo {
        96
    } else {
        backbone.preprocess().input_size[0]
    });
    let preprocess = backbone.preprocess().with_input_size(size, size);
    let loader = |ds: ImageDataset| {
        let l = ImageLoader::new(ds, preprocess.clone());
        match args.workers {
            Some(w) if w > 0 => l.threads(w),
            _ => l,
        }
    };
    let (train, valid, test) = (
        loader(train_set).augment(augment(args)),
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
    let epochs = args.epochs.unwrap_or(6);
    let freeze = args.freeze_epochs.min(epochs.saturating_sub(1));
    let lr = match args.lr {
        LrArg::Value(v) => v,
        LrArg::Auto => FALLBACK_LR,
    };
    let config = FineTuneConfig::fine_tune(freeze, epochs - freeze, lr)
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
    let make_policy = || -> Box<dyn FreezePolicy> {
        match args.policy {
            PolicyChoice::TwoPhase => Box::new(TwoPhase::new(freeze, 10.0)),
            PolicyChoice::Frozen => Box::new(Frozen),
            PolicyChoice::Full => Box::new(TrainAll),
            PolicyChoice::Gradual => Box::new(GradualUnfreeze::new(1)),
        }
    };
    let mut config = config;
    if matches!(args.lr, LrArg::Auto) && args.resume.is_none() {
        let probe = FineTune::new(config.clone(), make_policy()).out_dir(&out);
        let found = probe.lr_find(&model, &train, &device, &LrFind::default())?;
        match found.valley {
            Some(lr) => {
                eprintln!(
                    "lr_find: valley {lr:.2e}, steepest {:.2e} (plot: {})",
                    found.steepest.unwrap_or(f64::NAN),
                    out.join("lr_find.svg").display()
                );
                config.lr = lr;
            }
            None => eprintln!(
                "lr_find: too few steps for a suggestion, using {:.1e}",
                config.lr
            ),
        }
    }
    let policy = make_policy();
    let fine_tune = match &args.resume {
        Some(dir) => FineTune::resume(dir)?,
        None => FineTune::new(config, policy).out_dir(&out),
    }
    .feature_cache(!args.no_cache)
    .devices(match &args.devices {
        Some(spec) => {
            grafter::device::parse_devices(spec).map_err(|e| format!("--devices {spec}: {e}"))?
        }
        None => Vec::new(),
    });
    let fine_tune = match args.tensorboard {
        true => fine_tune.observer(TensorBoard::new(&out)?),
        false => fine_tune,
    };
    let c = fine_tune.config();
    eprintln!(
        "training: {:?} policy, {} epochs, batch {}, lr {:.1e}, {}; run folder {}",
        args.policy,
        c.epochs,
        c.batch_size,
        c.lr,
        c.precision,
        out.display()
    );
    let outcome = fine_tune.fit(model, &train, &valid, &device)?;

    // The official test list, once, with the best weights; then what a predictor needs.
    let c = fine_tune.config();
    let test_metrics =
        grafter::evaluate(&outcome.model, &test, c.task, c.batch_size, &device, true)?;
    export_classifier(&outcome.model, out.join("model.onnx"))?;
    classes.save_json(out.join("classes.json"))?;
    let data = match demo {
        true => format!(
            "EMBEDDED DEMO SET (synthetic drawings in the Food-101 layout) at {}",
            root.display()
        ),
        false => format!("Food-101 layout at {}", root.display()),
    };
    let run = report::Run {
        data,
        backbone: name,
        weights,
        preprocess,
    };
    report::write(&out, &run, &outcome.history, &test_metrics, classes.names())?;
    for (set, loader) in [("train", &train), ("validation", &valid), ("test", &test)] {
        if !loader.bad_files().is_empty() {
            eprintln!(
                "bad files skipped ({set}): {}",
                loader.bad_files().summary()
            );
        }
    }
    report::print_summary(&out, &run, &outcome, &test_metrics);
    let note = if demo {
        " (demo data: see above for how to train on the real Food-101)"
    } else {
        ""
    };
    eprintln!(
        "done in {:.1} min{note}",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// The backbone `name` with its pretrained weights when they can be had (cache, else a
/// download unless --offline), or a random initialisation, said loudly.
/// The training augmentation the flags ask for.
fn augment(args: &Args) -> Augment {
    let mut augment = Augment::standard();
    match args.augment {
        AutoChoice::None => {}
        AutoChoice::Trivial => augment = augment.with_auto(AutoAugment::trivial_augment_wide()),
        AutoChoice::Rand => augment = augment.with_auto(AutoAugment::rand_augment()),
    }
    if let Some(p) = args.erasing {
        augment = augment.with_erasing(RandomErasing {
            p,
            ..RandomErasing::default()
        });
    }
    augment
}

fn backbone(args: &Args, name: &str, device: &Device) -> AnyResult<(AnyBackbone, Weights)> {
    let weights = (args.weights.as_deref())
        .filter(|_| !name.ends_with(".onnx"))
        .unwrap_or(name);
    let arch = registry::resolve(name).map(|set| set.arch);
    if let (Some(set), Some(arch)) = (registry::resolve(weights), arch)
        && set.arch.name() != arch.name()
    {
        return Err(format!("--weights {weights} are {} weights, not {name}", set.arch).into());
    }
    let (backbone, weights) = match (weights, arch) {
        ("none", Some(arch)) => {
            let reason = "--weights none".into();
            (arch.init(device), Weights::Random { reason })
        }
        _ => {
            let downloader = Downloader::new().progress(true).retries(1);
            let downloader = downloader.connect_timeout(Duration::from_secs(10));
            let cache = Cache::from_env()?.with_downloader(downloader);
            pretrained_or_random(weights, &cache.offline(args.offline), device)?
        }
    };
    if let Weights::Random { reason } = &weights {
        let bar = "!".repeat(78);
        eprintln!("\n{bar}\n!! NO PRETRAINED WEIGHTS for {name}: {reason}");
        eprintln!("!! The backbone starts from a RANDOM initialisation. This is not transfer");
        eprintln!("!! learning and accuracy will be poor. Run once with network access (the");
        eprintln!(
            "!! weights are cached in ~/.cache/grafter) or put the file in the cache.\n{bar}\n"
        );
    }
    Ok((backbone, weights))
}
