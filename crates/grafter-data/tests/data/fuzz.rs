//! Seeded mutation fuzzing of grafter-data's readers: image decoding (then the evaluation
//! transform), CSV/JSONL lists, feature-cache files and tar extraction (GNU long names and PAX
//! headers among the seeds), 2000–3000 cases each by default (about a second each in CI), in
//! tests/support/fuzz_harness.rs's child processes.

use std::path::Path;

use crate::common::{picture, write};
use crate::fuzz_harness::{TARGET_ENV, Target, drive, mutate};
use grafter_core::Preprocess;
use grafter_core::feature_cache::FeatureCache;
use grafter_data::image::ImageFormat;
use grafter_data::{DecodeLimits, ExtractLimits, ImageDataset, ListOptions, Transform, decode};

fn image_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let img = picture(16, 12, 3, 0);
    [
        ("a.png", ImageFormat::Png),
        ("a.jpg", ImageFormat::Jpeg),
        ("a.gif", ImageFormat::Gif),
        ("a.bmp", ImageFormat::Bmp),
        ("a.webp", ImageFormat::WebP),
    ]
    .into_iter()
    .map(|(name, format)| {
        let path = dir.join(name);
        write(&path, &img, format);
        std::fs::read(path).unwrap()
    })
    .collect()
}

fn decode_then_transform(input: &[u8], _dir: &Path) {
    let limits = DecodeLimits {
        max_pixels: 1 << 22,
        ..DecodeLimits::default()
    };
    if let Ok(img) = decode::decode_bytes(input, &limits) {
        let t = Transform::new(Preprocess::imagenet().with_input_size(32, 32));
        let x = t.eval(&img);
        assert_eq!(x.len(), 3 * 32 * 32);
    }
}

fn list_seeds(_dir: &Path) -> Vec<Vec<u8>> {
    vec![
        b"path,label\na.png,x\nsub/b.png,y\n".to_vec(),
        b"{\"path\":\"a.png\",\"label\":\"x\"}\n{\"path\":\"sub/b.png\",\"label\":\"y\"}\n"
            .to_vec(),
        b"path,labels\na.png,x;y\nsub/b.png,y\n".to_vec(),
    ]
}

fn read_list(input: &[u8], dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let img = picture(8, 8, 1, 0);
    write(&dir.join("a.png"), &img, ImageFormat::Png);
    write(&dir.join("sub/b.png"), &img, ImageFormat::Png);
    for name in ["l.csv", "l.jsonl"] {
        let list = dir.join(name);
        std::fs::write(&list, input).unwrap();
        let read = if name.ends_with("csv") {
            ImageDataset::from_csv(&list, ListOptions::default())
        } else {
            ImageDataset::from_jsonl(&list, ListOptions::default())
        };
        if let Ok(ds) = read {
            // whatever a list says, its samples stay inside its folder
            for sample in ds.samples() {
                assert!(sample.path.starts_with(dir), "{}", sample.path.display());
            }
        }
    }
}

fn cache_seeds(_dir: &Path) -> Vec<Vec<u8>> {
    let header = r#"{"samples":2,"views":1,"feature_shape":[1,1,2],"num_classes":2,"precision":"F32","classes":[0,1],"multi_hot":null,"fingerprint":"fp"}"#;
    let mut bytes: Vec<u8> = (0..4).flat_map(|i| (i as f32).to_le_bytes()).collect();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(b"GRFTFC01");
    vec![bytes]
}

fn open_cache(input: &[u8], dir: &Path) {
    let path = dir.join("f.cache");
    std::fs::write(&path, input).unwrap();
    if let Ok(cache) = FeatureCache::open(&path, "fp") {
        assert!(cache.views() >= 1);
    }
}

