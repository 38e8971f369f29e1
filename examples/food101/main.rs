//! Fine-tunes an ImageNet-pretrained backbone on Food-101 — the main job grafter exists for.
//!
//! ```text
//! cargo run --release --example food101                      # real data if present, else the embedded demo
//! cargo run --release --example food101 -- --download        # fetch Food-101 (5 GB) into data/, then train
//! cargo run --release --example food101 -- --data ~/food-101 --backbone resnet18 --per-class 100
//! cargo run --release --example food101 -- --resume runs/food101/run-001
//! ```
//!
//! Steps: data (Food-101 layout; train list split into train/validation, stratified) →
//! backbone with its pretrained weights (zoo registry + cache, or any `.onnx` file) → a new
//! linear head → fastai's two-phase fine-tune (head only, then everything at lower rates) with
//! progress bars → best checkpoint, `metrics.jsonl`, `curves.svg` → evaluation on the official
//! test list with `confusion.svg` → `classes.json`, `preprocess.json` and `model.onnx` for
//! `cargo run --example predict`.
//!
//! Without the real data set it runs on a small synthetic set in the Food-101 layout that it
//! draws itself (see `demo_data.rs`) and says so; without network and cached weights the
//! backbone is randomly initialised, with a loud warning. The run's `run.json` records which
//! data and weights were used.

mod backbone;
mod demo_data;
mod fetch;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use backbone::{Choice, Loaded};
use burn::tensor::Device;
use clap::{Parser, ValueEnum};
use grafter::data_pipeline::{Augment, Food101Split, ImageDataset, ImageLoader};
use grafter::onnx::{OnnxBackboneExport, export_classifier};
use grafter::prelude::*;
use grafter::{FitOutcome, evaluate};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Command-line options.
#[derive(Parser, Debug, Clone)]
#[command(about = "Fine-tune a pretrained backbone on Food-101 (or the embedded demo set).")]
pub struct Args {
    /// Food-101 folder (holding images/ and meta/). Default: data/food-101, else the demo set.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Download and extract the official Food-101 archive (5 GB) into data/ first.
    #[arg(long)]
    download: bool,
    /// resnet18|resnet34|resnet50|resnet101|resnet152, vgg16, or a path to an .onnx CNN
    /// (default: resnet50 on Food-101, resnet18 on the demo set).
    #[arg(long)]
    backbone: Option<Choice>,
    /// Weight set from grafter::zoo::registry (default: the architecture's usual one), or
    /// "none" for a random initialisation.
    #[arg(long)]
    weights: Option<String>,
    /// Never download weights; use the cache or a random initialisation.
    #[arg(long)]
    offline: bool,
    /// Total epochs (default: 6).
    #[arg(long)]
    epochs: Option<usize>,
    /// Epochs with the backbone frozen, for the two-phase policy.
    #[arg(long, default_value_t = 1)]
    freeze_epochs: usize,
    /// Images per step (default: 32 on Food-101, 16 on the demo set).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate of the head (the backbone gets lr / 10 after unfreezing).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Freeze policy.
    #[arg(long, value_enum, default_value_t = PolicyChoice::TwoPhase)]
    policy: PolicyChoice,
    /// Training images per class (a subset for quick runs); the test list is cut to a third
    /// of it per class, as in Food-101's 750/250 split.
    #[arg(long)]
    per_class: Option<usize>,
    /// Input side in pixels (default: the weights' size, 224; 96 on the demo set).
    #[arg(long)]
    image_size: Option<usize>,
    /// Fraction of each class of the training list held out for validation.
    #[arg(long, default_value_t = 0.1)]
    valid_fraction: f64,
    /// cpu (Burn's flex backend), wgpu or cuda (need the `wgpu` / `cuda` cargo feature), or
    /// auto (the best available).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Training precision: f32, or f16 / bf16 mixed precision (f32 master weights; f16 with a
    /// dynamic loss scale). Half precision pays off on GPUs; on the CPU it is slower.
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
}

/// The `--policy` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PolicyChoice {
    /// Head only for --freeze-epochs, then everything (backbone at lr/10): fastai's fine_tune.
    TwoPhase,
    /// Backbone frozen throughout (feature extraction; uses the feature cache).
    Frozen,
    /// Everything trains from the first step.
    Full,
    /// One more stage unfrozen every epoch, from the top.
    Gradual,
}

