//! Fuzzing of `Predictor::from_run`: a run folder as `save_for_prediction` and the loop leave
//! it (a small classifier's `model.onnx`, `preprocess.json`, `classes.json`, `config.json`),
//! one of its three JSON files mutated value by value (a number to 0, ±1, 0.5, 10¹², 10³⁰⁰,
//! 4096 or 8193; any value to null, "", [] or {}; a key dropped), byte by byte, or deleted;
//! then the predictor, when it loads, ranks one image. `model.onnx` itself is fuzzed by
//! `fuzz.rs`. Every case must predict or be refused with an error naming the folder's file,
//! within the harness's memory limit and timeout (tests/support/fuzz_harness.rs). 300 cases
//! in the test command.

use std::path::Path;

use burn::tensor::Device;
use grafter::data::predict::Predictor;
use onnx_ir::Message;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

use crate::fuzz_harness::{Target, drive, mutate};
use crate::hostile::{A, conv, floats, model, node};

/// The three JSON files of a run folder, in the order a case encodes them.
const FILES: [&str; 3] = ["preprocess.json", "classes.json", "config.json"];

/// A case: each file as a u32 length (`u32::MAX`: absent) and its bytes.
fn encode(files: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in files {
        match f {
            Some(bytes) => {
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
    out
}

fn decode(input: &[u8]) -> Vec<Option<Vec<u8>>> {
    let mut files = Vec::new();
    let mut at = 0;
    for _ in FILES {
        let Some(len) = input.get(at..at + 4) else {
            files.push(None);
            continue;
        };
        let len = u32::from_le_bytes(len.try_into().unwrap());
        at += 4;
        if len == u32::MAX {
            files.push(None);
            continue;
        }
        let end = (at + len as usize).min(input.len());
        files.push(Some(input[at..end].to_vec()));
        at = end;
    }
    files
}

/// What `save_for_prediction` and the loop write for a 3-class model at 8×8 px.
fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    // input → 3×3 conv (4 channels) → global pool → flatten → linear (3 classes)
    let m = model(
        17,
        vec![
            conv(
                &["input", "w", "b"],
                "c",
                vec![("pads", A::Is(vec![1, 1, 1, 1]))],
            ),
            node("Relu", &["c"], "r", vec![]),
            node("GlobalAveragePool", &["r"], "p", vec![]),
            node("Flatten", &["p"], "f", vec![]),
            node(
                "Gemm",
                &["f", "fc_w", "fc_b"],
                "out",
                vec![("transB", A::I(1))],
            ),
        ],
        vec![
            floats("w", &[4, 3, 3, 3]),
            floats("b", &[4]),
            floats("fc_w", &[3, 4]),
            floats("fc_b", &[3]),
        ],
        2,
    );
    std::fs::write(dir.join("model.onnx"), m.write_to_bytes().unwrap()).unwrap();
    let preprocess = grafter::Preprocess::imagenet().with_input_size(8, 8);
    let files = [
        serde_json::to_vec_pretty(&preprocess).unwrap(),
        serde_json::to_vec_pretty(&json!({"classes": ["a", "b", "c"]})).unwrap(),
        serde_json::to_vec_pretty(&json!({"task": "SingleLabel", "epochs": 3})).unwrap(),
    ];
    vec![encode(&files.map(Some))]
}

/// A JSON value an attacker or a bad edit might put anywhere.
fn odd(rng: &mut StdRng) -> Value {
    [
        json!(0),
        json!(1),
        json!(-1),
        json!(0.5),
        json!(1e12),
        json!(1e300),
        json!(4096),
        json!(8193),
        json!(null),
        json!(""),
        json!([]),
        json!({}),
    ]
    .choose(rng)
    .unwrap()
    .clone()
}

/// Every path to a leaf or container of `v`.
fn paths(v: &Value, at: Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| {
            let mut p = at.clone();
            p.push(json!(k));
            paths(c, p, out)
        }),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| {
            let mut p = at.clone();
            p.push(json!(i));
            paths(c, p, out)
        }),
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| match k {
        Value::String(s) => v.get_mut(s.as_str()),
        Value::Number(n) => v.get_mut(n.as_u64()? as usize),
        _ => None,
    })
}

/// One file of the case changed: a value set or a key dropped (most cases), bytes mutated,
/// or the file deleted.
fn mutate_run(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut files = decode(seed);
    let i = rng.random_range(0..files.len());
    let Some(bytes) = files[i].take() else {
        return encode(&files);
    };
    files[i] = match rng.random_range(0..10) {
        0 => None,
        1..=3 => Some(mutate(&bytes, rng)),
        _ => {
            let mut v: Value = serde_json::from_slice(&bytes).unwrap();
            for _ in 0..rng.random_range(1..=2) {
                let mut all = Vec::new();
                paths(&v, Vec::new(), &mut all);
                let path = all.choose(rng).unwrap().clone();
                match (rng.random_range(0..4), path.split_last()) {
                    (0, Some((Value::String(key), parent))) => {
                        if let Some(Value::Object(m)) = at_mut(&mut v, parent) {
                            m.remove(key);
                        }
                    }
                    _ => {
                        if let Some(slot) = at_mut(&mut v, &path) {
                            *slot = odd(rng);
                        }
                    }
                }
            }
            Some(serde_json::to_vec(&v).unwrap())
        }
    };
    encode(&files)
}

fn run(input: &[u8], dir: &Path) {
    let scratch = dir.parent().unwrap();
    std::fs::copy(scratch.join("model.onnx"), dir.join("model.onnx")).unwrap();
    for (name, bytes) in FILES.iter().zip(decode(input)) {
        if let Some(bytes) = bytes {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let image = dir.join("x.png");
    grafter::data::image::RgbImage::from_fn(12, 10, |x, y| {
        grafter::data::image::Rgb([(x * 20) as u8, (y * 25) as u8, 128])
    })
    .save(&image)
    .unwrap();
    let outcome = match Predictor::from_run(dir, &Device::flex()) {
        Ok(predictor) => match predictor.predict_files(&[&image], 2).remove(0) {
            Ok(p) => {
                assert_eq!(p.top.len(), 2);
                "predicted"
            }
            Err(_) => "image_refused",
        },
        Err(e) => {
            let text = e.to_string();
            let named = FILES
                .iter()
                .chain(&["model.onnx"])
                .find(|f| text.contains(&dir.join(f).display().to_string()));
            assert!(
                named.is_some(),
                "the error names no file of the run: {text}"
            );
            match named {
                Some(&"preprocess.json") => "refused_preprocess",
                Some(&"classes.json") => "refused_classes",
                Some(&"config.json") => "refused_config",
                _ => "refused_model",
            }
        }
    };
    println!("OUTCOME {outcome}");
}

/// The seed predicts (the cases start from a folder that works).
#[test]
fn the_run_folder_seed_predicts() {
    let scratch = tempfile::tempdir().unwrap();
    let seed = &seeds(scratch.path())[0];
    let dir = scratch.path().join("case");
    std::fs::create_dir_all(&dir).unwrap();
    run(seed, &dir);
    let p = Predictor::from_run(&dir, &Device::flex()).unwrap();
    assert_eq!(p.classes().len(), 3);
}

#[test]
fn fuzz_predictor_from_run() {
    drive(
        Target {
            name: "predictor",
            seeds,
            mutate: mutate_run,
            run,
            cases: 300,
        },
        "fuzz_predictor::fuzz_predictor_from_run",
    )
    .unwrap();
}