/// One ustar header block: `name`, `size` bytes of body, type `kind` ('0' file, '5' folder,
/// 'L' GNU long name, 'x' PAX attributes).
fn tar_header(name: &str, size: usize, kind: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name.as_bytes()[..name.len().min(100)]);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// An archive of `entries` (name, body, type), with the two zero blocks that end it.
pub fn tar(entries: &[(&str, &[u8], u8)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, body, kind) in entries {
        out.extend_from_slice(&tar_header(name, body.len(), *kind));
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn tar_seeds(_dir: &Path) -> Vec<Vec<u8>> {
    let long = "d/".to_string() + &"n".repeat(120);
    vec![
        tar(&[("a/", b"", b'5'), ("a/x.txt", b"hello", b'0')]),
        tar(&[
            ("././@LongLink", format!("{long}\0").as_bytes(), b'L'),
            ("d/short", b"long-named body", b'0'),
        ]),
        tar(&[
            ("PaxHeaders/p", b"21 path=pax/name.bin\n", b'x'),
            ("p", &[7u8; 700], b'0'),
            ("b/c/d.txt", b"", b'0'),
        ]),
    ]
}

fn extract(input: &[u8], dir: &Path) {
    let archive = dir.join("case.tar");
    std::fs::write(&archive, input).unwrap();
    let limits = ExtractLimits {
        max_entries: 64,
        max_entry_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        ..ExtractLimits::default()
    };
    // the harness tallies these
    match grafter_data::archive::extract_tar_with_limits(&archive, dir.join("out"), &limits) {
        Ok(_) => println!("OUTCOME extracted"),
        Err(_) => println!("OUTCOME refused"),
    }
}

/// The seeds are archives the extractor accepts, long names and PAX paths included.
#[test]
fn tar_seeds_extract() {
    let dir = tempfile::tempdir().unwrap();
    for (i, seed) in tar_seeds(dir.path()).iter().enumerate() {
        let archive = dir.path().join(format!("{i}.tar"));
        std::fs::write(&archive, seed).unwrap();
        let out = dir.path().join(format!("out{i}"));
        grafter_data::archive::extract_tar(&archive, &out)
            .unwrap_or_else(|e| panic!("seed {i}: {e}"));
    }
    let long = "n".repeat(120);
    assert!(dir.path().join("out1/d").join(long).is_file());
    assert!(dir.path().join("out2/pax/name.bin").is_file());
    assert_eq!(
        std::fs::read(dir.path().join("out0/a/x.txt")).unwrap(),
        b"hello"
    );
}

#[test]
fn fuzz_tar_extraction() {
    drive(
        Target {
            name: "tar",
            seeds: tar_seeds,
            mutate,
            run: extract,
            cases: 2000,
        },
        "fuzz::fuzz_tar_extraction",
    )
    .unwrap();
}

#[test]
fn fuzz_image_decoding_and_transform() {
    drive(
        Target {
            name: "decode",
            seeds: image_seeds,
            mutate,
            run: decode_then_transform,
            cases: 3000,
        },
        "fuzz::fuzz_image_decoding_and_transform",
    )
    .unwrap();
}

#[test]
fn fuzz_csv_and_jsonl_lists() {
    drive(
        Target {
            name: "lists",
            seeds: list_seeds,
            mutate,
            run: read_list,
            cases: 3000,
        },
        "fuzz::fuzz_csv_and_jsonl_lists",
    )
    .unwrap();
}

#[test]
fn fuzz_feature_cache_files() {
    drive(
        Target {
            name: "feature_cache",
            seeds: cache_seeds,
            mutate,
            run: open_cache,
            cases: 3000,
        },
        "fuzz::fuzz_feature_cache_files",
    )
    .unwrap();
}

/// The harness itself: a panic is reported as one, an abort kills only the child and is
/// reported with its case.
#[test]
fn the_harness_tells_panics_and_aborts_apart() {
    fn panics_on_odd_first_byte(input: &[u8], _dir: &Path) {
        assert!(input.first().is_none_or(|b| b % 2 == 0), "odd");
    }
    fn aborts_on_a_zero(input: &[u8], _dir: &Path) {
        if input.contains(&0) {
            std::process::abort();
        }
    }
    let seeds = |_: &Path| vec![vec![1u8, 2, 3, 4, 5, 6, 7, 8]];
    let test = "fuzz::the_harness_tells_panics_and_aborts_apart";
    let panicking = drive(
        Target {
            name: "selftest_panic",
            seeds,
            mutate,
            run: panics_on_odd_first_byte,
            cases: 3000,
        },
        test,
    );
    let aborting = drive(
        Target {
            name: "selftest_abort",
            seeds,
            mutate,
            run: aborts_on_a_zero,
            cases: 3000,
        },
        test,
    );
    if std::env::var(TARGET_ENV).is_ok() {
        return;
    }
    assert!(
        panicking.as_ref().is_err_and(|e| e.contains("panicked")),
        "{panicking:?}"
    );
    assert!(
        aborting.as_ref().is_err_and(|e| e.contains("died")),
        "{aborting:?}"
    );
}

/// The corpus (tests/fixtures/corrupt/selftest_corpus/) is replayed before the mutated cases:
/// its one file, whose first byte is odd, panics although no mutated case does.
#[test]
fn the_harness_replays_the_corpus() {
    fn panics_on_odd_first_byte(input: &[u8], _dir: &Path) {
        assert!(input.first().is_none_or(|b| b % 2 == 0), "odd");
    }
    let replayed = drive(
        Target {
            name: "selftest_corpus",
            seeds: |_| vec![vec![2u8, 4]],
            // mutated cases (the corpus file among the seeds too) get an even first byte
            mutate: |seed, _| {
                let mut v = seed.to_vec();
                if let Some(b) = v.first_mut() {
                    *b &= !1;
                }
                v
            },
            run: panics_on_odd_first_byte,
            cases: 20,
        },
        "fuzz::the_harness_replays_the_corpus",
    );
    if std::env::var(TARGET_ENV).is_ok() {
        return;
    }
    let err = replayed.unwrap_err();
    assert!(
        err.contains("1 cases panicked") && err.contains("corpus/odd-first-byte.bin"),
        "{err}"
    );
}