/// Where the data came from.
struct DataChoice {
    root: PathBuf,
    demo: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> AnyResult<()> {
    let started = Instant::now();
    let device = pick_device(&args.device)?;
    let data = choose_data(args)?;
    let demo = data.demo;
    let choice = match &args.backbone {
        Some(c) => c.clone(),
        None if demo => {
            // A from-scratch ResNet-50 (no weights offline) does not learn from 300 images in
            // a few epochs: its BatchNorm statistics lag the weights and validation collapses
            // to one class. ResNet-18 trains in about a minute and shows the whole pipeline.
            eprintln!(
                "backbone: resnet18, the demo set's default (Food-101's is resnet50; --backbone to choose)"
            );
            Choice::ResNet(18)
        }
        None => Choice::ResNet(50),
    };
    match &choice {
        Choice::ResNet(depth) => {
            let loaded = backbone::resnet(*depth, args.weights.as_deref(), args.offline, &device)?;
            train(args, &choice, &data, loaded, &device)?
        }
        Choice::Vgg16 => {
            let loaded = backbone::vgg16(args.weights.as_deref(), args.offline, &device)?;
            train(args, &choice, &data, loaded, &device)?
        }
        Choice::Onnx(path) => {
            let loaded = backbone::onnx(path, &device)?;
            train(args, &choice, &data, loaded, &device)?
        }
    }
    eprintln!(
        "done in {:.1} min{}",
        started.elapsed().as_secs_f64() / 60.0,
        if demo {
            " (demo data: see above for how to train on the real Food-101)"
        } else {
            ""
        }
    );
    Ok(())
}

fn pick_device(name: &str) -> AnyResult<Device> {
    let (device, what) =
        grafter::device::describe_device(name).map_err(|e| format!("--device {name}: {e}"))?;
    eprintln!("device: {what}");
    Ok(device)
}

fn choose_data(args: &Args) -> AnyResult<DataChoice> {
    let default = PathBuf::from("data/food-101");
    if args.download && args.data.is_none() && !default.join("meta/classes.txt").exists() {
        let root = fetch::food101(Path::new("data"))?;
        return Ok(DataChoice { root, demo: false });
    }
    let root = args.data.clone().unwrap_or(default);
    if root.join("meta/classes.txt").exists() {
        eprintln!("data: Food-101 layout at {}", root.display());
        return Ok(DataChoice { root, demo: false });
    }
    if args.data.is_some() {
        return Err(format!(
            "{}: not a Food-101 folder (no meta/classes.txt); pass the folder that holds images/ and meta/",
            root.display()
        )
        .into());
    }
    let demo_root = PathBuf::from("data/food101-demo");
    let per_class = args.per_class.unwrap_or(48);
    let test = per_class.div_ceil(3).max(2);
    demo_data::ensure(&demo_root, per_class, test, args.seed)
        .map_err(|e| format!("{}: cannot write the demo set: {e}", demo_root.display()))?;
    eprintln!("data: Food-101 not found at {}.", root.display());
    eprintln!(
        "      Using the EMBEDDED DEMO SET instead: {} synthetic \"dishes\" drawn by this example \
         ({per_class} train + {test} test images per class, Food-101 layout) in {}.",
        demo_data::CLASSES.len(),
        demo_root.display()
    );
    eprintln!(
        "      For the real thing: cargo run --release --example food101 -- --download   \
         (or --data DIR with an extracted food-101/)"
    );
    Ok(DataChoice {
        root: demo_root,
        demo: true,
    })
}

fn next_run_dir() -> PathBuf {
    let base = PathBuf::from("runs/food101");
    (1..)
        .map(|i| base.join(format!("run-{i:03}")))
        .find(|p| !p.exists())
        .unwrap_or(base)
}

fn fine_tune_for(args: &Args, config: FineTuneConfig, out: &Path) -> AnyResult<FineTune> {
    fn make<P: FreezePolicy + 'static>(
        args: &Args,
        config: FineTuneConfig,
        out: &Path,
        policy: P,
    ) -> AnyResult<FineTune> {
        Ok(match &args.resume {
            Some(_) => FineTune::resume(out, policy)?,
            None => FineTune::new(config, policy).out_dir(out),
        })
    }
    match args.policy {
        PolicyChoice::TwoPhase => make(args, config, out, TwoPhase::new(args.freeze_epochs, 10.0)),
        PolicyChoice::Frozen => make(args, config, out, Frozen),
        PolicyChoice::Full => make(args, config, out, TrainAll),
        PolicyChoice::Gradual => make(args, config, out, GradualUnfreeze::new(1)),
    }
}

