use burn::tensor::Device;
use grafter::Backbone;
use grafter_onnx::{CutPoint, OnnxBackbone, OnnxBackboneOptions};

use crate::fixtures::{Reference, dir, host, max_rel_err};

const TOLERANCE: f64 = 1e-4;

fn check(model: &str, what: &str, ours: Vec<f32>, reference: &[f32]) {
    let err = max_rel_err(&ours, reference);
    println!("PARITY {model} onnx-backbone {what} max rel err {err:.3e}");
    assert!(err <= TOLERANCE, "{model} {what}: max rel err {err:e}");
}

fn parity(model: &str, stages: usize) {
    let Some(file) = crate::model_file(model) else {
        return;
    };
    let _l = crate::lock();
    let device = Device::flex();
    let r = Reference::load(&dir(model).unwrap());
    let input = r.tensor4("input", &device);

    let cut = OnnxBackbone::load(&file, &OnnxBackboneOptions::default(), &device).unwrap();
    let (_, fshape) = r.host("features");
    assert_eq!(cut.feature_channels(), fshape[1]);
    assert!(
        cut.dropped_classifier().params > 0,
        "{model}: no classifier dropped"
    );
    assert_eq!(cut.stages().len(), stages, "{model} stages");
    let feats = cut.forward_features(input.clone());
    assert_eq!(feats.dims().to_vec(), fshape);
    check(
        model,
        "features (auto cut)",
        host(feats),
        &r.host("features").0,
    );

    let full = OnnxBackbone::load(
        &file,
        &OnnxBackboneOptions::default().with_cut(CutPoint::Full),
        &device,
    )
    .unwrap();
    let logits = full.forward_value(input).into_rank2();
    check(
        model,
        "logits (full graph)",
        host(logits),
        &r.host("logits").0,
    );
}

#[test]
fn resnet18_matches_onnxruntime() {
    parity("resnet18", 5);
}

#[test]
fn vgg16_matches_onnxruntime() {
    parity("vgg16", 5);
}

#[test]
fn mobilenet_v2_matches_onnxruntime() {
    parity("mobilenet_v2", 5);
}

#[test]
fn squeezenet1_1_matches_onnxruntime() {
    parity("squeezenet1_1", 4);
}

#[test]
fn named_cut_point_matches_the_same_intermediate_tensor() {
    let model = "mobilenet_v2";
    let Some(file) = crate::model_file(model) else {
        return;
    };
    let _l = crate::lock();
    let dir = dir(model).unwrap();
    let meta: String = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    let key = "\"cut_tensor\": \"";
    let start = meta.find(key).unwrap() + key.len();
    let name = &meta[start..start + meta[start..].find('"').unwrap()];
    let device = Device::flex();
    let r = Reference::load(&dir);
    let b = OnnxBackbone::load(
        &file,
        &OnnxBackboneOptions::default().with_cut(CutPoint::Tensor(name.to_string())),
        &device,
    )
    .unwrap();
    let feats = b.forward_features(r.tensor4("input", &device));
    check(
        model,
        "features (named cut)",
        host(feats),
        &r.host("features").0,
    );
}
