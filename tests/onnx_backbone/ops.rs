//! Every supported operator, on the small `ops_mix`, `resample_mix` and `upsample_v9` fixtures: parity of
//! the full graph and of the automatic cut with onnxruntime, and export of every op back to
//! ONNX.

use burn::tensor::Device;
use grafter::{Backbone, Classifier, MlpHeadConfig};
use grafter_onnx::{CutPoint, OnnxBackbone, OnnxBackboneOptions, export_classifier};

use crate::fixtures::{Reference, dir, host, max_rel_err};

#[test]
fn every_supported_operator_matches_onnxruntime_and_exports() {
    check("ops_mix", 16, 3, false);
}

/// Resize (nearest by scales, linear from a computed shape, linear with aligned corners to a
/// fixed size), Tile, Pow, ReduceSum and ReduceMax, in a feature-pyramid style graph.
#[test]
fn resampling_and_reduction_operators_match_onnxruntime_and_export() {
    check("resample_mix", 16, 3, false);
}

/// Upsample, the opset-9 operator Resize replaced (nearest by scales), in an opset-9 graph:
/// read as a Resize, matching onnxruntime, exported back as Resize.
#[test]
fn opset_9_upsample_matches_onnxruntime_and_exports_as_resize() {
    check("upsample_v9", 16, 3, false);
}

/// A channels-last (Keras / tf2onnx) input rescaled and normalised by per-channel
/// constants before its transpose to NCHW: the backbone takes NCHW and runs those steps on
/// it, matching onnxruntime fed the NHWC image.
#[test]
fn a_channels_last_input_preprocessed_before_its_transpose_matches_onnxruntime() {
    check("keras_nhwc", 16, 2, true);
}

/// The fixture `model`: the full graph and the automatic cut (`channels` wide, `stages`
/// stages) against onnxruntime, and an export with an MLP head read back by onnxruntime.
/// `nhwc`: the reference input is channels-last (the backbone is fed it as NCHW).
fn check(model: &str, channels: usize, stages: usize, nhwc: bool) {
    let Some(file) = crate::model_file(model) else {
        return;
    };
    let _l = crate::lock();
    let device = Device::flex();
    let r = Reference::load(&dir(model).unwrap());
    let input = r.tensor4("input", &device);
    let input = if nhwc {
        input.permute([0, 3, 1, 2])
    } else {
        input
    };

    let full = OnnxBackbone::load(
        &file,
        &OnnxBackboneOptions::default().with_cut(CutPoint::Full),
        &device,
    )
    .unwrap();
    let err = max_rel_err(
        &host(full.forward_value(input.clone()).into_rank2()),
        &r.host("logits").0,
    );
    println!("PARITY {model} onnx-backbone logits (full graph) max rel err {err:.3e}");
    assert!(err <= 1e-4);

    let cut = OnnxBackbone::load(&file, &OnnxBackboneOptions::default(), &device).unwrap();
    assert_eq!(cut.feature_channels(), channels);
    assert_eq!(cut.stages().len(), stages);
    let feats = host(cut.forward_features(input));
    let err = max_rel_err(&feats, &r.host("features").0);
    println!("PARITY {model} onnx-backbone features (auto cut) max rel err {err:.3e}");
    assert!(err <= 1e-4);

    device.seed(9);
    let head = MlpHeadConfig::new(channels, 4, vec![8])
        .with_batch_norm(true)
        .try_init(&device)
        .unwrap();
    let model_k = Classifier::new(cut, head).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join(format!("{model}_mlp.onnx"));
    export_classifier(&model_k, &onnx).unwrap();
    let Some(err) = crate::export::ort_round_trip(&model_k, &onnx, 16) else {
        return;
    };
    println!("PARITY {model} onnx-export logits (MLP head) max rel err {err:.3e}");
    assert!(err <= 1e-4);
}
