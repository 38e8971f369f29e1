//! Top-k predictions for image files from a saved run (the food101 example's, or any run
//! folder that `grafter::data::save_for_prediction` wrote into):
//!
//! ```text
//! cargo run --release --example predict -- --run runs/food101/run-001 --top-k 3 --tta photo1.jpg photo2.png
//! ```
//!
//! The run's exported ONNX network is read back whole, so prediction needs neither the
//! training code nor the backbone's Rust type.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;
use clap::Parser;
use grafter::data::predict::Predictor;

/// Command-line options.
#[derive(Parser, Debug)]
struct Args {
    /// Run folder (model.onnx, classes.json, preprocess.json, config.json).
    #[arg(long)]
    run: PathBuf,
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
    let predictor = Predictor::from_run(&args.run, &Device::flex())?.with_flip_tta(args.tta);
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
