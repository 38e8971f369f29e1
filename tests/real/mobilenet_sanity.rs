//! ImageNet sanity check: torchvision's MobileNetV2 with its real ImageNet-1k weights, read
//! through grafter-onnx's generic graph import (the whole graph, classifier included), names
//! real photos as onnxruntime does, with the same logits.

use burn::tensor::Device;
use grafter_onnx::{CutPoint, OnnxBackbone, OnnxBackboneOptions};
use safetensors::SafeTensors;

use crate::fixtures::{Reference, host, max_rel_err};

const CLASSES: usize = 1000;

fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exp: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap()
}

#[test]
fn mobilenet_v2_imagenet_classifies_real_photos() {
    let _rng = crate::real_data::rng_lock();
    let Some(dir) = crate::real_data::dir() else {
        return;
    };
    let device = Device::flex();
    let model = OnnxBackbone::load(
        dir.join("mobilenet_v2_imagenet.onnx"),
        &OnnxBackboneOptions::default().with_cut(CutPoint::Full),
        &device,
    )
    .unwrap();
    let path = dir.join("imagenet_photos.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let names: Vec<String> = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("photos"))
        .expect("photo names in the metadata")
        .split(',')
        .map(str::to_owned)
        .collect();
    let r = Reference::load_file(&path);
    let images = r.tensor4("images", &device);
    let (expected, _) = r.host("expected");
    let (reference, rshape) = r.host("ort_logits");
    assert_eq!(rshape, [names.len(), CLASSES]);
    assert_eq!(expected.len(), names.len());

    let logits = model.forward_value(images);
    assert_eq!(logits.shape(), [names.len(), CLASSES]);
    let logits = host(logits.into_rank2());
    for ((name, row), want) in names.iter().zip(logits.chunks(CLASSES)).zip(&expected) {
        let top = argmax(row);
        let p = softmax(row)[top];
        println!("SANITY {name} top1 {top} ({:.1}%)", 100.0 * p);
        assert_eq!(top, *want as usize, "{name}: top-1 {top}, expected {want}");
    }
    let err = max_rel_err(&logits, &reference);
    println!(
        "PARITY mobilenet_v2 (real weights) onnx full graph logits [{}, {CLASSES}] on real photos max rel err {err:.3e}",
        names.len()
    );
    assert!(err <= 1e-4, "max rel err {err:e}");
}
