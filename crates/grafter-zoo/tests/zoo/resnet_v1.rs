//! ResNet-50 v1 (stride on the first 1×1 conv of a downsampling bottleneck, as MXNet, Caffe and
//! the ONNX Model Zoo's `resnet50-v1-7`) from ONNX, against onnxruntime on the `resnet50_v1`
//! fixture, which is exported in MXNet's order: each projection shortcut before its block's
//! main branch.

use burn::tensor::Device;
use grafter_core::Backbone;
use grafter_zoo::{ResNetConfig, ZooError, load_resnet_onnx};

use crate::fixtures::{Reference, dir, host, max_rel_err};

const MODEL: &str = "resnet50_v1";
const TOLERANCE: f64 = 1e-4;
/// Loaded with v1.5 strides, a v1 graph must be refused (a typed error) or visibly wrong,
/// never nearly right. make_fixtures.py measures the v1.5-strided graph of the same weights
/// against the reference: max rel err 6.7e-2 (logits), 2.3e-1 (features).
const MISMATCH: f64 = 1e-2;

/// Both exports: BatchNorm nodes present ("unfolded") and folded into the convolutions.
const VARIANTS: [(&str, &str); 2] = [("unfolded", ""), ("folded", "_folded")];

fn v1() -> ResNetConfig {
    ResNetConfig::resnet50().with_stride_in_1x1(true)
}

#[test]
fn resnet50_v1_onnx_matches_onnxruntime() {
    let Some(dir) = dir(MODEL) else { return };
    let device = Device::flex();
    let r = Reference::load(&dir);
    let input = r.tensor4("input", &device);
    for (variant, suffix) in VARIANTS {
        let path = dir.join(format!("{MODEL}_{variant}.onnx"));
        let model = load_resnet_onnx(&path, &v1(), &device)
            .unwrap_or_else(|e| panic!("{MODEL} {variant}: {e}"));
        let outputs = [
            (
                "features",
                host(model.backbone.forward_features(input.clone())),
            ),
            ("logits", host(model.forward(input.clone()))),
        ];
        for (what, ours) in outputs {
            let err = max_rel_err(&ours, &r.host(&format!("{what}{suffix}")).0);
            println!("PARITY {MODEL} onnx-{variant:<9} {what:<8} max rel err {err:.3e}");
            assert!(
                err <= TOLERANCE,
                "{MODEL} {variant} {what}: max rel err {err:e}"
            );
        }
    }
}

#[test]
fn resnet50_v1_onnx_into_v1_5_config_is_refused_or_differs() {
    let Some(dir) = dir(MODEL) else { return };
    let device = Device::flex();
    let r = Reference::load(&dir);
    let input = r.tensor4("input", &device);
    for (variant, suffix) in VARIANTS {
        let path = dir.join(format!("{MODEL}_{variant}.onnx"));
        match load_resnet_onnx(&path, &ResNetConfig::resnet50(), &device) {
            Err(e) => {
                println!("V1.5-CONFIG {MODEL} onnx-{variant:<9} refused: {e}");
                assert!(matches!(e, ZooError::Weights { .. }), "{e}");
            }
            Ok(model) => {
                let logits = host(model.forward(input.clone()));
                let err = max_rel_err(&logits, &r.host(&format!("logits{suffix}")).0);
                println!("V1.5-CONFIG {MODEL} onnx-{variant:<9} logits max rel err {err:.3e}");
                assert!(
                    err > MISMATCH,
                    "{MODEL} {variant} loaded with v1.5 strides nearly matches v1 ({err:e})"
                );
            }
        }
    }
}
