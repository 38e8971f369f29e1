//! Fuzzing of run folders: a real run paused after one epoch, its `config.json` or the latest
//! checkpoint's `state.json` mutated value by value (numbers to zero, negatives, 1e12, huge or
//! fractional; strings, arrays and objects emptied or swapped for null; keys dropped) or byte
//! by byte, then resumed for at most one more epoch. Every case must resume or be refused with
//! a typed error — never a panic, an abort or a hang (tests/support/fuzz_harness.rs's child
//! processes). 300 cases in the test command.

use std::path::Path;

use burn::tensor::Device;
use grafter::prelude::*;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::Value;

use crate::common::{classifier, config, dataset};
use crate::fuzz_harness::{Target, drive, mutate};

/// The files a case may mutate; a case's first byte says which.
const FILES: [&str; 2] = ["config.json", "checkpoints/epoch-0001/state.json"];

fn policy() -> TwoPhase {
    TwoPhase::new(1, 10.0)
}

fn fit(fine_tune: FineTune) -> grafter::Result<()> {
    let device = Device::flex();
    fine_tune
        .progress(false)
        .pause_after(1)
        .fit(
            classifier(&device, 3, 0.0),
            &dataset(4, 1),
            &dataset(2, 2),
            &device,
        )
        .map(|_| ())
}

/// The template run (in the child's scratch folder) and the two files as seeds.
fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let template = dir.join("template");
    let cfg = config(3)
        .with_batch_size(4)
        .with_ema(Some(grafter::Ema::new(0.9)));
    fit(FineTune::new(cfg, policy()).out_dir(&template)).unwrap();
    FILES
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut seed = vec![i as u8];
            seed.extend(std::fs::read(template.join(f)).unwrap());
            seed
        })
        .collect()
}

/// Replaces one JSON value (or drops one key) most of the time; byte mutation otherwise.
fn mutate_json(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let (which, text) = seed.split_first().unwrap_or((&0, &[]));
    let mut out = vec![*which];
    match serde_json::from_slice::<Value>(text) {
        Ok(mut v) if rng.random_bool(0.85) => {
            for _ in 0..rng.random_range(1..=2) {
                let mut leaves = Vec::new();
                paths(&v, &mut Vec::new(), &mut leaves);
                let Some(path) = leaves.choose(rng) else {
                    break;
                };
                replace(&mut v, path, rng);
            }
            out.extend(serde_json::to_vec_pretty(&v).unwrap());
        }
        _ => out.extend(mutate(text, rng)),
    }
    out
}

/// Every value's path (object keys and array indices), containers included.
fn paths(v: &Value, here: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(here.clone());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                here.push(k.clone());
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                here.push(i.to_string());
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn replace(root: &mut Value, path: &[String], rng: &mut StdRng) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut parent = &mut *root;
    for key in parent_path {
        parent = match parent {
            Value::Object(map) => map.get_mut(key).unwrap(),
            Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
            _ => return,
        };
    }
    if let Value::Object(map) = parent
        && rng.random_bool(0.15)
    {
        map.remove(last);
        return;
    }
    let slot = match parent {
        Value::Object(map) => map.get_mut(last).unwrap(),
        Value::Array(items) => &mut items[last.parse::<usize>().unwrap()],
        _ => return,
    };
    *slot = match rng.random_range(0..10) {
        0 => Value::Null,
        1 => Value::from(0),
        2 => Value::from(-1),
        3 => Value::from(1e12),
        4 => Value::from(u64::MAX),
        5 => Value::from(0.5),
        6 => Value::from(-1e-300),
        7 => Value::from(""),
        8 => Value::Array(Vec::new()),
        _ => Value::Object(Default::default()),
    };
}

/// Copies the template run, writes the case's file, resumes.
fn resume(input: &[u8], dir: &Path) {
    let Some((which, text)) = input.split_first() else {
        return;
    };
    let template = dir.parent().unwrap().join("template");
    let run = dir.join("run");
    copy_dir(&template, &run);
    std::fs::write(run.join(FILES[*which as usize % FILES.len()]), text).unwrap();
    match FineTune::resume(&run).and_then(fit) {
        Ok(()) => println!("OUTCOME resumed"),
        Err(grafter::GrafterError::Checkpoint { .. }) => println!("OUTCOME checkpoint_error"),
        Err(grafter::GrafterError::Config(_)) => println!("OUTCOME config_error"),
        Err(_) => println!("OUTCOME other_error"),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn fuzz_run_folders() {
    drive(
        Target {
            name: "run_folder",
            seeds,
            mutate: mutate_json,
            run: resume,
            cases: 300,
        },
        "fuzz_run_folder::fuzz_run_folders",
    )
    .unwrap();
}
