//! Real Keras applications exported by tf2onnx (tests/fixtures/make_keras_fixtures.py):
//! `keras.applications.EfficientNetB0` and `ResNet50` with random weights, NHWC input with a
//! dynamic batch and size. What they carry that torch's exports do not: preprocessing layers
//! before the transpose to NCHW, BatchNorm folded into the convolutions, `SAME_UPPER` and
//! asymmetric padding, a `Pad` before a valid convolution, and a MatMul + Add classifier.
//! Logits of the full graph and the automatic cut's features against onnxruntime at two batch
//! sizes at 224 px and a third batch at 160 px; gradients reach every trainable parameter (and
//! only those: the in-model preprocessing stays fixed); the cut backbone exports back to ONNX.
//!
//! Fixtures come from `GRAFTER_KERAS_FIXTURES`; unset, every test is recorded as SKIPPED (with
//! `GRAFTER_REQUIRE_KERAS_FIXTURES=1` a missing fixture fails instead).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use grafter_onnx::{OnnxBackbone, OnnxBackboneOptions};

use crate::torch_exports::{Fixtures, fixture_dir, gradients_of, parity_of};

const KERAS: Fixtures = Fixtures {
    var: "GRAFTER_KERAS_FIXTURES",
    require: "GRAFTER_REQUIRE_KERAS_FIXTURES",
    script: "tests/fixtures/make_keras_fixtures.py",
};

/// Rescaling and Normalization on the NHWC image, depthwise convolutions with `SAME_UPPER`,
/// swish, squeeze-excitation (GlobalAveragePool → Squeeze → Reshape → 1×1 Conv); the cut is
/// `top_activation`.
#[test]
fn keras_efficientnetb0_tf2onnx_export_matches_onnxruntime() {
    parity_of(&KERAS, "keras_efficientnetb0", None, true);
}

#[test]
fn keras_efficientnetb0_tf2onnx_export_gradients_reach_every_parameter() {
    gradients_of(&KERAS, "keras_efficientnetb0");
}

/// ZeroPadding2D as `Pad` before the stem, the stem's max pool, bottleneck blocks with folded
/// BatchNorm; the cut is `conv5_block3_out`.
#[test]
fn keras_resnet50_tf2onnx_export_matches_onnxruntime() {
    parity_of(&KERAS, "keras_resnet50", None, true);
}

#[test]
fn keras_resnet50_tf2onnx_export_gradients_reach_every_parameter() {
    gradients_of(&KERAS, "keras_resnet50");
}

/// The automatically cut backbone of an export (`None`: SKIPPED, fixtures not made).
fn cut_backbone(name: &str, device: &Device) -> Option<OnnxBackbone> {
    let dir = fixture_dir(&KERAS, name)?;
    let file = dir.join(format!("{name}.onnx"));
    Some(
        OnnxBackbone::load(&file, &OnnxBackboneOptions::default(), device)
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// EfficientNet's Rescaling and Normalization run inside the graph on the image, with Keras'
/// fixed statistics: they are not trained (Keras does not train them either), so the trainable
/// parameters are exactly every convolution's weight and bias (BatchNorm is folded into them
/// by tf2onnx; every bias is kept, the fixtures randomise them).
#[test]
fn keras_efficientnetb0_preprocessing_constants_are_not_trained() {
    let device = Device::flex();
    let Some(backbone) = cut_backbone("keras_efficientnetb0", &device) else {
        return;
    };
    #[derive(Default)]
    struct Paths(Vec<String>, Vec<String>);
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
            self.1.push(self.0.join("."));
        }
    }
    let mut paths = Paths::default();
    backbone.visit(&mut paths);
    let constants: Vec<&String> = paths.1.iter().filter(|p| p.starts_with("params")).collect();
    assert!(constants.is_empty(), "trained constants: {constants:?}");
    assert_eq!(
        backbone.convs.len(),
        81,
        "EfficientNetB0's trunk has 81 convolutions"
    );
    assert_eq!(paths.1.len(), 2 * backbone.convs.len(), "{:?}", paths.1);
}

/// A classifier on each automatically cut Keras backbone is written back to ONNX (the
/// preprocessing now on NCHW with permuted constants, folded BatchNorm, resolved SAME pads)
/// and onnxruntime's logits match Burn's.
#[test]
fn keras_export_backbones_export_back_to_onnx_that_onnxruntime_runs() {
    for name in ["keras_efficientnetb0", "keras_resnet50"] {
        let lock = crate::lock();
        let device = Device::flex();
        let Some(backbone) = cut_backbone(name, &device) else {
            return;
        };
        crate::torch_exports::export_round_trip(name, backbone, &device, lock);
    }
}
