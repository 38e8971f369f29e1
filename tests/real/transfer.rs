use burn::tensor::Device;
use grafter::feature_cache::{CacheOptions, FeatureCache};
use grafter::prelude::*;
use grafter::source::InMemoryDataset;
use grafter::zoo::{Vgg, VggConfig, load_vgg_backbone_onnx};

use crate::fixtures::Reference;

/// Side of the network input: Fashion-MNIST's 28 px padded to 32 (VGG's five pools need 32).
const SIDE: usize = 32;
pub(crate) const CLASSES: usize = 10;

/// Grey 28×28 images → RGB 64×64, normalised with the backbone's convention.
pub(crate) fn dataset(r: &Reference, split: &str, preprocess: &Preprocess) -> InMemoryDataset {
    let (pixels, shape) = r.host(&format!("{split}_images"));
    let (labels, _) = r.host(&format!("{split}_labels"));
    let n = shape[0];
    let pad = (SIDE - 28) / 2;
    let mut images = vec![0f32; n * 3 * SIDE * SIDE];
    for i in 0..n {
        for y in 0..SIDE {
            for x in 0..SIDE {
                let (sy, sx) = (y as isize - pad as isize, x as isize - pad as isize);
                let v = if (0..28).contains(&sy) && (0..28).contains(&sx) {
                    pixels[i * 784 + sy as usize * 28 + sx as usize] as u8
                } else {
                    0
                };
                let px = preprocess.normalize_rgb8([v, v, v]);
                for c in 0..3 {
                    images[((i * 3 + c) * SIDE + y) * SIDE + x] = px[c];
                }
            }
        }
    }
    let labels = labels.iter().map(|&l| l as usize).collect();
    InMemoryDataset::new(images, [3, SIDE, SIDE], labels, CLASSES).unwrap()
}

/// Frozen backbone (features extracted once), new linear head: best test top-1.
fn linear_probe(backbone: &Vgg, preprocess: &Preprocess, r: &Reference, device: &Device) -> f64 {
    // A Frozen policy without augmentation computes the same features every epoch: grafter's
    // feature cache computes them once (the head trained from it is bit-identical).
    let options = CacheOptions::default();
    let build = |split| {
        FeatureCache::build(backbone, &dataset(r, split, preprocess), &options, device).unwrap()
    };
    let (train, test) = (build("train"), build("test"));
    device.seed(1);
    let head = LinearHeadConfig::new(512, CLASSES)
        .try_init(device)
        .unwrap();
    let model = train.head_classifier(head, preprocess.clone()).unwrap();
    let config = FineTuneConfig::new()
        .with_epochs(30)
        .with_batch_size(50)
        .with_lr(1e-3)
        .with_progress(false);
    let outcome = FineTune::new(config, Frozen)
        .fit(model, &train, &test, device)
        .unwrap();
    outcome.best.unwrap().value
}

/// What users come for: a pretrained backbone lifts accuracy on a small real dataset. The
/// same architecture from random initialisation, trained the same way, is the control.
#[test]
fn pretrained_keras_vgg16_beats_random_init_on_fashion_mnist() {
    let _rng = crate::real_data::rng_lock();
    let Some(dir) = crate::real_data::dir() else {
        return;
    };
    let device = Device::flex();
    let r = Reference::load_file(&dir.join("fashion_mnist.safetensors"));
    let started = std::time::Instant::now();

    let pretrained = load_vgg_backbone_onnx(
        dir.join("vgg16_keras.onnx"),
        &VggConfig::vgg16(),
        Preprocess::caffe(),
        &device,
    )
    .unwrap();
    let pre = pretrained.preprocess.clone();
    let acc_pretrained = linear_probe(&pretrained, &pre, &r, &device);
    // the classic pipeline bug: the right weights fed torchvision's 0-1 normalisation
    let acc_wrong_preprocessing = linear_probe(&pretrained, &Preprocess::imagenet(), &r, &device);

    device.seed(7);
    let random = VggConfig::vgg16().init(&device);
    let acc_random = linear_probe(&random, &pre, &r, &device);

    let chance = 1.0 / CLASSES as f64;
    println!(
        "TRANSFER fashion-mnist (600 train / 400 test, 32x32, frozen VGG16 + linear head, 30 epochs): pretrained {:.1}%, pretrained with wrong preprocessing {:.1}%, random init {:.1}%, chance {:.1}% ({:.0} s)",
        100.0 * acc_pretrained,
        100.0 * acc_wrong_preprocessing,
        100.0 * acc_random,
        100.0 * chance,
        started.elapsed().as_secs_f64()
    );
    // Measured on this data: pretrained 73.0%, random init 11.2% (chance 10%). A loader that maps
    // weights wrongly gives random-like features, so the margin catches it.
    assert!(acc_pretrained >= 0.65, "pretrained only {acc_pretrained}");
    assert!(
        acc_pretrained >= acc_random + 0.30,
        "pretrained {acc_pretrained} vs random {acc_random}"
    );
    // Reported, not asserted: a linear probe on grey images is blind to the two classic
    // preprocessing bugs (channel order cannot matter for grey pixels, and a ReLU network
    // without BatchNorm is nearly scale-equivariant), so that number is about as high.
}
