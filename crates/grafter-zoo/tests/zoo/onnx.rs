use burn::tensor::Device;
use std::path::Path;

use grafter_core::{Backbone, Classifier, Head};
use grafter_zoo::onnx_weights::OnnxWeights;
use grafter_zoo::{ResNetConfig, VggConfig, ZooError, load_resnet_onnx, load_vgg_onnx};
use onnx_ir::{Message, ModelProto};

use crate::fixtures::{Reference, dir, host, max_rel_err};

const TOLERANCE: f64 = 1e-4;

fn check(model: &str, variant: &str, what: &str, ours: Vec<f32>, reference: &[f32]) {
    let err = max_rel_err(&ours, reference);
    println!("PARITY {model:<10} onnx-{variant:<9} {what:<18} max rel err {err:.3e}");
    assert!(
        err <= TOLERANCE,
        "{model} {variant} {what}: max rel err {err:e}"
    );
}

/// Both exports: BatchNorm nodes present ("unfolded") and folded into the convolutions.
const VARIANTS: [(&str, &str); 2] = [("unfolded", ""), ("folded", "_folded")];

/// Loads the exports of `name` in `variants` with `load` and compares features and logits.
fn compare<B: Backbone, H: Head>(
    name: &str,
    variants: &[(&str, &str)],
    load: impl Fn(&Path) -> Classifier<B, H>,
) {
    let Some(dir) = dir(name) else { return };
    let device = Device::flex();
    let r = Reference::load(&dir);
    let input = r.tensor4("input", &device);
    for &(variant, suffix) in variants {
        let model = load(&dir.join(format!("{name}_{variant}.onnx")));
        let features = host(model.backbone.forward_features(input.clone()));
        let reference = r.host(&format!("features{suffix}")).0;
        check(name, variant, "features", features, &reference);
        let logits = host(model.forward(input.clone()));
        check(
            name,
            variant,
            "logits",
            logits,
            &r.host(&format!("logits{suffix}")).0,
        );
    }
}

fn resnet(name: &str, cfg: ResNetConfig) {
    compare(name, &VARIANTS, |p| {
        load_resnet_onnx(p, &cfg, &Device::flex()).unwrap()
    });
}

fn vgg(name: &str, cfg: VggConfig) {
    // Without BatchNorm the folded export is the unfolded one: the fixtures keep one graph.
    let variants = if cfg.batch_norm {
        &VARIANTS[..]
    } else {
        &VARIANTS[..1]
    };
    compare(name, variants, |p| {
        load_vgg_onnx(p, &cfg, &Device::flex()).unwrap()
    });
}

#[test]
fn resnet18_onnx_matches_onnxruntime() {
    resnet("resnet18", ResNetConfig::resnet18());
}

#[test]
fn resnet50_onnx_matches_onnxruntime() {
    resnet("resnet50", ResNetConfig::resnet50());
}

#[test]
fn vgg16_onnx_matches_onnxruntime() {
    vgg("vgg16", VggConfig::vgg16());
}

#[test]
fn vgg16_bn_onnx_matches_onnxruntime() {
    vgg("vgg16_bn", VggConfig::vgg16().with_batch_norm(true));
}

#[test]
fn onnx_of_another_architecture_is_a_typed_error() {
    let Some(dir) = dir("resnet50") else { return };
    let device = Device::flex();
    let err = load_resnet_onnx(
        dir.join("resnet50_folded.onnx"),
        &ResNetConfig::resnet18(),
        &device,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ZooError::Weights { .. }), "{msg}");
    assert!(
        msg.contains("resnet50_folded.onnx") && msg.contains("expected"),
        "{msg}"
    );
    // a VGG without BatchNorm cannot take a graph that has BatchNorm
    let Some(bn) = crate::fixtures::dir("vgg16_bn") else {
        return;
    };
    let err = load_vgg_onnx(
        bn.join("vgg16_bn_unfolded.onnx"),
        &VggConfig::vgg16(),
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("BatchNorm"), "{err}");
}

