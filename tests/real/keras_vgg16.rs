use burn::tensor::Device;
use grafter::zoo::{VggConfig, load_vgg_backbone_onnx};
use grafter::{Backbone, ChannelOrder, Preprocess};

use crate::fixtures::{Reference, host, max_rel_err};

/// The real Keras VGG16 conv base read from the tf2onnx file (NHWC input, a Transpose, a
/// custom dense/BatchNorm head that is ignored): features equal onnxruntime's.
#[test]
fn keras_vgg16_conv_base_matches_onnxruntime() {
    let _rng = crate::real_data::rng_lock();
    let Some(dir) = crate::real_data::dir() else {
        return;
    };
    let device = Device::flex();
    let vgg = load_vgg_backbone_onnx(
        dir.join("vgg16_keras.onnx"),
        &VggConfig::vgg16(),
        Preprocess::caffe(),
        &device,
    )
    .unwrap();
    assert_eq!(vgg.preprocess().channel_order, ChannelOrder::Bgr);
    assert_eq!(vgg.preprocess().pixel_scale, 255.0);
    let r = Reference::load_file(&dir.join("vgg16_keras_ref.safetensors"));
    let input = r.tensor4("input_nchw", &device);
    let features = host(vgg.forward_features(input));
    let err = max_rel_err(&features, &r.host("features").0);
    println!(
        "PARITY keras-vgg16 (real weights) onnx conv base features [2,512,7,7] max rel err {err:.3e}"
    );
    assert!(err <= 1e-4, "max rel err {err:e}");
}

/// The same real file through the generic ONNX path: the channels-last input transpose is
/// absorbed; with the cut named at Keras' last pooling, and with the automatic cut (past the
/// head's run-time-shaped flatten), features equal onnxruntime's.
#[test]
fn keras_vgg16_as_onnx_backbone_matches_onnxruntime() {
    let _rng = crate::real_data::rng_lock();
    use grafter::onnx::{CutPoint, OnnxBackbone, OnnxBackboneOptions};
    let Some(dir) = crate::real_data::dir() else {
        return;
    };
    let device = Device::flex();
    let options = OnnxBackboneOptions::default()
        .with_cut(CutPoint::Tensor(
            "functional_1/block5_pool_1/MaxPool2d:0".into(),
        ))
        .with_preprocess(Preprocess::caffe());
    let backbone = OnnxBackbone::load(dir.join("vgg16_keras.onnx"), &options, &device).unwrap();
    assert_eq!(backbone.feature_channels(), 512);
    assert_eq!(backbone.stages().len(), 5);
    assert_eq!(backbone.preprocess().channel_order, ChannelOrder::Bgr);
    let r = Reference::load_file(&dir.join("vgg16_keras_ref.safetensors"));
    let features = host(backbone.forward_features(r.tensor4("input_nchw", &device)));
    let err = max_rel_err(&features, &r.host("features").0);
    println!("PARITY keras-vgg16 (real weights) OnnxBackbone features max rel err {err:.3e}");
    assert!(err <= 1e-4, "max rel err {err:e}");

    // The automatic cut gets past Keras' head (its flatten computes its shape at run time,
    // in NHWC order) to the same last pooling.
    let auto = OnnxBackbone::load(
        dir.join("vgg16_keras.onnx"),
        &OnnxBackboneOptions::default().with_preprocess(Preprocess::caffe()),
        &device,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(auto.feature_channels(), 512);
    assert_eq!(auto.stages().len(), 5);
    assert!(auto.dropped_classifier().params > 0);
    let auto_features = host(auto.forward_features(r.tensor4("input_nchw", &device)));
    let err = max_rel_err(&auto_features, &r.host("features").0);
    println!("PARITY keras-vgg16 (real weights) automatic cut features max rel err {err:.3e}");
    assert!(err <= 1e-4, "automatic cut: max rel err {err:e}");
}
