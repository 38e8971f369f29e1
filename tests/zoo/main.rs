//! The model zoo: architectures' shapes, parity of loaded weights with onnxruntime on the
//! project's random-weight fixtures, and typed errors for bad weight files.

mod errors;
mod feature_maps;
mod finetune;
mod fixtures;
mod fuzz_download;
#[allow(dead_code)]
#[path = "../support/fuzz_harness.rs"]
mod fuzz_harness;
mod fuzz_onnx_weights;
mod fuzz_pth;
mod fuzz_pth_zip;
mod fuzz_safetensors;
mod onnx;
#[path = "../support/onnx_mutation.rs"]
mod onnx_mutation;
mod parity;
mod pretrained;
mod pth;
mod registry;
mod resnet_v1;
mod shapes;
#[allow(dead_code)]
#[path = "../support/skip.rs"]
mod skip;
mod tiny_state_dict;
mod torch_save;
