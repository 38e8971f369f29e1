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
    let resumed = FineTune::resume(split_dir.path())
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
    let err = fit_small(
        FineTune::resume(dir.path()).unwrap().policy(Frozen),
        &device,
    )
    .unwrap_err();
    assert!(matches!(err, GrafterError::Config(_)), "{err}");
    // the same policy passed explicitly is accepted
    let outcome = fit_small(
        FineTune::resume(dir.path()).unwrap().policy(TrainAll),
        &device,
    )
    .unwrap();
    assert_eq!(outcome.history.len(), 3);
}

/// A policy of the user's own (here: train stages in a rotating order), which `resume` cannot
/// know: the run resumes from its saved plans without it, bit-identical to the uninterrupted
/// run, and new checkpoints keep the policy's name.
#[derive(Debug)]
struct Rotating;

impl grafter::FreezePolicy for Rotating {
    fn plan(&self, epoch: usize, num_stages: usize) -> grafter::policy::EpochPlan {
        let mut plan = grafter::policy::EpochPlan::uniform(
            num_stages,
            grafter::policy::StageSetting::frozen(),
        );
        plan.stages[epoch % num_stages] = grafter::policy::StageSetting::train(0.5);
        plan
    }

    fn name(&self) -> String {
        "rotating".into()
    }
}

#[test]
fn a_custom_policy_run_resumes_without_its_policy() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let cfg = config(3).with_restore_best(false);
    let straight = fit_small(FineTune::new(cfg.clone(), Rotating), &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fit_small(
        FineTune::new(cfg, Rotating)
            .out_dir(dir.path())
            .pause_after(1),
        &device,
    )
    .unwrap();
    let resumed = fit_small(FineTune::resume(dir.path()).unwrap(), &device).unwrap();
    assert_eq!(resumed.history, straight.history);
    assert_eq!(params(&resumed.model), params(&straight.model));
    let state =
        std::fs::read_to_string(dir.path().join("checkpoints/epoch-0003/state.json")).unwrap();
    assert!(state.contains("\"policy\": \"rotating\""), "{state}");
    // a folder without a checkpoint has nothing to replay
    let empty = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("config.json"),
        empty.path().join("config.json"),
    )
    .unwrap();
    let err = FineTune::resume(empty.path()).err().unwrap().to_string();
    assert!(err.contains("no checkpoint"), "{err}");
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
    let resume = FineTune::resume(dir.path()).unwrap();
    assert_eq!(resume.config().precision, grafter::finetune::Precision::F32);
    assert_eq!(resume.config().accumulate_steps, 1);
    assert!(resume.config().ema.is_none() && resume.config().class_weights.is_none());
    assert_eq!(resume.config().sampler, grafter::Sampler::Shuffle);
    assert_eq!(resume.config().epochs, 2);
    let outcome = fit_small(resume, &device).unwrap();
    assert_eq!(outcome.history.len(), 2);

    std::fs::write(&path, "[1, 2]").unwrap();
    let err = FineTune::resume(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains("config.json") && err.contains("not a JSON object"),
        "{err}"
    );
}

/// A run killed after its last checkpoint but before that epoch's logs were rewritten (the
/// kill −9 soak found it): resuming rewrites `metrics.jsonl` and `curves.svg` from the
/// checkpoint's history, even when no epoch is left to train.
#[test]
fn resuming_rewrites_logs_a_kill_left_behind() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    fit_small(
        FineTune::new(config(2), TrainAll).out_dir(dir.path()),
        &device,
    )
    .unwrap();
    let log = dir.path().join("metrics.jsonl");
    let full = std::fs::read_to_string(&log).unwrap();
    assert_eq!(full.lines().count(), 2);
    let first_line = full.lines().next().unwrap().to_string() + "\n";
    std::fs::write(&log, &first_line).unwrap();
    std::fs::remove_file(dir.path().join("curves.svg")).unwrap();
    let outcome = fit_small(FineTune::resume(dir.path()).unwrap(), &device).unwrap();
    assert_eq!(outcome.history.len(), 2);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), full);
    assert!(dir.path().join("curves.svg").is_file());
}

/// Validation images that give a NaN loss in every pass: JSON has no NaN, so the loss, top-1
/// and best value go to `state.json` and `metrics.jsonl` as `null` — and must read back (as
/// NaN), or the run could never resume.
struct NanValidation(grafter::source::InMemoryDataset);

impl grafter::source::DataSource for NanValidation {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn num_classes(&self) -> usize {
        self.0.num_classes()
    }
    fn batches<'a>(
        &'a self,
        request: grafter::source::EpochRequest,
    ) -> Box<dyn Iterator<Item = grafter::Result<grafter::source::HostBatch>> + Send + 'a> {
        Box::new(self.0.batches(request).map(|b| {
            b.map(|mut b| {
                b.images.fill(f32::NAN);
                b
            })
        }))
    }
}

#[test]
fn a_non_finite_validation_loss_does_not_make_the_run_unresumable() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let (train, valid) = (dataset(8, 1), NanValidation(dataset(4, 2)));
    let fit = |fine_tune: FineTune| {
        fine_tune
            .progress(false)
            .fit(classifier(&device, 1, 0.0), &train, &valid, &device)
            .unwrap()
    };
    let cfg = config(3).with_restore_best(false);
    let straight = fit(FineTune::new(cfg.clone(), TrainAll));
    let dir = tempfile::tempdir().unwrap();
    fit(FineTune::new(cfg, TrainAll)
        .out_dir(dir.path())
        .pause_after(1));
    let state =
        std::fs::read_to_string(dir.path().join("checkpoints/epoch-0001/state.json")).unwrap();
    assert!(state.contains("null"), "the NaN loss is saved as null");
    let resumed = fit(FineTune::resume(dir.path()).unwrap());
    assert_eq!(resumed.history.len(), 3);
    for (a, b) in resumed.history.iter().zip(&straight.history) {
        assert!(a.valid.loss.is_nan() && b.valid.loss.is_nan());
        assert_eq!(a.train.loss, b.train.loss);
    }
    assert_eq!(params(&resumed.model), params(&straight.model));
    let log = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3);
}

/// The newest checkpoint damaged (a truncated model file, or an unreadable state.json): the
/// resume falls back to the older kept checkpoint and repeats the epochs since, ending where
/// the uninterrupted run does, bit for bit.
#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_older_one() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let cfg = config(4).with_restore_best(false).with_keep_checkpoints(2);
    let straight = fit_small(FineTune::new(cfg.clone(), TrainAll), &device).unwrap();
    for damaged in ["model.bpk", "state.json"] {
        let dir = tempfile::tempdir().unwrap();
        fit_small(
            FineTune::new(cfg.clone(), TrainAll)
                .out_dir(dir.path())
                .pause_after(3),
            &device,
        )
        .unwrap();
        let file = dir.path().join("checkpoints/epoch-0003").join(damaged);
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        let resumed = fit_small(FineTune::resume(dir.path()).unwrap(), &device).unwrap();
        assert_eq!(resumed.history, straight.history, "{damaged}");
        assert_eq!(params(&resumed.model), params(&straight.model), "{damaged}");
    }
}
