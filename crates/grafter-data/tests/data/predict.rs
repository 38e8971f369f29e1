//! `Predictor`: top-k probabilities for image files agree with the loader + model path,
//! flip TTA averages an image with its mirror, bad files are reported by name.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use grafter_core::source::EpochRequest;
use grafter_core::{Backbone, Classifier, LinearHeadConfig, Preprocess};
use grafter_data::image::ImageFormat;
use grafter_data::predict::{PredictFailure, Predictor};
use grafter_data::{ClassNames, DecodeError, ImageDataset, ImageLoader};

use crate::common::{Tiny, drain, image_folder, picture, write};

fn model(device: &Device) -> Classifier<Tiny, grafter_core::LinearHead> {
    device.seed(11);
    let head = LinearHeadConfig::new(12, 3).try_init(device).unwrap();
    Classifier::new(Tiny::new(device), head).unwrap().valid()
}

fn classes() -> ClassNames {
    ClassNames::new(vec!["a".into(), "b".into(), "c".into()]).unwrap()
}

#[test]
fn probabilities_match_the_loader_and_model_path() {
    let dir = tempfile::tempdir().unwrap();
    image_folder(dir.path(), &["a", "b", "c"], 4);
    let device = Device::flex();
    let m = model(&device);
    let ds = ImageDataset::image_folder(dir.path()).unwrap();
    let paths: Vec<_> = ds.samples().iter().map(|s| s.path.clone()).collect();
    let pre = m.backbone.preprocess();

    // Reference: the training pipeline's evaluation batches, softmax of the logits.
    let loader = ImageLoader::new(ds, pre.clone());
    let request = EpochRequest {
        epoch: 0,
        seed: 0,
        batch_size: 64,
        train: false,
    };
    let (px, _, sizes) = drain(&loader, request);
    let n: usize = sizes.iter().sum();
    assert_eq!(n, paths.len());
    let x = Tensor::<4>::from_data(TensorData::new(px, [n, 3, 16, 16]), &device);
    let reference = softmax(m.forward(x), 1)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();

    let predictor = Predictor::new(m, classes(), pre, device)
        .unwrap()
        .with_batch_size(5);
    let results = predictor.predict_files(&paths, 3);
    let mut worst = 0f32;
    for (i, r) in results.iter().enumerate() {
        let p = r.as_ref().unwrap();
        assert_eq!(p.path, paths[i]);
        assert_eq!(p.top.len(), 3);
        assert!(
            p.top
                .windows(2)
                .all(|w| w[0].probability >= w[1].probability)
        );
        let total: f32 = p.top.iter().map(|s| s.probability).sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        for s in &p.top {
            assert_eq!(s.class, ["a", "b", "c"][s.index]);
            worst = worst.max((s.probability - reference[i * 3 + s.index]).abs());
        }
    }
    println!("predictor vs loader+model: max abs diff {worst:.2e}");
    assert!(worst < 1e-5, "{worst}");
    let top1 = predictor.predict_files(&paths[..2], 1);
    assert!(top1.iter().all(|r| r.as_ref().unwrap().top.len() == 1));
}

#[test]
fn flip_tta_averages_an_image_and_its_mirror() {
    let dir = tempfile::tempdir().unwrap();
    // Input-sized and uncropped, so that the mirror of the file is exactly the mirror of
    // what the network sees (resize and crop rounding are not mirror-symmetric in general).
    let img = picture(16, 16, 1, 3);
    let mirrored = grafter_data::image::imageops::flip_horizontal(&img);
    let (a, b) = (dir.path().join("a.png"), dir.path().join("a_mirror.png"));
    write(&a, &img, ImageFormat::Png);
    write(&b, &mirrored, ImageFormat::Png);
    let device = Device::flex();
    let m = model(&device);
    let mut pre = m.backbone.preprocess();
    pre.crop_ratio = 1.0;
    let plain = Predictor::new(m.clone(), classes(), pre.clone(), device.clone()).unwrap();
    let tta = Predictor::new(m, classes(), pre, device)
        .unwrap()
        .with_flip_tta(true);
    let by_class = |p: &grafter_data::predict::Prediction| {
        let mut v = [0f32; 3];
        for s in &p.top {
            v[s.index] = s.probability;
        }
        v
    };
    let plain_out = plain.predict_files(&[&a, &b], 3);
    let pa = by_class(plain_out[0].as_ref().unwrap());
    let pb = by_class(plain_out[1].as_ref().unwrap());
    let t = by_class(tta.predict_files(&[&a], 3)[0].as_ref().unwrap());
    for c in 0..3 {
        assert!(
            (t[c] - (pa[c] + pb[c]) / 2.0).abs() < 1e-5,
            "{t:?} vs {pa:?} {pb:?}"
        );
    }
    assert_ne!(
        pa, pb,
        "the mirror image must give different outputs for this test to bite"
    );
}

