//! A tiny CNN backbone and a synthetic, separable image set shared by the loop tests.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use grafter::LinearHead;
use grafter::prelude::*;
use grafter::source::{DataSource, EpochRequest, HostBatch, InMemoryDataset};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use crate::params::{frozen_and_trained, params};

pub const CLASSES: usize = 4;
pub const SIDE: usize = 16;

/// conv3x3 → BatchNorm → ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl ConvBlock {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(cout).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.bn.forward(self.conv.forward(x)))
    }
}

/// Three stages: stem (3→8), stage1 (8→16, /2), stage2 (16→32, /2).
#[derive(Module, Debug)]
pub struct TinyCnn {
    pub stem: ConvBlock,
    pub stage1: ConvBlock,
    pub stage2: ConvBlock,
}

impl TinyCnn {
    pub fn new(device: &Device) -> Self {
        Self {
            stem: ConvBlock::new(3, 8, 1, device),
            stage1: ConvBlock::new(8, 16, 2, device),
            stage2: ConvBlock::new(16, 32, 2, device),
        }
    }
}

impl Backbone for TinyCnn {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        self.stage2
            .forward(self.stage1.forward(self.stem.forward(images)))
    }

    fn feature_channels(&self) -> usize {
        32
    }

    fn stages(&self) -> Vec<Stage> {
        vec![
            Stage::of("stem", &self.stem),
            Stage::of("stage1", &self.stage1),
            Stage::of("stage2", &self.stage2),
        ]
    }

    fn preprocess(&self) -> Preprocess {
        Preprocess::imagenet().with_input_size(SIDE, SIDE)
    }
}

/// A fresh classifier with a seeded initialisation.
pub fn classifier(device: &Device, seed: u64, dropout: f64) -> Classifier<TinyCnn, LinearHead> {
    device.seed(seed);
    let head = LinearHeadConfig::new(32, CLASSES)
        .with_dropout(dropout)
        .try_init(device)
        .unwrap();
    Classifier::new(TinyCnn::new(device), head).unwrap()
}

/// `per_class` noisy images per class; class `k` has a bright square in quadrant `k`, in
/// colour channel `k % 3`. Separable, but only by looking at where the square is.
pub fn dataset(per_class: usize, seed: u64) -> InMemoryDataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..per_class * CLASSES {
        let class = i % CLASSES;
        let (oy, ox) = ((class / 2) * SIDE / 2, (class % 2) * SIDE / 2);
        let mut img = vec![0f32; 3 * SIDE * SIDE];
        for v in img.iter_mut() {
            *v = rng.random_range(-0.8..0.8);
        }
        let jitter: usize = rng.random_range(0..3);
        for y in oy + 1 + jitter..oy + 5 + jitter {
            for x in ox + 1..ox + 6 {
                img[(class % 3) * SIDE * SIDE + y * SIDE + x] += 2.0;
            }
        }
        images.extend(img);
        labels.push(class);
    }
    InMemoryDataset::new(images, [3, SIDE, SIDE], labels, CLASSES).unwrap()
}

/// A data source that poisons one epoch with NaN pixels.
pub struct NanAtEpoch<'a> {
    pub inner: &'a InMemoryDataset,
    pub epoch: usize,
}

impl DataSource for NanAtEpoch<'_> {
    fn len(&self) -> usize {
        self.inner.len()
    }

    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }

    fn batches<'a>(
        &'a self,
        request: EpochRequest,
    ) -> Box<dyn Iterator<Item = grafter::Result<HostBatch>> + Send + 'a> {
        let poison = request.train && request.epoch == self.epoch;
        Box::new(self.inner.batches(request).map(move |b| {
            b.map(|mut b| {
                if poison {
                    b.images[0] = f32::NAN;
                }
                b
            })
        }))
    }
}

/// A quiet configuration for tests.
pub fn config(epochs: usize) -> FineTuneConfig {
    FineTuneConfig::new()
        .with_epochs(epochs)
        .with_batch_size(16)
        .with_lr(1e-2)
        .with_progress(false)
}

/// Burn's flex backend keeps one random generator per process (`Device::seed` replaces it),
/// so tests that initialise or train models must not interleave: each takes this lock.
/// (A single training run is deterministic; concurrent runs in one process share the RNG.)
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
