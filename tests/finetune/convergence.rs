use burn::tensor::Device;
use grafter::EarlyStopping;
use grafter::prelude::*;

use crate::common::{classifier, config, dataset};

#[test]
fn fine_tuning_separable_images_reaches_95_percent() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(32, 1);
    let valid = dataset(16, 2);
    let dir = tempfile::tempdir().unwrap();
    let outcome = FineTune::new(config(8), TrainAll)
        .out_dir(dir.path())
        .fit(classifier(&device, 7, 0.0), &train, &valid, &device)
        .unwrap();
    let h = &outcome.history;
    assert_eq!(h.len(), 8);
    let first = h.first().unwrap().train.loss;
    let last = h.last().unwrap().train.loss;
    assert!(
        last < 0.5 * first,
        "loss did not decrease: {first} -> {last}"
    );
    let best = h.iter().map(|r| r.valid.top1).fold(0.0, f64::max);
    assert!(best >= 0.95, "validation accuracy only {best}");
    // the returned model is the best one and evaluates to the recorded accuracy
    let m = grafter::evaluate(
        &outcome.model,
        &valid,
        Task::SingleLabel,
        16,
        &device,
        false,
    )
    .unwrap();
    assert_eq!(m.top1, outcome.best.unwrap().value);
    assert_eq!(m.per_class.len(), 4);
    // artefacts of a run
    for f in [
        "config.json",
        "metrics.jsonl",
        "curves.svg",
        "best.bpk",
        "latest",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let log = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 8);
    let svg = std::fs::read_to_string(dir.path().join("curves.svg")).unwrap();
    assert!(svg.contains("<polyline") || svg.contains("<path"));
}

#[test]
fn two_phase_mlp_head_with_batchnorm_and_label_smoothing_learns() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    device.seed(3);
    let head = MlpHeadConfig::new(32, 4, vec![16])
        .with_batch_norm(true)
        .with_dropout(0.1)
        .with_pooling(Pooling::AvgMax)
        .try_init(&device)
        .unwrap();
    let model = Classifier::new(crate::common::TinyCnn::new(&device), head).unwrap();
    let cfg = FineTuneConfig::fine_tune(2, 8, 5e-2)
        .with_batch_size(16)
        .with_label_smoothing(0.1)
        .with_grad_clip_norm(Some(5.0))
        .with_optimizer(OptimizerConfig::sgd())
        .with_schedule(LrSchedule::cosine_warmup())
        .with_progress(false);
    let outcome = FineTune::new(cfg, TwoPhase::new(2, 10.0))
        .fit(model, &dataset(32, 1), &dataset(16, 2), &device)
        .unwrap();
    assert_eq!(outcome.history[0].plan.phase, 0);
    assert_eq!(outcome.history[9].plan.phase, 1);
    let best = outcome.best.unwrap().value;
    assert!(best >= 0.9, "validation accuracy only {best}");
}

#[test]
fn binary_task_with_one_logit_learns() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    device.seed(5);
    // classes 0 and 1 of the synthetic set
    let keep = |ds: grafter::source::InMemoryDataset| {
        let per = 3 * crate::common::SIDE * crate::common::SIDE;
        let mut images = Vec::new();
        let mut labels = Vec::new();
        let mut all = ds.clone();
        for (i, &l) in ds.labels().iter().enumerate() {
            if l < 2 {
                images.extend_from_slice(all.image_mut(i));
                labels.push(l);
            }
        }
        assert_eq!(images.len(), per * labels.len());
        grafter::source::InMemoryDataset::new(images, ds.image_shape(), labels, 2).unwrap()
    };
    let head = LinearHeadConfig::new(32, 1).try_init(&device).unwrap();
    let model = Classifier::new(crate::common::TinyCnn::new(&device), head).unwrap();
    let outcome = FineTune::new(crate::common::config(6).with_task(Task::Binary), TrainAll)
        .fit(model, &keep(dataset(32, 1)), &keep(dataset(16, 2)), &device)
        .unwrap();
    assert!(outcome.best.unwrap().value >= 0.95);
    assert!(outcome.history[0].valid.top5.is_none());
}

#[test]
fn early_stopping_ends_the_run_after_patience_epochs_without_improvement() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    // an improvement must exceed 10 (impossible for an accuracy): epoch 0 sets the best,
    // epochs 1 and 2 do not improve, patience 1 is exceeded after epoch 2.
    let cfg = config(10).with_early_stopping(Some(EarlyStopping {
        patience: 1,
        min_delta: 10.0,
    }));
    let outcome = FineTune::new(cfg, TrainAll)
        .fit(
            classifier(&device, 8, 0.0),
            &dataset(8, 1),
            &dataset(4, 2),
            &device,
        )
        .unwrap();
    assert!(outcome.stopped_early);
    assert_eq!(outcome.history.len(), 3);
    assert_eq!(outcome.best.unwrap().epoch, 0);
}
