//! Shared by the test binaries that compare with the reference fixtures: finds the fixtures
//! made by `tests/fixtures/make_fixtures.py` and reads their reference tensors.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::SafeTensors;

/// The fixture directory of `model`, or `None` (with a message) when fixtures were not made.
/// With `GRAFTER_REQUIRE_FIXTURES=1` (as in CI) a missing fixture fails the test instead.
pub fn dir(model: &str) -> Option<PathBuf> {
    let root = std::env::var_os("GRAFTER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace::root().join(".cache/fixtures"));
    let dir = root.join(model);
    if dir.join("meta.json").is_file() {
        return Some(dir);
    }
    let msg = format!(
        "fixtures for {model} not found in {}; make them with `python3 tests/fixtures/make_fixtures.py` (see tests/fixtures/README.md)",
        root.display()
    );
    crate::skip::skip_unless_required("GRAFTER_REQUIRE_FIXTURES", &msg);
    None
}

/// The tensors of `reference.safetensors`.
pub struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    pub fn load(dir: &std::path::Path) -> Self {
        Self::load_file(&dir.join("reference.safetensors"))
    }

    pub fn load_file(path: &std::path::Path) -> Self {
        Self {
            bytes: std::fs::read(path).unwrap(),
        }
    }

    pub fn host(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("no tensor {name}"));
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (v, t.shape().to_vec())
    }

    pub fn has(&self, name: &str) -> bool {
        SafeTensors::deserialize(&self.bytes)
            .unwrap()
            .tensor(name)
            .is_ok()
    }

    pub fn tensor4(&self, name: &str, device: &Device) -> Tensor<4> {
        let (v, s) = self.host(name);
        Tensor::from_data(TensorData::new(v, [s[0], s[1], s[2], s[3]]), device)
    }
}

/// max |a - b| / max |b| (the definition of tests/fixtures/make_fixtures.py).
pub fn max_rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| (*y as f64).abs()).fold(0.0, f64::max);
    diff / scale.max(f32::MIN_POSITIVE as f64)
}

pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}
