//! The model zoo: architectures' shapes, parity of loaded weights with onnxruntime on the
//! project's random-weight fixtures, and typed errors for bad weight files.

mod errors;
mod feature_maps;
mod finetune;
#[path = "../../../../tests/support/fixtures.rs"]
mod fixtures;
mod fuzz_download;
#[allow(dead_code)]
#[path = "../../../../tests/support/fuzz_harness.rs"]
mod fuzz_harness;
mod fuzz_onnx_weights;
mod fuzz_pth;
mod fuzz_pth_zip;
mod fuzz_safetensors;
mod onnx;
#[path = "../../../../tests/support/onnx_mutation.rs"]
mod onnx_mutation;
mod parity;
mod pretrained;
mod pth;
mod registry;
mod resnet_v1;
mod shapes;
#[allow(dead_code)]
#[path = "../../../../tests/support/skip.rs"]
mod skip;
mod tiny_state_dict;
mod torch_save;
#[path = "../../../../tests/support/workspace.rs"]
mod workspace;
