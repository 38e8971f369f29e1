//! Epoch time of a frozen-backbone run with and without the feature cache.
//!
//! `live`: one `FineTune` epoch through the loader and the frozen backbone (decode, resize,
//! forward, head step). `cached`: the same epoch from a `FeatureCache` (head step only).
//! `build`: the one-off cost of the cache (≈ one live epoch without the head step).
//! The issue asks for ≥ 20× on epochs after the first; compare `live` with `cached`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use criterion::{Criterion, Throughput};
use grafter_core::feature_cache::{CacheOptions, FeatureCache};
use grafter_core::policy::Frozen;
use grafter_core::source::DataSource;
use grafter_core::{
    Backbone, Classifier, FineTune, FineTuneConfig, LinearHeadConfig, Preprocess, Stage,
};
use grafter_data::image::{Rgb, RgbImage};
use grafter_data::{ImageDataset, ImageLoader};

const SIDE: usize = 64;
const PER_CLASS: usize = 32;

#[derive(Module, Debug)]
struct Block {
    conv: Conv2d,
    bn: BatchNorm,
}

impl Block {
    fn new(cin: usize, cout: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            bn: BatchNormConfig::new(cout).init(device),
        }
    }
}

/// Four stride-2 conv blocks, 3→32→64→128→256: features `[N, 256, 4, 4]` from 64×64.
#[derive(Module, Debug)]
struct SmallCnn {
    blocks: Vec<Block>,
}

impl Backbone for SmallCnn {
    fn forward_features(&self, mut x: Tensor<4>) -> Tensor<4> {
        for b in &self.blocks {
            x = relu(b.bn.forward(b.conv.forward(x)));
        }
        x
    }
    fn feature_channels(&self) -> usize {
        256
    }
    fn stages(&self) -> Vec<Stage> {
        self.blocks
            .iter()
            .enumerate()
            .map(|(i, b)| Stage::of(format!("block{i}"), b))
            .collect()
    }
    fn preprocess(&self) -> Preprocess {
        Preprocess::imagenet().with_input_size(SIDE, SIDE)
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    for class in 0..2 {
        let d = dir.path().join(format!("c{class}"));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..PER_CLASS {
            RgbImage::from_fn(160, 120, |x, y| {
                Rgb([
                    (x * 3 + i as u32) as u8,
                    (y * 2 + class * 100) as u8,
                    ((x ^ y) * 5) as u8,
                ])
            })
            .save(d.join(format!("{i}.jpg")))
            .unwrap();
        }
    }
    let device = Device::flex();
    device.seed(1);
    let backbone = SmallCnn {
        blocks: [(3, 32), (32, 64), (64, 128), (128, 256)]
            .iter()
            .map(|&(i, o)| Block::new(i, o, &device))
            .collect(),
    };
    let ds = ImageDataset::image_folder(dir.path()).unwrap();
    let (train, valid) = ds.split_stratified(0.125, 0).unwrap();
    let train = ImageLoader::new(train, backbone.preprocess()).threads(2);
    let valid = ImageLoader::new(valid, backbone.preprocess()).threads(2);
    let head = LinearHeadConfig::new(256, 2).try_init(&device).unwrap();
    let cfg = FineTuneConfig::new()
        .with_epochs(1)
        .with_batch_size(16)
        .with_progress(false);
    let options = CacheOptions {
        batch_size: 16,
        ..Default::default()
    };

    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut g = c.benchmark_group("frozen-backbone epoch");
    g.throughput(Throughput::Elements(train.len() as u64));
    g.bench_function("live", |b| {
        b.iter(|| {
            let model = Classifier::new(backbone.clone(), head.clone()).unwrap();
            FineTune::new(cfg.clone(), Frozen)
                .feature_cache(false)
                .fit(model, &train, &valid, &device)
                .unwrap()
        })
    });
    g.bench_function("build cache", |b| {
        b.iter(|| FeatureCache::build(&backbone, &train, &options, &device).unwrap())
    });
    let ctrain = FeatureCache::build(&backbone, &train, &options, &device).unwrap();
    let cvalid = FeatureCache::build(&backbone, &valid, &options, &device).unwrap();
    g.bench_function("cached", |b| {
        b.iter(|| {
            let model = ctrain
                .head_classifier(head.clone(), backbone.preprocess())
                .unwrap();
            FineTune::new(cfg.clone(), Frozen)
                .fit(model, &ctrain, &cvalid, &device)
                .unwrap()
        })
    });
    g.finish();
    c.final_summary();
}
