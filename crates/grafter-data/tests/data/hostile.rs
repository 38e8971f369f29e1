//! Hostile inputs to the image pipeline: strip-shaped images, oversized files, FIFOs, list
//! paths and Food-101 names that climb out of the root, and forged feature-cache files. Each
//! is a typed error naming the file (or a bounded, correct result), never a hang or a panic.

use std::path::Path;
use std::time::{Duration, Instant};

use burn::tensor::Device;
use grafter_core::feature_cache::{CacheOptions, CachePrecision, CacheStorage, FeatureCache};
use grafter_core::{GrafterError, Preprocess};
use grafter_data::image::{ImageFormat, RgbImage};
use grafter_data::{
    DataError, DecodeError, DecodeLimits, Food101Split, ImageDataset, ListOptions, Transform,
    decode,
};

use crate::common::{SIDE, Tiny, image_folder, picture, write};

#[test]
fn a_strip_shaped_image_is_transformed_within_bounded_memory() {
    // 1×32768 passes DecodeLimits; the shorter-side resize to 256 would be 256×8 388 608.
    let img = RgbImage::from_fn(1, 32_768, |_, y| {
        grafter_data::image::Rgb([(y % 251) as u8, 100, (y / 128) as u8])
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strip.png");
    img.save(&path).unwrap();
    let decoded = decode::decode_file(&path, &DecodeLimits::default()).unwrap();
    assert_eq!(decoded.dimensions(), (1, 32_768));
    let t = Transform::new(Preprocess::imagenet());
    let start = Instant::now();
    let crop = t.eval_rgb8(&decoded);
    assert_eq!(crop.dimensions(), (224, 224));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // The crop is the middle of the strip: its one source column stretched, rows ≈ the
    // centre rows of the source.
    let mid = decoded.get_pixel(0, 16_384).0;
    let got = crop.get_pixel(112, 112).0;
    for c in 0..3 {
        assert!(
            (got[c] as i32 - mid[c] as i32).abs() <= 3,
            "{got:?} vs {mid:?}"
        );
    }
    // Ordinary images take the exact path.
    let photo = picture(64, 48, 0, 1);
    let same = Transform::new(Preprocess::imagenet().with_input_size(SIDE, SIDE));
    assert_eq!(
        same.eval_rgb8(&photo).dimensions(),
        (SIDE as u32, SIDE as u32)
    );
}

#[test]
fn decode_file_refuses_files_above_the_size_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.png");
    write(&path, &picture(40, 30, 0, 0), ImageFormat::Png);
    let len = std::fs::metadata(&path).unwrap().len();
    let limits = DecodeLimits {
        max_file_bytes: len - 1,
        ..DecodeLimits::default()
    };
    let err = decode::decode_file(&path, &limits).unwrap_err();
    assert!(
        matches!(err, DecodeError::FileTooLarge { limit, .. } if limit == len - 1),
        "{err}"
    );
    // The folder scan applies the same cap: the file is reported, not loaded.
    let ok = decode::decode_file(&path, &DecodeLimits::default());
    assert!(ok.is_ok());
}

#[test]
fn a_fifo_in_place_of_an_image_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("swapped.png");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !status.is_ok_and(|s| s.success()) {
        crate::skip::skip("mkfifo unavailable");
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(decode::decode_file(&path, &DecodeLimits::default()));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("decode_file hung on a FIFO");
    let err = result.unwrap_err();
    assert!(matches!(err, DecodeError::NotRegularFile { .. }), "{err}");
}

/// A folder with one good image `ok/a.png` and a list `lists/<name>` of `text`.
fn list_dir(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("lists")).unwrap();
    write(
        &dir.path().join("lists").join("a.png"),
        &picture(20, 20, 0, 0),
        ImageFormat::Png,
    );
    write(
        &dir.path().join("secret.png"),
        &picture(20, 20, 1, 0),
        ImageFormat::Png,
    );
    let list = dir.path().join("lists").join(name);
    std::fs::write(&list, text).unwrap();
    (dir, list)
}

fn assert_refused(err: DataError, list: &Path, line: usize, says: &str) {
    let msg = err.to_string();
    assert!(matches!(err, DataError::Format { .. }), "{msg}");
    assert!(msg.contains(&list.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("line {line}")), "{msg}");
    assert!(msg.contains(says), "{msg}");
    println!("REFUSED {msg}");
}

