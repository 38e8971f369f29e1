//! Quick start: bring your own backbone, graft a head, fine-tune with fastai's two-phase
//! policy, and look at the curves.
//!
//! Runs in seconds on a laptop CPU, without downloads: the data are synthetic 32×32 images of
//! three shapes (square, cross, ring) in random colours and places, and the backbone is a
//! small CNN defined below. Swap in a zoo or ONNX backbone for real work.
//!
//! ```text
//! cargo run --release --example quickstart -- --epochs 8 --out runs/quickstart
//! ```

use std::path::PathBuf;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use clap::Parser;
use grafter::prelude::*;
use grafter::source::InMemoryDataset;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Command-line options.
#[derive(Parser, Debug)]
struct Args {
    /// Total epochs (the first one trains the head only).
    #[arg(long, default_value_t = 8)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-2)]
    lr: f64,
    /// Training images per class.
    #[arg(long, default_value_t = 1000)]
    per_class: usize,
    /// Run directory (checkpoints, metrics.jsonl, curves.svg).
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
    /// Seed of data, initialisation and training.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

const SIDE: usize = 32;
const SHAPES: [&str; 3] = ["square", "cross", "ring"];

/// A user-defined backbone: four conv stages, each halving the resolution.
#[derive(Module, Debug)]
struct MyCnn {
    stages: Vec<Block>,
}

#[derive(Module, Debug)]
struct Block {
    conv: Conv2d,
    norm: BatchNorm,
}

impl MyCnn {
    fn new(widths: &[usize], device: &Device) -> Self {
        let mut cin = 3;
        let stages = widths
            .iter()
            .map(|&w| {
                let block = Block {
                    conv: Conv2dConfig::new([cin, w], [3, 3])
                        .with_stride([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .with_bias(false)
                        .init(device),
                    norm: BatchNormConfig::new(w).init(device),
                };
                cin = w;
                block
            })
            .collect();
        Self { stages }
    }
}

impl Backbone for MyCnn {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        self.stages
            .iter()
            .fold(images, |x, b| relu(b.norm.forward(b.conv.forward(x))))
    }

    fn feature_channels(&self) -> usize {
        self.stages
            .last()
            .map(|b| b.norm.gamma.dims()[0])
            .unwrap_or(3)
    }

    fn stages(&self) -> Vec<Stage> {
        self.stages
            .iter()
            .enumerate()
            .map(|(i, b)| Stage::of(format!("stage{}", i + 1), b))
            .collect()
    }

    fn preprocess(&self) -> Preprocess {
        Preprocess::imagenet().with_input_size(SIDE, SIDE)
    }
}

/// Draws `per_class` images of each shape, in random colours, sizes and places.
fn shapes(
    per_class: usize,
    seed: u64,
    preprocess: &Preprocess,
) -> grafter::Result<InMemoryDataset> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..per_class * SHAPES.len() {
        let class = i % SHAPES.len();
        let bg: [u8; 3] = rng.random();
        let fg: [u8; 3] = std::array::from_fn(|c| bg[c].wrapping_add(rng.random_range(80..176)));
        let r = rng.random_range(5..9) as i64;
        let cy = rng.random_range(r..SIDE as i64 - r);
        let cx = rng.random_range(r..SIDE as i64 - r);
        let mut plane = vec![0f32; 3 * SIDE * SIDE];
        for y in 0..SIDE as i64 {
            for x in 0..SIDE as i64 {
                let (dy, dx) = (y - cy, x - cx);
                let inside = match class {
                    0 => dy.abs() <= r && dx.abs() <= r,
                    1 => (dy.abs() <= r && dx.abs() <= 1) || (dx.abs() <= r && dy.abs() <= 1),
                    _ => {
                        let d2 = dy * dy + dx * dx;
                        d2 <= r * r && d2 >= (r - 2) * (r - 2)
                    }
                };
                let px = preprocess.normalize_rgb8(if inside { fg } else { bg });
                for c in 0..3 {
                    plane[c * SIDE * SIDE + (y as usize) * SIDE + x as usize] = px[c];
                }
            }
        }
        images.extend(plane);
        labels.push(class);
    }
    InMemoryDataset::new(images, [3, SIDE, SIDE], labels, SHAPES.len())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let device = Device::flex();
    device.seed(args.seed);

    let backbone = MyCnn::new(&[16, 32, 64, 64], &device);
    let pre = backbone.preprocess();
    let train = shapes(args.per_class, args.seed, &pre)?;
    let valid = shapes(args.per_class / 3 + 1, args.seed + 1, &pre)?;
    let head = LinearHeadConfig::new(backbone.feature_channels(), SHAPES.len())
        .with_pooling(Pooling::AvgMax)
        .with_dropout(0.1)
        .try_init(&device)?;
    let model = Classifier::new(backbone, head)?;

    if args.out.join("latest").exists() {
        std::fs::remove_dir_all(&args.out)?;
    }
    eprintln!(
        "quickstart: synthetic shapes {SHAPES:?}, {} training / {} validation images, a from-scratch CNN on the CPU (flex)",
        train.len(),
        valid.len()
    );
    let config = FineTuneConfig::fine_tune(1, args.epochs.saturating_sub(1).max(1), args.lr)
        .with_batch_size(args.batch_size)
        .with_seed(args.seed);
    let outcome = FineTune::new(config, TwoPhase::new(1, 10.0))
        .out_dir(&args.out)
        .fit(model, &train, &valid, &device)?;

    let best = outcome.best.expect("at least one epoch ran");
    println!(
        "best validation accuracy {:.1}% at epoch {} (chance {:.1}%); curves: {}",
        100.0 * best.value,
        best.epoch + 1,
        100.0 / SHAPES.len() as f64,
        args.out.join("curves.svg").display()
    );
    Ok(())
}
