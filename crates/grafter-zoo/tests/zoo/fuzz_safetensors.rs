//! Fuzzing of `.safetensors` loading (`grafter_zoo::torchvision::load_state_dict`, the path
//! every safetensors weight file takes: burn-store's reader over the `safetensors` crate). A
//! two-tensor state dict has its JSON header mutated field by field — a dtype swapped, a shape
//! dimension or a data offset set to an edge value (zero, off by one, doubled, the file's
//! length, 2^32, 2^63), an entry or a field dropped, a key renamed — and its 8-byte header
//! length set right or to an edge value; a third of the cases are byte mutations instead.
//! Every case must load or be refused with an error naming the file, within the harness's
//! memory limit and timeout (tests/support/fuzz_harness.rs). 2000 cases in the test command.

use std::path::Path;

use burn::tensor::Device;
use grafter_zoo::torchvision::load_state_dict;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

use crate::fixtures::host;
use crate::fuzz_harness::{Target, drive, mutate};
use crate::tiny_state_dict::{loaded_outcome, tiny, values};

/// A safetensors file: header length, JSON header, data.
fn file(header: &Value, header_len: Option<u64>, data: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).unwrap();
    let mut out = header_len
        .unwrap_or(json.len() as u64)
        .to_le_bytes()
        .to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

fn header() -> Value {
    json!({
        "fc.weight": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
        "fc.bias": {"dtype": "F32", "shape": [3], "data_offsets": [48, 60]},
        "__metadata__": {"format": "pt"},
    })
}

fn data() -> Vec<u8> {
    let (weight, bias) = values();
    weight
        .iter()
        .chain(&bias)
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

fn seeds(_: &Path) -> Vec<Vec<u8>> {
    vec![file(&header(), None, &data())]
}

/// Edge values for a size or offset near `old` in a file of `len` bytes.
fn edge(old: u64, len: u64, rng: &mut StdRng) -> u64 {
    *[
        0,
        1,
        old.wrapping_add(1),
        old.wrapping_sub(1),
        old.wrapping_mul(2),
        len,
        1 << 32,
        1 << 63,
        u64::MAX,
        rng.random_range(0..1 << 20),
    ]
    .choose(rng)
    .unwrap()
}

/// Mutates the header's fields (two cases in three), or the file's bytes.
fn mutate_header(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    if rng.random_range(0..3) == 0 {
        return mutate(seed, rng);
    }
    let len = seed.len() as u64;
    let mut h = header();
    for _ in 0..rng.random_range(1..=3) {
        let key = *["fc.weight", "fc.bias", "__metadata__"]
            .choose(rng)
            .unwrap();
        let map = h.as_object_mut().unwrap();
        match rng.random_range(0..7) {
            0 => {
                map.remove(key);
            }
            1 => {
                if let Some(v) = map.remove(key) {
                    map.insert(format!("{key}x"), v);
                }
            }
            _ => {
                let Some(entry) = map.get_mut(key).and_then(Value::as_object_mut) else {
                    continue;
                };
                match rng.random_range(0..5) {
                    0 => {
                        let dtype = ["F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "X"];
                        entry.insert("dtype".into(), json!(dtype.choose(rng).unwrap()));
                    }
                    1 | 2 => {
                        let field = if rng.random() {
                            "shape"
                        } else {
                            "data_offsets"
                        };
                        if let Some(list) = entry.get_mut(field).and_then(Value::as_array_mut) {
                            match rng.random_range(0..4) {
                                0 => list.push(json!(edge(1, len, rng))),
                                1 => {
                                    list.pop();
                                }
                                _ if !list.is_empty() => {
                                    let i = rng.random_range(0..list.len());
                                    let old = list[i].as_u64().unwrap_or(0);
                                    list[i] = json!(edge(old, len, rng));
                                }
                                _ => {}
                            }
                        }
                    }
                    3 => {
                        let field = ["dtype", "shape", "data_offsets"].choose(rng).unwrap();
                        entry.remove(*field);
                    }
                    _ => {
                        let field = ["dtype", "shape", "data_offsets"].choose(rng).unwrap();
                        let odd = [json!(null), json!(-1), json!("3"), json!([]), json!({})];
                        entry.insert(field.to_string(), odd.choose(rng).unwrap().clone());
                    }
                }
            }
        }
    }
    let json_len = serde_json::to_vec(&h).unwrap().len() as u64;
    let header_len = (rng.random_range(0..4) == 0).then(|| edge(json_len, len, rng));
    let mut body = data();
    if rng.random_range(0..4) == 0 {
        body.truncate(rng.random_range(0..body.len()));
    }
    file(&h, header_len, &body)
}

fn load(input: &[u8], dir: &Path) {
    let path = dir.join("m.safetensors");
    std::fs::write(&path, input).unwrap();
    let device = Device::flex();
    // the harness tallies these
    let outcome = match load_state_dict(tiny(&device), &path, &[]) {
        Ok(model) => loaded_outcome(model),
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("m.safetensors"),
                "the error names no file: {text}"
            );
            if text.contains("cannot read safetensors") {
                "refused_by_the_reader"
            } else if text.contains("not in the file") || text.contains("shape") {
                "refused_as_other_weights"
            } else {
                "refused_other"
            }
        }
    };
    println!("OUTCOME {outcome}");
}

/// The seed loads, with its values (the cases start from a file that works).
#[test]
fn the_safetensors_seed_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    std::fs::write(&path, &seeds(dir.path())[0]).unwrap();
    let model = load_state_dict(tiny(&Device::flex()), &path, &[]).unwrap();
    assert_eq!(host(model.fc.bias.unwrap().val()), values().1);
    assert_eq!(host(model.fc.weight.val().transpose()), values().0);
}

#[test]
fn fuzz_safetensors_loading() {
    drive(
        Target {
            name: "safetensors",
            seeds,
            mutate: mutate_header,
            run: load,
            cases: 2000,
        },
        "fuzz_safetensors::fuzz_safetensors_loading",
    )
    .unwrap();
}
