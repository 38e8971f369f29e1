//! Export of the zoo's typed backbones (ResNet basic/bottleneck, VGG with and without
//! BatchNorm) and of VGG's original classifier head, checked against onnxruntime.
//!
//! The models are randomly initialised, and every BatchNorm gets non-trivial running
//! statistics and affine parameters, so the exported `BatchNormalization` nodes matter.
//! Without onnxruntime (no `GRAFTER_PYTHON` environment) the comparisons are SKIPPED, unless
//! `GRAFTER_REQUIRE_FIXTURES=1`.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::LinearConfig;
use burn::tensor::{Device, Distribution, Tensor};
use grafter::prelude::*;
use grafter::zoo::{ResNetConfig, VggConfig, VggHead};
use grafter::{LinearHead, LinearHeadConfig};
use grafter_onnx::{OnnxBackboneExport, OnnxError, OnnxHead, export_classifier};

use crate::export::ort_round_trip_hw;

const CLASSES: usize = 5;

/// Replaces BatchNorm running statistics and affine parameters (1, 0, 0, 1 at init) by
/// random values in a plausible range.
struct BnStats(Vec<String>, usize);

impl ModuleMapper for BnStats {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.0.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.0.pop();
    }
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dist = match self.0.last().map(String::as_str) {
            Some("running_var" | "gamma") => Distribution::Uniform(0.5, 1.5),
            Some("running_mean" | "beta") => Distribution::Normal(0.0, 0.1),
            _ => return p,
        };
        self.1 += 1;
        p.map(|t| Tensor::random(t.shape(), dist, &t.device()))
    }
}

/// `backbone` with randomised BatchNorms; checks that it has some exactly when `has_bn`.
fn with_bn_stats<B: Module>(backbone: B, has_bn: bool) -> B {
    let mut stats = BnStats(Vec::new(), 0);
    let backbone = backbone.map(&mut stats);
    assert_eq!(
        stats.1 > 0,
        has_bn,
        "{} BatchNorm tensors randomised",
        stats.1
    );
    backbone
}

fn linear_classifier<B: OnnxBackboneExport>(
    backbone: B,
    has_bn: bool,
    device: &Device,
) -> Classifier<B, LinearHead> {
    let backbone = with_bn_stats(backbone, has_bn);
    let head = LinearHeadConfig::new(backbone.feature_channels(), CLASSES)
        .try_init(device)
        .unwrap();
    Classifier::new(backbone, head).unwrap()
}

/// Exports `model`, runs the file in onnxruntime on every input size of `sizes` (one file:
/// the spatial axes are dynamic) and checks the logits against Burn's.
fn round_trip<B: OnnxBackboneExport, H: OnnxHead + Head>(
    name: &str,
    model: &Classifier<B, H>,
    sizes: &[[usize; 2]],
) {
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join(format!("{name}.onnx"));
    export_classifier(model, &onnx).unwrap();
    assert!(onnx.is_file());
    assert!(
        !onnx.with_extension("onnx.tmp").exists(),
        "temporary file left behind"
    );
    for &[h, w] in sizes {
        let Some(err) = ort_round_trip_hw(model, &onnx, [h, w]) else {
            return;
        };
        println!("PARITY {name} onnx-export logits ({h}x{w}) max rel err {err:.3e}");
        assert!(err <= 1e-4, "{name} {h}x{w}: max rel err {err:e}");
    }
}

#[test]
fn resnet18_basic_blocks_export_to_onnx() {
    let _l = crate::lock();
    let device = Device::flex();
    device.seed(11);
    let model = linear_classifier(ResNetConfig::resnet18().init(&device), true, &device);
    round_trip("resnet18", &model, &[[64, 64], [96, 80]]);
}

#[test]
fn resnet50_bottleneck_blocks_export_to_onnx() {
    let _l = crate::lock();
    let device = Device::flex();
    device.seed(12);
    let model = linear_classifier(ResNetConfig::resnet50().init(&device), true, &device);
    round_trip("resnet50", &model, &[[64, 64]]);
}

#[test]
fn resnet50_v1_stride_in_1x1_exports_to_onnx() {
    let _l = crate::lock();
    let device = Device::flex();
    device.seed(13);
    let cfg = ResNetConfig::resnet50().with_stride_in_1x1(true);
    let model = linear_classifier(cfg.init(&device), true, &device);
    round_trip("resnet50-v1", &model, &[[64, 64]]);
}

#[test]
fn vgg11_without_batch_norm_exports_to_onnx() {
    let _l = crate::lock();
    let device = Device::flex();
    device.seed(14);
    let cfg = VggConfig::depth(11, false).unwrap();
    let model = linear_classifier(cfg.init(&device), false, &device);
    round_trip("vgg11", &model, &[[32, 32], [64, 48]]);
}

#[test]
fn vgg11_bn_exports_to_onnx() {
    let _l = crate::lock();
    let device = Device::flex();
    device.seed(15);
    let cfg = VggConfig::depth(11, true).unwrap();
    let model = linear_classifier(cfg.init(&device), true, &device);
    round_trip("vgg11_bn", &model, &[[32, 32]]);
}

/// VGG's own classifier (adaptive avg-pool to 7×7 on any feature size, three Gemms),
/// narrowed to 32 hidden units to keep the test small.
#[test]
fn vgg_classifier_head_exports_to_onnx() {
    let _l = crate::lock();
    let device = Device::flex();
    device.seed(16);
    let backbone = with_bn_stats(VggConfig::depth(11, true).unwrap().init(&device), true);
    let mut head = VggHead::new(CLASSES, 0.5, &device);
    head.fc1 = LinearConfig::new(512 * 7 * 7, 32).init(&device);
    head.fc2 = LinearConfig::new(32, 32).init(&device);
    head.fc3 = LinearConfig::new(32, CLASSES).init(&device);
    let model = Classifier::new(backbone, head).unwrap();
    // features 1×1, 3×2 and 7×7: replicated, overlapping and exact 7×7 bins
    round_trip(
        "vgg11_bn+VggHead",
        &model,
        &[[32, 32], [96, 64], [224, 224]],
    );
}

#[test]
fn export_into_a_missing_directory_is_an_error_naming_the_path() {
    let _l = crate::lock();
    let device = Device::flex();
    device.seed(17);
    let model = linear_classifier(
        VggConfig::depth(11, false).unwrap().init(&device),
        false,
        &device,
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("no/such/dir/model.onnx");
    match export_classifier(&model, &path) {
        Err(err @ OnnxError::Io { .. }) => {
            let OnnxError::Io { path: p, .. } = &err else {
                unreachable!()
            };
            assert_eq!(p, &path);
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            println!("{msg}");
        }
        other => panic!(
            "expected an Io error naming {}, got {other:?}",
            path.display()
        ),
    }
    assert!(!path.exists());
}
