use burn::tensor::Device;
use grafter::zoo::{VggConfig, load_vgg_backbone_onnx};
use grafter::{Backbone, ChannelOrder, Preprocess};

use crate::fixtures::{Reference, host, max_rel_err};

/// The real Keras VGG16 conv base read from the tf2onnx file (NHWC input, a Transpose, a
/// custom dense/BatchNorm head that is ignored): features equal onnxruntime's.
#[test]
fn keras_vgg16_conv_base_matches_onnxruntime() {
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
