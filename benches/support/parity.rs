//! `PARITY` lines for the comparison script: grafter's logits at batch 32 on torchvision's
//! weights against onnxruntime's, from the project's fixtures (`tests/fixtures/
//! make_fixtures.py` writes each model's weights and onnxruntime's logits for a few images to
//! `.cache/fixtures/<model>/`). The fixture batch is repeated to 32 images: an inference
//! forward treats images independently, so the reference logits repeat too, while grafter's
//! kernels run with the blocking and threading of a batch-32 forward.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use grafter::zoo::{ResNetConfig, VggConfig, load_resnet, load_vgg};
use safetensors::SafeTensors;

const BATCH: usize = 32;

/// Prints one `PARITY model=… batch=32 max_rel_err=…` line per model whose fixture exists,
/// and `PARITY model=… skipped=…` for the others.
pub fn print_parity(device: &Device) {
    for model in ["resnet18", "resnet50", "vgg16"] {
        let dir = PathBuf::from(".cache/fixtures").join(model);
        match parity(model, &dir, device) {
            Ok(err) => println!(
                "PARITY model={model} batch={BATCH} max_rel_err={err:.3e} reference=onnxruntime"
            ),
            Err(why) => println!("PARITY model={model} skipped=\"{why}\""),
        }
    }
}

fn parity(model: &str, dir: &Path, device: &Device) -> Result<f64, String> {
    let weights = dir.join(format!("{model}.safetensors"));
    let bytes = std::fs::read(dir.join("reference.safetensors"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let reference = SafeTensors::deserialize(&bytes).map_err(|e| e.to_string())?;
    let (input, shape) = host(&reference, "input")?;
    let (logits, _) = host(&reference, "logits")?;
    let n = shape[0];
    let input = Tensor::<4>::from_data(
        TensorData::new(input, [n, shape[1], shape[2], shape[3]]),
        device,
    );
    let images = Tensor::cat(vec![input; BATCH.div_ceil(n)], 0).narrow(0, 0, BATCH);
    let ours: Vec<f32> = match model {
        "vgg16" => {
            let m =
                load_vgg(&weights, &VggConfig::vgg16(), 1000, device).map_err(|e| e.to_string())?;
            host_tensor(m.forward(images))
        }
        _ => {
            let cfg = if model == "resnet50" {
                ResNetConfig::resnet50()
            } else {
                ResNetConfig::resnet18()
            };
            let m = load_resnet(&weights, &cfg, 1000, device).map_err(|e| e.to_string())?;
            host_tensor(m.forward(images))
        }
    };
    let per_image = logits.len() / n;
    let expected: Vec<f32> = (0..BATCH)
        .flat_map(|i| logits[(i % n) * per_image..][..per_image].iter().copied())
        .collect();
    Ok(max_rel_err(&ours, &expected))
}

fn host(st: &SafeTensors<'_>, name: &str) -> Result<(Vec<f32>, Vec<usize>), String> {
    let t = st.tensor(name).map_err(|e| format!("{name}: {e}"))?;
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((values, t.shape().to_vec()))
}

fn host_tensor(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// max |a − b| / max |b|
fn max_rel_err(a: &[f32], b: &[f32]) -> f64 {
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| (*y as f64).abs()).fold(0.0, f64::max);
    diff / scale.max(f64::MIN_POSITIVE)
}
