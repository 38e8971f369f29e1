//! Top-k predictions for image files from a model the food101 example (or any grafter run)
//! exported: `model.onnx` + `classes.json` + `preprocess.json` in a run folder.
//!
//! ```text
//! cargo run --release --example predict -- --run runs/food101/run-001 --top-k 3 --tta photo1.jpg photo2.png
//! ```
//!
//! The exported ONNX file is read back as a whole network (`CutPoint::Full`), so prediction
//! needs neither the training code nor the backbone's Rust type.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;
use clap::Parser;
use grafter::Preprocess;
use grafter::data_pipeline::ClassNames;
use grafter::data_pipeline::predict::{Predictor, WholeNetwork};
use grafter::onnx::{CutPoint, OnnxBackbone, OnnxBackboneOptions};

/// Command-line options.
#[derive(Parser, Debug)]
struct Args {
    /// Run folder holding model.onnx, classes.json and preprocess.json.
    #[arg(long)]
    run: Option<PathBuf>,
    /// ONNX model (overrides RUN/model.onnx).
    #[arg(long)]
    model: Option<PathBuf>,
    /// classes.json (overrides RUN/classes.json).
    #[arg(long)]
    classes: Option<PathBuf>,
    /// preprocess.json (overrides RUN/preprocess.json; default ImageNet 224).
    #[arg(long)]
    preprocess: Option<PathBuf>,
    /// Classes to show per image.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Average with the mirrored image (test-time augmentation).
    #[arg(long)]
    tta: bool,
    /// Images to classify.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(2), // some files could not be read
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<usize, Box<dyn std::error::Error>> {
    let in_run = |name: &str| args.run.as_ref().map(|r| r.join(name));
    let model_path = args
        .model
        .clone()
        .or_else(|| in_run("model.onnx"))
        .ok_or("give --run DIR or --model FILE.onnx")?;
    let classes_path = args
        .classes
        .clone()
        .or_else(|| in_run("classes.json"))
        .ok_or("give --run DIR or --classes classes.json")?;
    let preprocess = match args
        .preprocess
        .clone()
        .or_else(|| in_run("preprocess.json"))
    {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str::<Preprocess>(&text)
                .map_err(|e| format!("{}: not a preprocess.json: {e}", p.display()))?
        }
        None => Preprocess::imagenet(),
    };
    let device = Device::flex();
    let options = OnnxBackboneOptions::default().with_cut(CutPoint::Full);
    let network = OnnxBackbone::load(&model_path, &options, &device)?;
    let classes = ClassNames::load_json(&classes_path)?;
    let predictor =
        Predictor::new(WholeNetwork(network), classes, preprocess, device)?.with_flip_tta(args.tta);
    let mut failed = 0;
    for result in predictor.predict_files(&args.images, args.top_k) {
        match result {
            Ok(p) => {
                println!("{}", p.path.display());
                for s in &p.top {
                    println!("  {:>6.2}%  {}", 100.0 * s.probability, s.class);
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("skipped {e}");
            }
        }
    }
    Ok(failed)
}
