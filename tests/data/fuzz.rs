//! Seeded mutation fuzzing of grafter-data's readers: image decoding (then the evaluation
//! transform), CSV/JSONL lists and feature-cache files, 3000 cases each by default (about a
//! second each in CI), in tests/support/fuzz_harness.rs's child processes.

use std::path::Path;

use crate::common::{picture, write};
use crate::fuzz_harness::{TARGET_ENV, Target, drive, mutate};
use grafter_core::Preprocess;
use grafter_data::image::ImageFormat;
use grafter_data::{DecodeLimits, FeatureCache, ImageDataset, ListOptions, Transform, decode};

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
