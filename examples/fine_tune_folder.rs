//! Fine-tunes a pretrained backbone (any zoo name or ONNX file) on any image folder with one
//! sub-folder per class: one epoch for the new head, then all (fastai's `fine_tune`).
//!
//! `cargo run --release --example fine_tune_folder -- data/pets resnet50`
use std::path::PathBuf;

use burn::tensor::Device;
use clap::Parser;
use grafter::data::{Augment, ImageDataset, ImageLoader, save_for_prediction};
use grafter::prelude::*;
use grafter::zoo::{download::Cache, pretrained_or_random};

#[derive(Parser)]
struct Args {
    /// Image folder: one sub-folder of images per class.
    folder: PathBuf,
    /// A zoo architecture or weight set (resnet50, vgg16_bn, resnet50.a1_in1k…) or an .onnx.
    #[arg(default_value = "resnet18")]
    backbone: String,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Input side in pixels (default: the weights' own).
    #[arg(long)]
    image_size: Option<usize>,
    /// Never download: cached weights, else a RANDOM initialisation.
    #[arg(long)]
    offline: bool,
    #[arg(long, default_value = "runs/fine_tune_folder")]
    out: PathBuf,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (args, device) = (Args::parse(), Device::flex());
    device.seed(42); // initialisation; FineTuneConfig's seed (42 too) covers the rest
    let cache = Cache::from_env()?.offline(args.offline);
    let (backbone, weights) = pretrained_or_random(&args.backbone, &cache, &device)?;
    println!("weights: {weights}");
    let size = args
        .image_size
        .unwrap_or(backbone.preprocess().input_size[0]);
    let preprocess = backbone.preprocess().with_input_size(size, size);
    let (train, valid) = ImageDataset::image_folder(&args.folder)?.split_stratified(0.2, 42)?;
    let classes = train.classes().clone();
    let train = ImageLoader::new(train, preprocess.clone()).augment(Augment::standard());
    let valid = ImageLoader::new(valid, preprocess.clone());
    let head =
        LinearHeadConfig::new(backbone.feature_channels(), classes.len()).try_init(&device)?;
    let config =
        FineTuneConfig::fine_tune(1, args.epochs.saturating_sub(1), 1e-3).with_batch_size(16);
    let fine_tune = FineTune::new(config, TwoPhase::new(1, 10.0)).out_dir(&args.out);
    let outcome = fine_tune.fit(Classifier::new(backbone, head)?, &train, &valid, &device)?;
    // model.onnx, classes.json, preprocess.json: what `Predictor::from_run` reads.
    save_for_prediction(&args.out, &outcome.model, &classes, &preprocess)?;
    println!(
        "best validation top-1: {:.1}%",
        100.0 * outcome.best.map_or(0.0, |b| b.value)
    );
    Ok(())
}
