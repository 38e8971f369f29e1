//! Fuzzing of the zip container of a `.pth` (`grafter_zoo::torchvision::load_state_dict`,
//! the path every `.pth` takes: the pre-load scan's zip reader, then burn-store's). Where
//! `fuzz_pth.rs` mutates the pickle inside a valid zip, this keeps the pickle and mutates the
//! container: a field of a local file header, a central-directory record or the
//! end-of-central-directory record (sizes, offsets, CRCs, name and extra lengths, method,
//! flags, entry counts) set to an edge value — zero, one, off by one, doubled, the ZIP64
//! marker `0xFFFF…`, the file's length — or bytes flipped, truncated or repeated anywhere.
//! Every case must load or be refused with an error naming the file, within the harness's
//! memory limit and timeout (tests/support/fuzz_harness.rs), and what loads must hold the
//! archived values. 2000 cases in the test command (about a second: the model is one linear
//! layer, so a case costs the container's reading alone).

use std::path::Path;

use burn::tensor::Device;
use grafter_zoo::torchvision::load_state_dict;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use crate::fixtures::host;
use crate::fuzz_harness::{Target, drive, mutate};
use crate::tiny_state_dict::{loaded_outcome, tiny, values};
use crate::torch_save::write_state_dict;

fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let (weight, bias) = values();
    let path = dir.join("seed.pth");
    write_state_dict(
        &path,
        &[
            ("fc.weight".into(), vec![3, 4], weight),
            ("fc.bias".into(), vec![3], bias),
        ],
    );
    vec![std::fs::read(path).unwrap()]
}

/// Offsets of every `signature` in `bytes`.
fn find(bytes: &[u8], signature: [u8; 4]) -> Vec<usize> {
    bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == signature)
        .map(|(i, _)| i)
        .collect()
}

/// (offset in the record, width) of the fields of a local file header, a central-directory
/// record and the end-of-central-directory record worth breaking.
const LOCAL: &[(usize, usize)] = &[
    (4, 2),  // version needed
    (6, 2),  // flags (bit 3: sizes after the data; bit 0: encrypted)
    (8, 2),  // method
    (14, 4), // CRC-32
    (18, 4), // compressed size
    (22, 4), // uncompressed size
    (26, 2), // name length
    (28, 2), // extra field length
];
const CENTRAL: &[(usize, usize)] = &[
    (6, 2),  // version needed
    (8, 2),  // flags
    (10, 2), // method
    (16, 4), // CRC-32
    (20, 4), // compressed size
    (24, 4), // uncompressed size
    (28, 2), // name length
    (30, 2), // extra field length
    (32, 2), // comment length
    (34, 2), // disk number start
    (42, 4), // local header offset
];
const END: &[(usize, usize)] = &[
    (4, 2),  // this disk
    (6, 2),  // disk of the central directory
    (8, 2),  // entries on this disk
    (10, 2), // entries in all
    (12, 4), // central directory size
    (16, 4), // central directory offset
    (20, 2), // comment length
];

/// Sets one to three container fields to edge values (two cases in three), or mutates bytes.
fn mutate_zip(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    if rng.random_range(0..3) == 0 {
        return mutate(seed, rng);
    }
    let records = [
        (find(seed, *b"PK\x03\x04"), LOCAL),
        (find(seed, *b"PK\x01\x02"), CENTRAL),
        (find(seed, *b"PK\x05\x06"), END),
    ];
    let mut out = seed.to_vec();
    for _ in 0..rng.random_range(1..=3) {
        let (starts, fields) = records.choose(rng).unwrap();
        let (Some(&start), Some(&(at, width))) = (starts.choose(rng), fields.choose(rng)) else {
            continue;
        };
        let at = start + at;
        if at + width > out.len() {
            continue;
        }
        let old = out[at..at + width]
            .iter()
            .rev()
            .fold(0u64, |v, &b| v << 8 | u64::from(b));
        let max = if width == 2 { 0xFFFF } else { 0xFFFF_FFFF };
        let value = *[
            0,
            1,
            old.wrapping_add(1),
            old.wrapping_sub(1),
            old.wrapping_mul(2),
            max,
            max - 1,
            seed.len() as u64,
            rng.random(),
        ]
        .choose(rng)
        .unwrap()
            & max;
        out[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
    out
}

fn load(input: &[u8], dir: &Path) {
    let path = dir.join("m.pth");
    std::fs::write(&path, input).unwrap();
    let device = Device::flex();
    // the harness tallies these
    let outcome = match load_state_dict(tiny(&device), &path, &[]) {
        Ok(model) => loaded_outcome(model),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("m.pth"), "the error names no file: {text}");
            // which reader refused it: the pre-load scan's zip reader, its pickle check,
            // burn-store's reader, or the model's parameter check
            if text.contains("zip archive") || text.contains("corrupt archive") {
                "refused_by_the_scan_zip"
            } else if text.contains("data.pkl") || text.contains("pickle") {
                "refused_by_the_scan_pickle"
            } else if text.contains("cannot read PyTorch file") {
                "refused_by_burn_store"
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
fn the_zip_seed_loads() {
    let dir = tempfile::tempdir().unwrap();
    let seed = &seeds(dir.path())[0];
    let path = dir.path().join("m.pth");
    std::fs::write(&path, seed).unwrap();
    let model = load_state_dict(tiny(&Device::flex()), &path, &[]).unwrap();
    let bias = host(model.fc.bias.unwrap().val());
    assert_eq!(bias, values().1);
}

#[test]
fn fuzz_pth_zip_container() {
    drive(
        Target {
            name: "pth_zip",
            seeds,
            mutate: mutate_zip,
            run: load,
            cases: 2000,
        },
        "fuzz_pth_zip::fuzz_pth_zip_container",
    )
    .unwrap();
}
