//! Transfer learning on real pretrained weights and a real target set: the Keras VGG16
//! ImageNet conv base exported by tf2onnx (a third-party file, NHWC input), and Fashion-MNIST.
//! Data come from `tests/real/make_real_fixtures.py` (package registries, cached outside git).

#[path = "../support/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;
mod keras_vgg16;
mod mobilenet_sanity;
mod real_data;
mod recipes;
#[allow(dead_code)]
#[path = "../support/skip.rs"]
mod skip;
mod transfer;
#[path = "../support/workspace.rs"]
mod workspace;
