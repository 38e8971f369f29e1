use std::path::PathBuf;
use std::process::Command;

use burn::tensor::{Device, Tensor, TensorData};
use grafter::prelude::*;
use grafter_onnx::{OnnxBackbone, OnnxBackboneOptions, export_classifier};

use crate::fixtures::{host, max_rel_err};
use crate::train::{SIDE, classifier, config, dataset};

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GRAFTER_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        "python3".into()
    }
}

#[test]
fn fine_tuned_model_exports_to_onnx_that_onnxruntime_runs() {
    let _l = crate::lock();
    let device = Device::flex();
    let Some(model) = classifier(&device) else {
        return;
    };
    let outcome = FineTune::new(config(1), TrainAll)
        .fit(model, &dataset(6, 5), &dataset(3, 6), &device)
        .unwrap();
    let model = outcome.model;
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join("finetuned.onnx");
    export_classifier(&model, &onnx).unwrap();

    let Some(err) = ort_round_trip(&model, &onnx, SIDE) else {
        return;
    };
    println!("PARITY squeezenet1_1 onnx-export logits (fine-tuned) max rel err {err:.3e}");
    assert!(err <= 1e-4, "export round trip: max rel err {err:e}");

    // and the exported file is read back by this crate
    let back = OnnxBackbone::load(&onnx, &OnnxBackboneOptions::default(), &device).unwrap();
    assert_eq!(back.feature_channels(), model.backbone.feature_channels());
    let xs = Tensor::<4>::from_data(
        TensorData::new(vec![0.5f32; 3 * SIDE * SIDE], [1, 3, SIDE, SIDE]),
        &device,
    );
    let err = max_rel_err(
        &host(back.forward_features(xs.clone())),
        &host(model.backbone.forward_features(xs)),
    );
    assert!(err <= 1e-5, "reloaded export differs: {err:e}");
}

/// Runs the exported file in onnxruntime on a random batch of 3 and returns the max relative
/// error against `model`'s own logits; `None` (SKIPPED) when onnxruntime is not available.
pub fn ort_round_trip<B: grafter::Backbone, H: grafter::Head>(
    model: &Classifier<B, H>,
    onnx: &std::path::Path,
    side: usize,
) -> Option<f64> {
    ort_round_trip_hw(model, onnx, [side, side])
}

/// [`ort_round_trip`] on a (possibly non-square) `[height, width]` input.
pub fn ort_round_trip_hw<B: grafter::Backbone, H: grafter::Head>(
    model: &Classifier<B, H>,
    onnx: &std::path::Path,
    [height, width]: [usize; 2],
) -> Option<f64> {
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();
    let n = 3;
    let x = Tensor::<4>::random(
        [n, 3, height, width],
        burn::tensor::Distribution::Default,
        &device,
    );
    let ours = host(model.forward(x.clone()));
    let input = tmp.path().join("input.f32");
    let bytes: Vec<u8> = host(x).iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).unwrap();
    let out = tmp.path().join("logits.f32");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run_onnx.py");
    let status = Command::new(python())
        .arg(&script)
        .arg(onnx)
        .arg(&input)
        .args([n, 3, height, width].map(|d| d.to_string()))
        .arg(&out)
        .output();
    let result = match status {
        Ok(o) if o.status.success() => o,
        other => {
            let msg = format!("onnxruntime could not run the export: {other:?}");
            crate::skip::skip_unless_required("GRAFTER_REQUIRE_FIXTURES", &msg);
            return None;
        }
    };
    print!("{}", String::from_utf8_lossy(&result.stdout));
    let theirs: Vec<f32> = std::fs::read(&out)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some(max_rel_err(&ours, &theirs))
}
