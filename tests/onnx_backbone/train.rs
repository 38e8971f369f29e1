use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use grafter::prelude::*;
use grafter::source::InMemoryDataset;
use grafter::{LinearHead, LinearHeadConfig};
use grafter_onnx::{OnnxBackbone, OnnxBackboneOptions};

use crate::params::params;

pub const SIDE: usize = 64;
pub const CLASSES: usize = 3;

/// SqueezeNet-1.1 (the smallest fixture) with a fresh linear head.
pub fn classifier(device: &Device) -> Option<Classifier<OnnxBackbone, LinearHead>> {
    let file = crate::model_file("squeezenet1_1")?;
    let opts = OnnxBackboneOptions::default()
        .with_preprocess(Preprocess::imagenet().with_input_size(SIDE, SIDE));
    let backbone = OnnxBackbone::load(file, &opts, device).unwrap();
    device.seed(3);
    let head = LinearHeadConfig::new(backbone.feature_channels(), CLASSES)
        .try_init(device)
        .unwrap();
    Some(Classifier::new(backbone, head).unwrap())
}

pub fn dataset(n: usize, seed: u64) -> InMemoryDataset {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut images = Vec::with_capacity(n * 3 * SIDE * SIDE);
    let mut labels = Vec::new();
    for i in 0..n {
        for _ in 0..3 * SIDE * SIDE {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            images.push(
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0 + (i % CLASSES) as f32,
            );
        }
        labels.push(i % CLASSES);
    }
    InMemoryDataset::new(images, [3, SIDE, SIDE], labels, CLASSES).unwrap()
}

pub fn config(epochs: usize) -> FineTuneConfig {
    FineTuneConfig::new()
        .with_epochs(epochs)
        .with_batch_size(6)
        .with_lr(1e-2)
        .with_progress(false)
}

/// Every convolution, BatchNorm and fully connected weight of the imported graphs gets a
/// non-zero gradient (running statistics are not parameters and are skipped), through
/// Resize, Tile, Pow and the reductions in `resample_mix`.
#[test]
fn gradients_reach_every_imported_parameter() {
    let _l = crate::lock();
    let device = Device::flex();
    for (model, params) in [
        ("squeezenet1_1", 50),
        ("mobilenet_v2", 156),
        ("resample_mix", 6),
    ] {
        let Some(file) = crate::model_file(model) else {
            return;
        };
        let backbone = OnnxBackbone::load(file, &OnnxBackboneOptions::default(), &device).unwrap();
        device.seed(3);
        let head = LinearHeadConfig::new(backbone.feature_channels(), CLASSES)
            .try_init(&device)
            .unwrap();
        let model_k = Classifier::new(backbone, head).unwrap();
        let ad = device.clone().autodiff();
        let model_k = model_k.fork(&ad).train();
        let x = Tensor::<4>::random([2, 3, SIDE, SIDE], burn::tensor::Distribution::Default, &ad);
        let grads = model_k.forward(x).powi_scalar(2).sum().backward();
        let grads = GradientsParams::from_grads(grads, &model_k);
        struct Check<'a>(&'a GradientsParams, Vec<String>, usize, Vec<String>);
        impl ModuleVisitor for Check<'_> {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.1.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.1.pop();
            }
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                let path = self.1.join(".");
                if path.contains("running_") {
                    return;
                }
                self.2 += 1;
                match self.0.get::<D>(p.id) {
                    Some(g) if g.clone().abs().sum().into_scalar::<f32>() > 0.0 => {}
                    _ => self.3.push(path),
                }
            }
        }
        let mut check = Check(&grads, Vec::new(), 0, Vec::new());
        model_k.backbone.visit(&mut check);
        println!(
            "{model}: backbone parameters with a gradient: {}/{}",
            check.2 - check.3.len(),
            check.2
        );
        assert_eq!(check.2, params, "{model}: parameters visited");
        assert!(check.3.is_empty(), "{model}: no gradient for {:?}", check.3);
    }
}

#[test]
fn frozen_stages_stay_bit_identical_including_batchnorm_statistics() {
    let _l = crate::lock();
    let device = Device::flex();
    // MobileNetV2 has BatchNorm; squeezenet has none.
    let Some(file) = crate::model_file("mobilenet_v2") else {
        return;
    };
    let opts = OnnxBackboneOptions::default()
        .with_preprocess(Preprocess::imagenet().with_input_size(SIDE, SIDE));
    let backbone = OnnxBackbone::load(file, &opts, &device).unwrap();
    let stages = backbone.stages();
    let frozen_stages = stages[..2].to_vec();
    device.seed(4);
    let head = LinearHeadConfig::new(backbone.feature_channels(), CLASSES)
        .try_init(&device)
        .unwrap();
    let model = Classifier::new(backbone, head).unwrap();
    // which parameter paths belong to the first two stages: by id
    let ids = param_ids(&model);
    let before = params(&model);
    let outcome = FineTune::new(config(1), FreezeFirst(2))
        .fit(model, &dataset(6, 1), &dataset(3, 2), &device)
        .unwrap();
    let after = params(&outcome.model);
    let (mut frozen, mut moved, mut frozen_stats) = (0, 0, 0);
    for (((name, a), (_, b)), id) in before.iter().zip(&after).zip(&ids) {
        if frozen_stages.iter().any(|s| s.params.matches(id, None)) {
            assert!(a == b, "frozen {name} changed");
            frozen += 1;
            frozen_stats += name.contains("running_") as usize;
        } else if a != b {
            moved += 1;
        }
    }
    println!(
        "frozen tensors unchanged: {frozen} (BN statistics: {frozen_stats}); trained tensors moved: {moved}"
    );
    assert!(
        frozen_stats >= 2,
        "BN statistics must be among the frozen tensors"
    );
    assert!(moved > 10);
}

fn param_ids<M: Module>(module: &M) -> Vec<burn::module::ParamId> {
    struct Ids(Vec<burn::module::ParamId>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.id);
        }
    }
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
    ids.0
}
