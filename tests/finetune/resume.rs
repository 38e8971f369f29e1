use burn::tensor::Device;
use grafter::prelude::*;
use grafter::{FitOutcome, LinearHead};

use crate::common::{TinyCnn, classifier, config, dataset, params};

/// Two epochs, then everything dropped, then a resume for the last two: the weights (and
/// BatchNorm statistics) and the metrics log must equal those of a straight four-epoch run.
#[test]
fn resumed_run_is_bit_identical_to_an_uninterrupted_one() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(16, 1);
    let valid = dataset(8, 2);
    // dropout in the head and a phase change at epoch 1 exercise the RNG and plan replay
    let cfg = config(4).with_restore_best(false);
    let policy = || TwoPhase::new(1, 10.0);

    let straight_dir = tempfile::tempdir().unwrap();
    let straight = FineTune::new(cfg.clone(), policy())
        .out_dir(straight_dir.path())
        .fit(classifier(&device, 21, 0.3), &train, &valid, &device)
        .unwrap();

    let split_dir = tempfile::tempdir().unwrap();
    {
        let first = FineTune::new(cfg.clone(), policy())
            .out_dir(split_dir.path())
            .pause_after(2)
            .fit(classifier(&device, 21, 0.3), &train, &valid, &device)
            .unwrap();
        assert_eq!(first.history.len(), 2);
    }
    // a different initialisation: resume must replace every weight
    let resumed = FineTune::resume(split_dir.path(), policy())
        .unwrap()
        .progress(false)
        .fit(classifier(&device, 999, 0.3), &train, &valid, &device)
        .unwrap();

    assert_eq!(resumed.history.len(), 4);
    let a = params(&straight.model);
    let b = params(&resumed.model);
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs after resume");
    }
    let log = |d: &std::path::Path| std::fs::read(d.join("metrics.jsonl")).unwrap();
    assert_eq!(log(straight_dir.path()), log(split_dir.path()));
    assert_eq!(straight.history, resumed.history);
}

/// `fine_tune` on a fresh seed-1 classifier, 8 training and 4 validation images, quietly.
fn fit_small(
    fine_tune: FineTune,
    device: &Device,
) -> grafter::Result<FitOutcome<TinyCnn, LinearHead>> {
    fine_tune.progress(false).fit(
        classifier(device, 1, 0.0),
        &dataset(8, 1),
        &dataset(4, 2),
        device,
    )
}

#[test]
fn resume_with_another_policy_is_refused() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    fit_small(
        FineTune::new(config(3), TrainAll)
            .out_dir(dir.path())
            .pause_after(1),
        &device,
    )
    .unwrap();
    let err = fit_small(FineTune::resume(dir.path(), Frozen).unwrap(), &device).unwrap_err();
    assert!(matches!(err, GrafterError::Config(_)), "{err}");
}

/// A run saved before a setting existed (here `precision` and `loss_scale`, added with mixed
/// precision, and the training recipes' settings) resumes with that setting's default; a
/// config.json that is not an object is an error naming the file.
#[test]
fn a_config_saved_without_newer_settings_resumes_with_their_defaults() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    fit_small(
        FineTune::new(config(2), TrainAll)
            .out_dir(dir.path())
            .pause_after(1),
        &device,
    )
    .unwrap();
    let path = dir.path().join("config.json");
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let fields = saved.as_object_mut().unwrap();
    assert!(fields.remove("precision").is_some() && fields.remove("loss_scale").is_some());
    // and those of the training recipes
    for key in ["accumulate_steps", "ema", "class_weights", "sampler"] {
        assert!(fields.remove(key).is_some(), "{key} not saved");
    }
    std::fs::write(&path, serde_json::to_string(&saved).unwrap()).unwrap();
    let resume = FineTune::resume(dir.path(), TrainAll).unwrap();
    assert_eq!(resume.config().precision, grafter::finetune::Precision::F32);
    assert_eq!(resume.config().accumulate_steps, 1);
    assert!(resume.config().ema.is_none() && resume.config().class_weights.is_none());
    assert_eq!(resume.config().sampler, grafter::Sampler::Shuffle);
    assert_eq!(resume.config().epochs, 2);
    let outcome = fit_small(resume, &device).unwrap();
    assert_eq!(outcome.history.len(), 2);

    std::fs::write(&path, "[1, 2]").unwrap();
    let err = FineTune::resume(dir.path(), TrainAll)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("not a JSON object"),
        "{err}"
    );
}
