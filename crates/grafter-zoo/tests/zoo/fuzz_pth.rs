//! Fuzzing of `.pth` loading (`grafter_zoo::load_resnet`): a `torch.save`-style state dict of
//! three tensors whose pickle is mutated — opcodes, and the 32-bit integers that give storage
//! sizes, offsets, shapes and strides set to zero, negatives, huge or off-by-one values — then
//! zipped again (valid CRCs, so the pickle is what gets tested) and loaded into a ResNet-18.
//! Every case must load (up to the missing parameters) or be refused with a typed error, within
//! the harness's memory limit and timeout (tests/support/fuzz_harness.rs). 150 cases in the
//! test command (each builds a ResNet-18).

use std::path::Path;

use burn::tensor::Device;
use grafter_zoo::{ResNetConfig, load_resnet};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use crate::fuzz_harness::{Target, drive, mutate};
use crate::torch_save::{float_tensor, global, unicode, write_archive};

/// The state dict's tensors: torchvision names, shapes of a ResNet-18.
const TENSORS: [(&str, &[usize]); 3] = [
    ("conv1.weight", &[64, 3, 7, 7]),
    ("bn1.running_mean", &[64]),
    ("fc.bias", &[1000]),
];

/// One raw f32 storage per tensor, named by its index (as torch.save names them).
fn storages() -> Vec<(String, Vec<u8>)> {
    TENSORS
        .iter()
        .enumerate()
        .map(|(i, (_, shape))| {
            let n: usize = shape.iter().product();
            let bytes = (0..n).flat_map(|k| (0.01 * (k % 17) as f32).to_le_bytes());
            (i.to_string(), bytes.collect())
        })
        .collect()
}

fn seeds(_: &Path) -> Vec<Vec<u8>> {
    let mut pickle = b"\x80\x02".to_vec();
    pickle.extend(global("collections", "OrderedDict"));
    pickle.extend_from_slice(b")R");
    for (i, (name, shape)) in TENSORS.iter().enumerate() {
        pickle.extend(unicode(name));
        pickle.extend(float_tensor(&i.to_string(), shape));
        pickle.push(b's');
    }
    pickle.push(b'.');
    vec![pickle]
}

/// Sets the operand of a `BININT` (`J` + 4 bytes) to an edge value, or mutates bytes.
fn mutate_pickle(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let ints: Vec<usize> = seed
        .windows(5)
        .enumerate()
        .filter(|(_, w)| w[0] == b'J')
        .map(|(i, _)| i + 1)
        .collect();
    if ints.is_empty() || rng.random_bool(0.3) {
        return mutate(seed, rng);
    }
    let mut out = seed.to_vec();
    for _ in 0..rng.random_range(1..=2) {
        let at = *ints.choose(rng).unwrap();
        let old = i32::from_le_bytes(out[at..at + 4].try_into().unwrap());
        let value = *[
            0,
            -1,
            1,
            old.wrapping_add(1),
            old.wrapping_sub(1),
            old.wrapping_mul(2),
            i32::MAX,
            i32::MIN,
            1 << 30,
            3_000_000,
        ]
        .choose(rng)
        .unwrap();
        out[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
    out
}

fn load(input: &[u8], dir: &Path) {
    let path = dir.join("m.pth");
    write_archive(&path, input, &storages());
    // the harness tallies these
    let outcome = match load_resnet(&path, &ResNetConfig::resnet18(), 1000, &Device::flex()) {
        Ok(_) => "loaded",
        Err(e) => {
            let e = e.to_string();
            if e.contains("stride") || e.contains("offset") || e.contains("elements") {
                "view_refused"
            } else if e.contains("opcode") || e.contains("pickle") || e.contains("global") {
                "pickle_refused"
            } else if e.contains("missing") || e.contains("head.") || e.contains("shape") {
                // read whole: only the architecture check failed (three tensors of many)
                "read_then_architecture_mismatch"
            } else {
                "other_refused"
            }
        }
    };
    println!("OUTCOME {outcome}");
}

#[test]
fn fuzz_pth_loading() {
    drive(
        Target {
            name: "pth",
            seeds,
            mutate: mutate_pickle,
            run: load,
            cases: 150,
        },
        "fuzz_pth::fuzz_pth_loading",
    )
    .unwrap();
}