#[test]
fn list_paths_that_are_absolute_or_climb_are_refused() {
    let (dir, list) = list_dir("l.csv", "path,label\na.png,x\n../secret.png,y\n");
    let err = ImageDataset::from_csv(&list, ListOptions::default()).unwrap_err();
    assert_refused(err, &list, 3, "'..'");

    let abs = dir.path().join("secret.png");
    let text = format!("a.png,x\n{},y\n", abs.display());
    let (_d, list) = list_dir("abs.csv", &text);
    let err = ImageDataset::from_csv(&list, ListOptions::default()).unwrap_err();
    assert_refused(err, &list, 2, "absolute");

    let (_d, list) = list_dir(
        "l.jsonl",
        "{\"path\":\"a.png\",\"label\":\"x\"}\n{\"path\":\"sub/../../secret.png\",\"label\":\"y\"}\n",
    );
    let err = ImageDataset::from_jsonl(&list, ListOptions::default()).unwrap_err();
    assert_refused(err, &list, 2, "'..'");

    // A plain relative list still loads.
    let (_d, list) = list_dir("ok.csv", "a.png,x\n");
    assert_eq!(
        ImageDataset::from_csv(&list, ListOptions::default())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn food101_names_that_climb_out_of_images_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    image_folder(&root.join("images"), &["pizza"], 2);
    std::fs::create_dir_all(root.join("meta")).unwrap();
    // `image_folder` writes 000.png and 001.jpg: Food-101 names `<class>/<id>.jpg`.
    std::fs::write(root.join("meta/test.txt"), "pizza/001\n").unwrap();

    let classes = root.join("meta/classes.txt");
    for (name, says) in [("..", "'..'"), ("a/b", "separator")] {
        std::fs::write(&classes, format!("pizza\n{name}\n")).unwrap();
        let err = ImageDataset::food101(root, Food101Split::Test).unwrap_err();
        assert_refused(err, &classes, 2, says);
    }
    std::fs::write(&classes, "pizza\n").unwrap();
    let train = root.join("meta/train.txt");
    std::fs::write(&train, "pizza/001\npizza/../../x\n").unwrap();
    let err = ImageDataset::food101(root, Food101Split::Train).unwrap_err();
    assert_refused(err, &train, 2, "separator");
    assert_eq!(
        ImageDataset::food101(root, Food101Split::Test)
            .unwrap()
            .len(),
        1
    );
}

/// A cache file of `samples × views` one-float features with the given header fields.
fn cache_file(dir: &Path, name: &str, header: &str, values: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut bytes: Vec<u8> = (0..values).flat_map(|_| 1.0f32.to_le_bytes()).collect();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(b"GRFTFC01");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn header(samples: usize, views: usize, classes: &str, fingerprint: &str) -> String {
    format!(
        r#"{{"samples":{samples},"views":{views},"feature_shape":[1,1,1],"num_classes":2,"precision":"F32","classes":{classes},"multi_hot":null,"fingerprint":"{fingerprint}"}}"#
    )
}

#[test]
fn forged_feature_cache_files_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The sound file opens.
    let ok = cache_file(d, "ok.cache", &header(2, 1, "[0,1]", "fp"), 2);
    assert_eq!(FeatureCache::open(&ok, "fp").unwrap().views(), 1);

    // header_len + 16 overflows u64
    let path = d.join("overflow.cache");
    let mut bytes = (u64::MAX - 7).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"GRFTFC01");
    std::fs::write(&path, bytes).unwrap();
    let cases = [
        (path, "header length"),
        (
            cache_file(d, "views0.cache", &header(1, 0, "[0]", "fp"), 0),
            "0 views",
        ),
        (
            cache_file(d, "labels.cache", &header(2, 1, "[0]", "fp"), 2),
            "1 labels for 2 samples",
        ),
        (
            cache_file(d, "range.cache", &header(1, 1, "[5]", "fp"), 1),
            "label 5 is out of range",
        ),
    ];
    for (path, says) in cases {
        let err = FeatureCache::open(&path, "fp").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, GrafterError::FeatureCache { .. }), "{msg}");
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(says),
            "{msg}"
        );
        println!("REFUSED {msg}");
    }
}

#[test]
fn an_empty_fingerprint_never_accepts_a_cache_file() {
    let dir = tempfile::tempdir().unwrap();
    let stale = cache_file(dir.path(), "stale.cache", &header(1, 1, "[0]", ""), 1);
    let err = FeatureCache::open(&stale, "").unwrap_err().to_string();
    assert!(
        err.contains("stale.cache") && err.contains("fingerprint"),
        "{err}"
    );

    // Building a cache file with the default (empty) fingerprint is refused up front.
    image_folder(&dir.path().join("imgs"), &["a", "b"], 2);
    let device = Device::flex();
    let backbone = Tiny::new(&device);
    let ds = ImageDataset::image_folder(dir.path().join("imgs")).unwrap();
    let loader =
        grafter_data::ImageLoader::new(ds, Preprocess::imagenet().with_input_size(SIDE, SIDE));
    let options = CacheOptions {
        storage: CacheStorage::File {
            path: dir.path().join("new.cache"),
            precision: CachePrecision::F32,
        },
        ..Default::default()
    };
    let err = FeatureCache::build(&backbone, &loader, &options, &device).unwrap_err();
    assert!(err.to_string().contains("fingerprint"), "{err}");
    assert!(!dir.path().join("new.cache").exists());
}
