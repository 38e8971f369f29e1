//! A saved run read back for prediction: `save_for_prediction` then `Predictor::from_run`
//! gives the in-process model's probabilities (through the exported ONNX network), takes the
//! activation from the run's task, and refuses missing or hostile files by name.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use grafter::data::predict::{Activation, Predictor};
use grafter::data::{ClassNames, save_for_prediction};
use grafter::zoo::ResNetConfig;
use grafter::{Classifier, LinearHead, LinearHeadConfig, Preprocess};

use crate::images::image_folder;

type Model = Classifier<grafter::zoo::ResNet, LinearHead>;

fn model(device: &Device) -> Model {
    device.seed(5);
    let backbone = ResNetConfig::resnet18().init(device);
    let head = LinearHeadConfig::new(512, 3).try_init(device).unwrap();
    Classifier::new(backbone, head).unwrap().valid()
}

fn classes() -> ClassNames {
    ClassNames::new(vec!["a".into(), "b".into(), "c".into()]).unwrap()
}

fn preprocess() -> Preprocess {
    Preprocess::imagenet().with_input_size(32, 32)
}

/// A run folder holding what `save_for_prediction` writes for `model(device)`, and the model.
fn saved(device: &Device) -> (tempfile::TempDir, Model) {
    let run = tempfile::tempdir().unwrap();
    let model = model(device);
    save_for_prediction(run.path(), &model, &classes(), &preprocess()).unwrap();
    (run, model)
}

fn images(dir: &Path) -> Vec<std::path::PathBuf> {
    image_folder(dir, &["a", "b"], 3);
    let mut paths: Vec<_> = ["a", "b"]
        .iter()
        .flat_map(|c| std::fs::read_dir(dir.join(c)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
}

/// Every image's probabilities, in class order.
fn probabilities<M: grafter::data::predict::ImageModel>(
    predictor: &Predictor<M>,
    paths: &[std::path::PathBuf],
) -> Vec<[f32; 3]> {
    predictor
        .predict_files(paths, 3)
        .into_iter()
        .map(|r| {
            let mut p = [0f32; 3];
            for s in r.unwrap().top {
                p[s.index] = s.probability;
            }
            p
        })
        .collect()
}

#[test]
fn from_run_predicts_what_the_trained_model_predicts() {
    // Burn\'s flex generator is one per process: no other training test may draw meanwhile
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let ((run, model), data) = (saved(&device), tempfile::tempdir().unwrap());
    for file in ["model.onnx", "classes.json", "preprocess.json"] {
        assert!(run.path().join(file).is_file(), "{file}");
        assert!(!run.path().join(format!("{file}.tmp")).exists(), "{file}");
    }
    let paths = images(data.path());

    let reference = Predictor::new(model, classes(), preprocess(), device.clone()).unwrap();
    let loaded = Predictor::from_run(run.path(), &device).unwrap();
    assert_eq!(loaded.classes(), &classes());
    let (want, got) = (
        probabilities(&reference, &paths),
        probabilities(&loaded, &paths),
    );
    let mut worst = 0f32;
    for (w, g) in want.iter().zip(&got) {
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5, "softmax: {w:?}");
        for (a, b) in w.iter().zip(g) {
            worst = worst.max((a - b).abs());
        }
    }
    println!("from_run vs in-process: max probability difference {worst:e}");
    assert!(worst <= 1e-5, "from_run differs by {worst}");
}

#[test]
fn the_runs_task_picks_the_activation_and_binary_is_refused() {
    // Burn\'s flex generator is one per process: no other training test may draw meanwhile
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let ((run, model), data) = (saved(&device), tempfile::tempdir().unwrap());
    let paths = images(data.path());
    let config = run.path().join("config.json");

    std::fs::write(&config, r#"{"task": "MultiLabel", "epochs": 3}"#).unwrap();
    let sigmoid = Predictor::from_run(run.path(), &device).unwrap();
    let reference = Predictor::new(model, classes(), preprocess(), device.clone())
        .unwrap()
        .with_activation(Activation::Sigmoid);
    let (want, got) = (
        probabilities(&reference, &paths),
        probabilities(&sigmoid, &paths),
    );
    for (w, g) in want.iter().zip(&got) {
        for (a, b) in w.iter().zip(g) {
            assert!((a - b).abs() <= 1e-5, "{w:?} vs {g:?}");
        }
    }
    assert!(
        got.iter()
            .any(|p| (p.iter().sum::<f32>() - 1.0).abs() > 1e-3),
        "per-class sigmoids do not sum to one: {got:?}"
    );

    std::fs::write(&config, r#"{"task": "Binary"}"#).unwrap();
    let err = Predictor::from_run(run.path(), &device).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
    std::fs::write(&config, r#"{"task": "Regression"}"#).unwrap();
    let err = Predictor::from_run(run.path(), &device).unwrap_err();
    assert!(err.to_string().contains("unknown task"), "{err}");
}

#[test]
fn missing_or_hostile_run_files_are_refused_by_name() {
    // Burn\'s flex generator is one per process: no other training test may draw meanwhile
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let (run, _) = saved(&device);
    let pre = run.path().join("preprocess.json");
    let good = std::fs::read_to_string(&pre).unwrap();
    let with = |field: &str, value: &str| {
        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        v[field] = serde_json::from_str(value).unwrap();
        std::fs::write(&pre, v.to_string()).unwrap();
        Predictor::from_run(run.path(), &device)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    for (field, value, says) in [
        ("input_size", "[1000000, 1000000]", "input_size"),
        ("input_size", "[0, 32]", "input_size"),
        ("crop_ratio", "0.0", "crop_ratio"),
        ("crop_ratio", "1.5", "crop_ratio"),
        ("std", "[0.2, 0.0, 0.2]", "std"),
        ("pixel_scale", "-1.0", "pixel_scale"),
    ] {
        let err = with(field, value);
        assert!(
            err.contains("preprocess.json") && err.contains(says),
            "{field}={value}: {err}"
        );
    }
    std::fs::write(&pre, "not json").unwrap();
    let err = Predictor::from_run(run.path(), &device).unwrap_err();
    assert!(err.to_string().contains("not a preprocess.json"), "{err}");
    std::fs::write(&pre, &good).unwrap();

    for file in ["classes.json", "model.onnx"] {
        let path = run.path().join(file);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, b"garbage").unwrap();
        let err = Predictor::from_run(run.path(), &device).unwrap_err();
        assert!(err.to_string().contains(file), "{file}: {err}");
        std::fs::remove_file(&path).unwrap();
        let err = Predictor::from_run(run.path(), &device).unwrap_err();
        assert!(err.to_string().contains(file), "{file}: {err}");
        std::fs::write(&path, bytes).unwrap();
    }
    // Classes that do not match the model's outputs.
    std::fs::write(
        run.path().join("classes.json"),
        r#"{"classes": ["x", "y"]}"#,
    )
    .unwrap();
    let err = Predictor::from_run(run.path(), &device).unwrap_err();
    assert!(err.to_string().contains("3 outputs"), "{err}");
}
