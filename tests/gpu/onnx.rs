//! The ONNX backbone, the automatic feature cache and ONNX export on wgpu: an imported graph
//! computes what it computes on flex, a frozen-backbone fit on wgpu trains its head from
//! cached features, and the model trained on wgpu exports to an ONNX file that flex reads
//! back to the same logits.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use grafter::LinearHeadConfig;
use grafter::feature_cache::FeatureCacheUse;
use grafter::onnx::{CutPoint, OnnxBackbone, OnnxBackboneOptions, export_classifier};
use grafter::prelude::*;

use crate::adapter::{secs, serial, wgpu};
use crate::fixtures::{dir, host, max_rel_err};

const SIDE: usize = 64;
const CLASSES: usize = 3;

/// `n` noisy 64×64 images whose mean brightness gives the class.
fn dataset(n: usize, seed: u64) -> InMemoryDataset {
    let device = Device::flex();
    device.seed(seed);
    let noise = Tensor::<4>::random(
        [n, 3, SIDE, SIDE],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let mut images = host(noise);
    let per_image = 3 * SIDE * SIDE;
    for (i, image) in images.chunks_mut(per_image).enumerate() {
        image.iter_mut().for_each(|v| *v += (i % CLASSES) as f32);
    }
    let labels = (0..n).map(|i| i % CLASSES).collect();
    InMemoryDataset::new(images, [3, SIDE, SIDE], labels, CLASSES).unwrap()
}

fn on(device: &Device, x: &Tensor<4>) -> Tensor<4> {
    Tensor::from_data(x.to_data(), device)
}

#[test]
fn onnx_backbone_feature_cache_and_export_on_wgpu() {
    let _serial = serial();
    let Some(gpu) = wgpu() else { return };
    let Some(dir) = dir("squeezenet1_1") else {
        return;
    };
    let file = dir.join("squeezenet1_1.onnx");
    let cpu = Device::flex();
    let opts = OnnxBackboneOptions::default()
        .with_preprocess(Preprocess::imagenet().with_input_size(SIDE, SIDE));

    // the imported graph on wgpu computes what it computes on flex
    let on_gpu = OnnxBackbone::load(&file, &opts, &gpu).unwrap();
    let on_cpu = OnnxBackbone::load(&file, &opts, &cpu).unwrap();
    cpu.seed(1);
    let x = Tensor::<4>::random([2, 3, SIDE, SIDE], Distribution::Default, &cpu);
    let err = max_rel_err(
        &host(on_gpu.forward_features(on(&gpu, &x))),
        &host(on_cpu.forward_features(x.clone())),
    );
    println!("PARITY squeezenet1_1 onnx-backbone features wgpu vs flex max rel err {err:.3e}");
    assert!(err <= 1e-4, "wgpu vs flex: {err:e}");

    // a frozen-backbone fit on wgpu takes the feature cache and trains the head
    gpu.seed(3);
    let head = LinearHeadConfig::new(on_gpu.feature_channels(), CLASSES)
        .try_init(&gpu)
        .unwrap();
    let model = Classifier::new(on_gpu, head).unwrap();
    let (train, valid) = (dataset(24, 1), dataset(9, 2));
    let fine_tune = FineTune::new(
        FineTuneConfig::new()
            .with_epochs(4)
            .with_batch_size(6)
            .with_lr(1e-2)
            .with_progress(false),
        Frozen,
    );
    assert_eq!(
        fine_tune.feature_cache_use(&model, &train, &valid).unwrap(),
        FeatureCacheUse::On
    );
    let t = Instant::now();
    let outcome = fine_tune.fit(model, &train, &valid, &gpu).unwrap();
    let losses: Vec<f64> = outcome.history.iter().map(|r| r.train.loss).collect();
    println!(
        "TIMING squeezenet1_1 frozen fit (feature cache) on wgpu: {:.2}s; train loss {losses:?}",
        secs(t)
    );
    assert!(losses[3] < losses[0], "the head did not learn: {losses:?}");

    // exported from wgpu, read back on flex: the same logits
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join("trained_on_wgpu.onnx");
    export_classifier(&outcome.model, &onnx).unwrap();
    let back = OnnxBackbone::load(
        &onnx,
        &OnnxBackboneOptions::default().with_cut(CutPoint::Full),
        &cpu,
    )
    .unwrap();
    let err = max_rel_err(
        &host(back.forward_value(x.clone()).into_rank2()),
        &host(outcome.model.forward(on(&gpu, &x))),
    );
    println!("PARITY squeezenet1_1 exported from wgpu, run on flex: logits max rel err {err:.3e}");
    assert!(err <= 1e-4, "export from wgpu: {err:e}");
}
