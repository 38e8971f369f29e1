//! resnet18 with the random-weight fixture: wgpu against onnxruntime and against flex.

use std::time::Instant;

use burn::tensor::Device;
use grafter::Backbone;
use grafter::zoo::{ResNetConfig, load_resnet};

use crate::adapter::{secs, serial, wgpu};
use crate::fixtures::{Reference, dir, host, max_rel_err};

const TOLERANCE: f64 = 1e-3;

struct Outputs {
    features: Vec<f32>,
    logits: Vec<f32>,
}

fn run(device: &Device, dir: &std::path::Path, r: &Reference, input: &str) -> Outputs {
    let t = Instant::now();
    let model = load_resnet(
        dir.join("resnet18.safetensors"),
        &ResNetConfig::resnet18(),
        1000,
        device,
    )
    .unwrap();
    let loaded = secs(t);
    let input = r.tensor4(input, device);
    let t = Instant::now();
    let features = host(model.backbone.forward_features(input.clone()));
    let first = secs(t);
    let t = Instant::now();
    let logits = host(model.forward(input));
    println!(
        "TIMING resnet18 {device:?}: load {loaded:.2}s, forward_features {first:.2}s (first call), forward {:.2}s",
        secs(t)
    );
    Outputs { features, logits }
}

fn check(what: &str, ours: &[f32], reference: &[f32]) -> f64 {
    let err = max_rel_err(ours, reference);
    println!("PARITY resnet18 {what:<40} max rel err {err:.3e}");
    err
}

fn parity(input: &str, suffix: &str) {
    let _serial = serial();
    let Some(device) = wgpu() else { return };
    let Some(dir) = dir("resnet18") else { return };
    let r = Reference::load(&dir);
    let gpu = run(&device, &dir, &r, input);
    let cpu = run(&Device::flex(), &dir, &r, input);
    let features = r.host(&format!("features{suffix}")).0;
    let logits = r.host(&format!("logits{suffix}")).0;
    let errs = [
        check(
            &format!("{input} wgpu features vs onnxruntime"),
            &gpu.features,
            &features,
        ),
        check(
            &format!("{input} wgpu logits vs onnxruntime"),
            &gpu.logits,
            &logits,
        ),
        check(
            &format!("{input} flex features vs onnxruntime"),
            &cpu.features,
            &features,
        ),
        check(
            &format!("{input} wgpu features vs flex"),
            &gpu.features,
            &cpu.features,
        ),
        check(
            &format!("{input} wgpu logits vs flex"),
            &gpu.logits,
            &cpu.logits,
        ),
    ];
    for err in errs {
        assert!(err <= TOLERANCE, "max rel err {err:e} > {TOLERANCE:e}");
    }
}

/// 1×3×160×208: the fixture's smallest input.
#[test]
fn resnet18_on_wgpu_matches_onnxruntime_and_flex_nonsquare() {
    parity("input_nonsquare", "_nonsquare");
}

/// 2×3×224×224.
#[test]
fn resnet18_on_wgpu_matches_onnxruntime_and_flex_224() {
    parity("input", "");
}
