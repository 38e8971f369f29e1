//! The one-linear-layer model and state dict the weight-file fuzz targets load
//! (`fuzz_pth_zip.rs`, `fuzz_safetensors.rs`): small, so a case costs the file's reading alone.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Device;

use crate::fixtures::host;

/// The loaded model: `fc`, 4 inputs, 3 outputs (torch's `nn.Linear(4, 3)`).
#[derive(Module, Debug)]
pub struct Tiny {
    pub fc: Linear,
}

pub fn tiny(device: &Device) -> Tiny {
    Tiny {
        fc: LinearConfig::new(4, 3).init(device),
    }
}

/// The state dict's values: `fc.weight` [3, 4] (torch's layout) then `fc.bias` [3].
pub fn values() -> (Vec<f32>, Vec<f32>) {
    let weight = (0..12).map(|i| 0.25 * i as f32 - 1.0).collect();
    (weight, vec![0.5, -0.5, 2.0])
}

/// Whether `model` holds [`values`]: what a fuzz case that loaded is tallied as.
pub fn loaded_outcome(model: Tiny) -> &'static str {
    let (weight, bias) = values();
    let got_bias = host(model.fc.bias.unwrap().val());
    let got_weight = host(model.fc.weight.val().transpose());
    if got_weight == weight && got_bias == bias {
        "loaded"
    } else {
        "loaded_other_values"
    }
}
