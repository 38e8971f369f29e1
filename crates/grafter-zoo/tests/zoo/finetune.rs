use burn::tensor::Device;
use grafter_core::prelude::*;
use grafter_core::source::InMemoryDataset;
use grafter_zoo::{ResNetConfig, load_resnet_onnx};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::fixtures::{dir, host};

const CLASSES: usize = 10;
const SIDE: usize = 32;

/// Each class has its own colour (a point on a circle in two channels) plus noise.
fn colours(per_class: usize, seed: u64) -> InMemoryDataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..per_class * CLASSES {
        let k = i % CLASSES;
        let angle = k as f32 / CLASSES as f32 * std::f32::consts::TAU;
        let mean = [angle.cos(), angle.sin(), 0.0];
        for m in mean {
            for _ in 0..SIDE * SIDE {
                images.push(m + rng.random_range(-0.2..0.2));
            }
        }
        labels.push(k);
    }
    InMemoryDataset::new(images, [3, SIDE, SIDE], labels, CLASSES).unwrap()
}

/// The heart of the seed: a pretrained ResNet read from an ONNX file, with its classifier cut off, a new 10-class
/// head grafted on, the backbone frozen, fine-tuned through the loop.
#[test]
fn resnet18_fixture_with_new_head_fine_tunes_frozen() {
    let Some(dir) = dir("resnet18") else { return };
    let device = Device::flex();
    let onnx = dir.join("resnet18_unfolded.onnx");
    let full = load_resnet_onnx(onnx, &ResNetConfig::resnet18(), &device).unwrap();
    let backbone = full.backbone;
    let before: Vec<f32> = host(backbone.layer1[0].conv1.weight.val());
    let head = LinearHeadConfig::new(backbone.feature_channels(), CLASSES)
        .try_init(&device)
        .unwrap();
    let model = Classifier::new(backbone, head).unwrap();
    let config = FineTuneConfig::new()
        .with_epochs(6)
        .with_batch_size(25)
        .with_lr(3e-2)
        .with_progress(false);
    let outcome = FineTune::new(config, Frozen)
        .fit(model, &colours(20, 1), &colours(6, 2), &device)
        .unwrap();
    let best = outcome.best.unwrap().value;
    println!("resnet18 frozen, 10 colour classes: best validation top-1 {best:.3}");
    assert!(best >= 0.9, "validation accuracy {best}");
    let after: Vec<f32> = host(outcome.model.backbone.layer1[0].conv1.weight.val());
    assert!(before == after, "the frozen backbone changed");
}
