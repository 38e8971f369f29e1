use burn::tensor::Device;
use grafter_core::Backbone;
use grafter_zoo::{ResNetConfig, VggConfig, load_resnet, load_vgg};

use crate::fixtures::{Reference, dir, host, max_rel_err};

const TOLERANCE: f64 = 1e-4;

fn check(model: &str, format: &str, what: &str, ours: Vec<f32>, reference: &[f32]) {
    let err = max_rel_err(&ours, reference);
    println!("PARITY {model:<10} {format:<11} {what:<20} max rel err {err:.3e}");
    assert!(err <= TOLERANCE, "{model} {what}: max rel err {err:e}");
}

/// A torchvision state dict (`format`: `safetensors` or `pth`) against onnxruntime.
pub fn resnet(name: &str, cfg: ResNetConfig, format: &str) {
    let Some(dir) = dir(name) else { return };
    let device = Device::flex();
    let model = load_resnet(dir.join(format!("{name}.{format}")), &cfg, 1000, &device).unwrap();
    let r = Reference::load(&dir);
    let input = r.tensor4("input", &device);
    check(
        name,
        format,
        "features",
        host(model.backbone.forward_features(input.clone())),
        &r.host("features").0,
    );
    check(
        name,
        format,
        "logits",
        host(model.forward(input)),
        &r.host("logits").0,
    );
    let ns = r.tensor4("input_nonsquare", &device);
    let feats = model.backbone.forward_features(ns);
    assert_eq!(feats.dims(), [1, cfg.feature_channels(), 5, 7]);
    check(
        name,
        format,
        "features 160x208",
        host(feats),
        &r.host("features_nonsquare").0,
    );
}

/// A torchvision state dict (`format`: `safetensors` or `pth`) against onnxruntime.
pub fn vgg(name: &str, cfg: VggConfig, format: &str) {
    let Some(dir) = dir(name) else { return };
    let device = Device::flex();
    let model = load_vgg(dir.join(format!("{name}.{format}")), &cfg, 1000, &device).unwrap();
    let r = Reference::load(&dir);
    let input = r.tensor4("input", &device);
    check(
        name,
        format,
        "features",
        host(model.backbone.forward_features(input.clone())),
        &r.host("features").0,
    );
    check(
        name,
        format,
        "logits",
        host(model.forward(input)),
        &r.host("logits").0,
    );
}

#[test]
fn resnet18_safetensors_matches_onnxruntime() {
    resnet("resnet18", ResNetConfig::resnet18(), "safetensors");
}

#[test]
fn resnet50_safetensors_matches_onnxruntime() {
    resnet("resnet50", ResNetConfig::resnet50(), "safetensors");
}

#[test]
fn vgg16_safetensors_matches_onnxruntime() {
    vgg("vgg16", VggConfig::vgg16(), "safetensors");
}