#[test]
fn bad_files_are_reported_by_name_and_the_others_still_predicted() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jpg");
    write(&good, &picture(30, 30, 0, 1), ImageFormat::Jpeg);
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.png");
    std::fs::write(&text, b"this is not a PNG").unwrap();
    let missing = dir.path().join("missing.jpg");
    let device = Device::flex();
    let m = model(&device);
    let pre = m.backbone.preprocess();
    let predictor = Predictor::new(m, classes(), pre, device).unwrap();
    let out = predictor.predict_files(&[&empty, &good, &text, &missing], 2);
    assert_eq!(out.len(), 4);
    assert_eq!(out[1].as_ref().unwrap().path, good);
    let why = [
        DecodeError::Empty,
        DecodeError::NotAnImage,
        DecodeError::Io {
            what: "read file metadata",
            reason: String::new(),
        },
    ];
    for ((i, path), why) in [(0, &empty), (2, &text), (3, &missing)]
        .into_iter()
        .zip(why)
    {
        let e = out[i].as_ref().unwrap_err();
        assert_eq!(&e.path, path);
        assert!(
            e.to_string()
                .contains(path.file_name().unwrap().to_str().unwrap())
        );
        let PredictFailure::Decode(got) = &e.reason else {
            panic!("{e}")
        };
        assert_eq!(
            std::mem::discriminant(got),
            std::mem::discriminant(&why),
            "{e}"
        );
    }
}

#[test]
fn a_class_list_of_the_wrong_length_is_refused() {
    let device = Device::flex();
    let m = model(&device);
    let pre = m.backbone.preprocess();
    let two = ClassNames::new(vec!["a".into(), "b".into()]).unwrap();
    let err = Predictor::new(m, two, pre, device).unwrap_err().to_string();
    assert!(
        err.contains("3 outputs") && err.contains("2 class names"),
        "{err}"
    );
}

#[test]
fn an_image_in_memory_is_predicted_as_its_file_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frame.png");
    let img = picture(28, 22, 2, 3);
    write(&path, &img, ImageFormat::Png); // lossless: the file decodes to `img`
    let device = Device::flex();
    let m = model(&device);
    let pre = m.backbone.preprocess();
    let predictor = Predictor::new(m, classes(), pre, device)
        .unwrap()
        .with_flip_tta(true);
    let from_file = predictor.predict_files(&[&path], 3).remove(0).unwrap();
    let in_memory = predictor.predict_image(&img, 3).unwrap();
    assert_eq!(in_memory.top, from_file.top);
    assert_eq!(in_memory.path, std::path::PathBuf::new());
}

#[test]
fn a_datasets_decode_limits_reach_its_loader() {
    let dir = tempfile::tempdir().unwrap();
    image_folder(dir.path(), &["a", "b"], 3); // images of 24..41 × 20..31 pixels
    let limits = grafter_data::DecodeLimits {
        max_side: 30,
        ..grafter_data::DecodeLimits::default()
    };
    let ds = ImageDataset::image_folder(dir.path())
        .unwrap()
        .with_limits(limits);
    let wide: Vec<_> = (ds.samples().iter())
        .filter(|s| grafter_data::image::image_dimensions(&s.path).unwrap().0 > 30)
        .map(|s| s.path.clone())
        .collect();
    assert!(!wide.is_empty() && wide.len() < ds.len(), "{wide:?}");
    let loader = ImageLoader::new(ds, Preprocess::imagenet().with_input_size(16, 16));
    let request = EpochRequest {
        epoch: 0,
        seed: 0,
        batch_size: 4,
        train: false,
    };
    let (_, labels, _) = drain(&loader, request);
    assert_eq!(labels.len(), 6 - wide.len(), "the wide images are skipped");
    for path in &wide {
        let bad = loader.bad_files();
        let found = bad
            .find(path)
            .unwrap_or_else(|| panic!("{path:?} not reported"));
        assert!(found.reason.contains("exceeds limit"), "{found:?}");
    }
}