#[test]
fn unsupported_truncated_and_random_files_are_typed_errors() {
    let Some(dir) = dir("resnet18") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(dir.join("resnet18_unfolded.onnx")).unwrap();

    // an operator a ResNet/VGG import does not know, twice
    let mut model = ModelProto::parse_from_bytes(&bytes).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let mut replaced = 0;
    for node in graph
        .node
        .iter_mut()
        .filter(|n| n.op_type == "Relu")
        .take(2)
    {
        node.op_type = "Softsign".into();
        replaced += 1;
    }
    assert_eq!(replaced, 2);
    let odd = tmp.path().join("odd.onnx");
    std::fs::write(&odd, model.write_to_bytes().unwrap()).unwrap();
    let err = OnnxWeights::read(&odd).unwrap_err();
    assert!(err.to_string().contains("Softsign ×2"), "{err}");

    let truncated = tmp.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = OnnxWeights::read(&truncated).unwrap_err();
    assert!(
        matches!(err, ZooError::Weights { .. }) && err.to_string().contains("truncated.onnx"),
        "{err}"
    );

    let random = tmp.path().join("random.onnx");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&random, noise).unwrap();
    assert!(matches!(
        OnnxWeights::read(&random),
        Err(ZooError::Weights { .. })
    ));

    assert!(matches!(
        OnnxWeights::read(tmp.path().join("absent.onnx")),
        Err(ZooError::Io { .. })
    ));
}

#[test]
fn onnx_loaded_parameters_receive_gradients() {
    use burn::optim::GradientsParams;
    use burn::tensor::Tensor;
    let Some(dir) = dir("resnet18") else { return };
    let device = Device::flex();
    let model = load_resnet_onnx(
        dir.join("resnet18_folded.onnx"),
        &ResNetConfig::resnet18(),
        &device,
    )
    .unwrap();
    let model = model.for_training(&device);
    let x = Tensor::<4>::ones([1, 3, 64, 64], &device.autodiff());
    let grads = GradientsParams::from_grads(model.forward(x).sum().backward(), &model);
    assert!(
        grads.get::<4>(model.backbone.conv1.weight.id).is_some(),
        "stem conv got no gradient"
    );
    assert!(
        grads.get::<2>(model.head.linear.weight.id).is_some(),
        "fc got no gradient"
    );
    // every parameter tensor: 20 conv kernels, 20 BatchNorms × (γ, β), fc weight and bias
    // (running statistics are buffers, not parameters)
    assert_eq!(grads.len(), 20 + 40 + 2);
}

/// Shortens the initializer named `name` of `model` to `len` float values.
fn shorten_initializer(model: &mut ModelProto, name: &str, len: usize) {
    let graph = model.graph.as_mut().unwrap();
    let t = graph
        .initializer
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no initializer {name}"));
    t.dims = vec![len as i64];
    if t.raw_data.is_empty() {
        t.float_data.truncate(len);
    } else {
        t.raw_data.truncate(len * 4);
    }
}

#[test]
fn batchnorm_and_bias_lengths_that_do_not_match_the_channels_fail_at_load() {
    let Some(dir) = dir("resnet18") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let device = Device::flex();
    // (export, op whose input to shorten, input index, what the error must say)
    for (variant, op, input, says) in [
        (
            "unfolded",
            "BatchNormalization",
            3,
            "BatchNorm running mean",
        ),
        ("folded", "Conv", 2, "bias"),
    ] {
        let bytes = std::fs::read(dir.join(format!("resnet18_{variant}.onnx"))).unwrap();
        let mut model = ModelProto::parse_from_bytes(&bytes).unwrap();
        let name = model
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .find(|n| n.op_type == op)
            .unwrap()
            .input[input]
            .clone();
        shorten_initializer(&mut model, &name, 63);
        let path = tmp.path().join(format!("short_{variant}.onnx"));
        std::fs::write(&path, model.write_to_bytes().unwrap()).unwrap();
        let err = match load_resnet_onnx(&path, &ResNetConfig::resnet18(), &device) {
            Ok(_) => panic!("{variant}: a 63-value {op} input for 64 channels loaded"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(matches!(err, ZooError::Weights { .. }), "{msg}");
        assert!(
            msg.contains(&format!("short_{variant}.onnx"))
                && msg.contains(says)
                && msg.contains("63"),
            "{msg}"
        );
        println!("REFUSED {msg}");
    }
}
