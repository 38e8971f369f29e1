use burn::tensor::Device;
use grafter::prelude::*;
use grafter::source::InMemoryDataset;

use crate::common::{TinyCnn, classifier, config, dataset};

fn fit_err(cfg: FineTuneConfig, train: &InMemoryDataset, valid: &InMemoryDataset) -> GrafterError {
    let device = Device::flex();
    FineTune::new(cfg, TrainAll)
        .fit(classifier(&device, 1, 0.0), train, valid, &device)
        .unwrap_err()
}

#[test]
fn zero_classes_is_a_config_error() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let err = LinearHeadConfig::new(32, 0).try_init(&device).unwrap_err();
    assert!(matches!(err, GrafterError::Config(_)), "{err}");
    let err = MlpHeadConfig::new(32, 0, vec![8])
        .try_init(&device)
        .unwrap_err();
    assert!(matches!(err, GrafterError::Config(_)), "{err}");
    let err = MlpHeadConfig::new(32, 3, vec![0])
        .try_init(&device)
        .unwrap_err();
    assert!(err.to_string().contains("width 0"), "{err}");
    let err = LinearHeadConfig::new(32, 3)
        .with_dropout(1.5)
        .try_init(&device)
        .unwrap_err();
    assert!(err.to_string().contains("dropout"), "{err}");
    let err = InMemoryDataset::new(vec![], [3, 2, 2], vec![], 0).unwrap_err();
    assert!(matches!(err, GrafterError::Config(_)), "{err}");
}

#[test]
fn empty_datasets_are_typed_errors() {
    let _rng = crate::common::rng_lock();
    let empty = InMemoryDataset::new(vec![], [3, 16, 16], vec![], 4).unwrap();
    let err = fit_err(config(1), &empty, &dataset(2, 1));
    assert!(
        matches!(err, GrafterError::EmptyDataset { role: "training" }),
        "{err}"
    );
    let err = fit_err(config(1), &dataset(2, 1), &empty);
    assert!(
        matches!(err, GrafterError::EmptyDataset { role: "validation" }),
        "{err}"
    );
}

#[test]
fn head_size_mismatches_are_typed_errors() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let head = LinearHeadConfig::new(16, 4).try_init(&device).unwrap();
    let err = Classifier::new(TinyCnn::new(&device), head).unwrap_err();
    assert!(
        matches!(
            err,
            GrafterError::ChannelMismatch {
                backbone: 32,
                head: 16
            }
        ),
        "{err}"
    );
    let head = LinearHeadConfig::new(32, 3).try_init(&device).unwrap();
    let model = Classifier::new(TinyCnn::new(&device), head).unwrap();
    let err = FineTune::new(config(1), TrainAll)
        .fit(model, &dataset(2, 1), &dataset(2, 2), &device)
        .unwrap_err();
    assert!(
        matches!(
            err,
            GrafterError::OutputMismatch {
                head: 3,
                dataset: 4
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_hyper_parameters_are_config_errors() {
    let _rng = crate::common::rng_lock();
    let (t, v) = (dataset(2, 1), dataset(2, 2));
    for cfg in [
        config(0),
        config(1).with_batch_size(0),
        config(1).with_lr(-1.0),
        config(1).with_lr(f64::NAN),
        config(1).with_label_smoothing(1.0),
        config(1).with_grad_clip_norm(Some(0.0)),
    ] {
        let err = fit_err(cfg, &t, &v);
        assert!(matches!(err, GrafterError::Config(_)), "{err}");
    }
}

#[test]
fn bad_labels_and_run_directories_are_typed_errors() {
    let _rng = crate::common::rng_lock();
    let err = InMemoryDataset::new(vec![0.0; 12], [3, 2, 2], vec![7], 4).unwrap_err();
    assert!(err.to_string().contains("label 7"), "{err}");
    let err = InMemoryDataset::new(vec![0.0; 5], [3, 2, 2], vec![1], 4).unwrap_err();
    assert!(matches!(err, GrafterError::Data(_)), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let err = FineTune::resume(dir.path()).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");

    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let err = FineTune::resume(dir.path()).unwrap_err();
    assert!(matches!(err, GrafterError::Checkpoint { .. }), "{err}");

    // a directory that already holds a run is not overwritten
    let device = Device::flex();
    let run = tempfile::tempdir().unwrap();
    let (t, v) = (dataset(2, 1), dataset(2, 2));
    FineTune::new(config(1), TrainAll)
        .out_dir(run.path())
        .fit(classifier(&device, 1, 0.0), &t, &v, &device)
        .unwrap();
    let err = FineTune::new(config(1), TrainAll)
        .out_dir(run.path())
        .fit(classifier(&device, 1, 0.0), &t, &v, &device)
        .unwrap_err();
    assert!(err.to_string().contains("already holds a run"), "{err}");

    // a truncated model file in the latest checkpoint
    let model = run.path().join("checkpoints/epoch-0001/model.bpk");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 3]).unwrap();
    let err = FineTune::resume(run.path())
        .unwrap()
        .progress(false)
        .fit(classifier(&device, 1, 0.0), &t, &v, &device)
        .unwrap_err();
    assert!(
        matches!(&err, GrafterError::Checkpoint { path, .. } if path.ends_with("model.bpk")),
        "{err}"
    );
}