fn train<B: Backbone + OnnxBackboneExport>(
    args: &Args,
    choice: &Choice,
    data: &DataChoice,
    loaded: Loaded<B>,
    device: &Device,
) -> AnyResult<()> {
    let Loaded {
        backbone,
        weights,
        pretrained,
    } = loaded;
    let out = args
        .resume
        .clone()
        .or(args.out.clone())
        .unwrap_or_else(next_run_dir);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;

    // Data: the official train list split into train/validation; the test list for the end.
    let all_train = ImageDataset::food101(&data.root, Food101Split::Train)?;
    let test = ImageDataset::food101(&data.root, Food101Split::Test)?;
    let (all_train, test) = match args.per_class {
        Some(n) if !data.demo => (
            all_train.per_class(n, args.seed),
            test.per_class(n.div_ceil(3).max(1), args.seed),
        ),
        _ => (all_train, test),
    };
    let (train_set, valid_set) = all_train.split_stratified(args.valid_fraction, args.seed)?;
    let classes = train_set.classes().clone();
    let size = args.image_size.unwrap_or(if data.demo {
        96
    } else {
        backbone.preprocess().input_size[0]
    });
    let preprocess = backbone.preprocess().with_input_size(size, size);
    let workers = args.workers.unwrap_or(0);
    let loader = |ds: ImageDataset| {
        let l = ImageLoader::new(ds, preprocess.clone());
        if workers > 0 { l.threads(workers) } else { l }
    };
    let train_data = loader(train_set).augment(Augment::standard());
    let valid_data = loader(valid_set);
    let test_data = loader(test);
    eprintln!(
        "data: {} classes; {} train, {} validation, {} test images at {size}×{size}",
        classes.len(),
        train_data.len(),
        valid_data.len(),
        test_data.len()
    );
    eprintln!("weights: {weights}");

    let head =
        LinearHeadConfig::new(backbone.feature_channels(), classes.len()).try_init(device)?;
    let model = Classifier::new(backbone, head)?;
    let epochs = args.epochs.unwrap_or(6);
    let batch_size = args.batch_size.unwrap_or(if data.demo { 16 } else { 32 });
    let freeze = args.freeze_epochs.min(epochs.saturating_sub(1));
    let config = FineTuneConfig::fine_tune(freeze, epochs - freeze, args.lr)
        .with_batch_size(batch_size)
        .with_seed(args.seed)
        .with_label_smoothing(0.1)
        .with_precision(args.precision);
    let fine_tune = fine_tune_for(args, config, &out)?.feature_cache(!args.no_cache);
    eprintln!(
        "training: {:?} policy, {} epochs, batch {}, lr {:.1e}, {}; run folder {}",
        args.policy,
        fine_tune.config().epochs,
        fine_tune.config().batch_size,
        fine_tune.config().lr,
        fine_tune.config().precision,
        out.display()
    );
    let outcome: FitOutcome<B, _> = fine_tune.fit(model, &train_data, &valid_data, device)?;

    // The official test list, once, with the best weights.
    let test_metrics = evaluate(
        &outcome.model,
        &test_data,
        fine_tune.config().task,
        batch_size,
        device,
        true,
    )?;
    let onnx_path = out.join("model.onnx");
    export_classifier(&outcome.model, &onnx_path)?;
    classes.save_json(out.join("classes.json"))?;
    let provenance = report::Provenance {
        data: if data.demo {
            format!(
                "EMBEDDED DEMO SET (synthetic drawings in the Food-101 layout) at {}",
                data.root.display()
            )
        } else {
            format!("Food-101 layout at {}", data.root.display())
        },
        weights,
        pretrained,
        backbone: choice.arch(),
    };
    report::write(
        &out,
        &provenance,
        &preprocess,
        &outcome.history,
        &test_metrics,
        classes.names(),
    )?;
    let bad =
        train_data.bad_files().len() + valid_data.bad_files().len() + test_data.bad_files().len();
    if bad > 0 {
        eprintln!(
            "bad files skipped: train {}",
            train_data.bad_files().summary()
        );
        eprintln!(
            "                   validation {}",
            valid_data.bad_files().summary()
        );
        eprintln!(
            "                   test {}",
            test_data.bad_files().summary()
        );
    }
    report::print_summary(&out, &provenance, &outcome, &test_metrics, &onnx_path);
    Ok(())
}
