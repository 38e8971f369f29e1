//! Observers: told about every step and epoch, and unable to change the run.

use std::path::Path;
use std::sync::{Arc, Mutex};

use burn::tensor::Device;
use grafter::finetune::{Observer, StepInfo};
use grafter::history::EpochRecord;
use grafter::prelude::*;
use grafter::{FitOutcome, LinearHead};

use crate::common::{TinyCnn, classifier, config, dataset, params};

/// Observes nothing.
struct Noop;

impl Observer for Noop {}

/// Keeps every step and the index of every finished epoch.
#[derive(Default)]
struct Recorder {
    steps: Vec<StepInfo>,
    epochs: Vec<usize>,
}

impl Observer for Recorder {
    fn on_step(&mut self, step: &StepInfo) {
        self.steps.push(*step);
    }

    fn on_epoch_end(&mut self, epoch: &EpochRecord) {
        self.epochs.push(epoch.epoch);
    }
}

fn recorder() -> Arc<Mutex<Recorder>> {
    Arc::new(Mutex::new(Recorder::default()))
}

/// A three-epoch two-phase run (dropout in the head, a phase change) into `dir`.
fn run(fine_tune: FineTune, dir: &Path, device: &Device) -> FitOutcome<TinyCnn, LinearHead> {
    fine_tune
        .out_dir(dir)
        .fit(
            classifier(device, 7, 0.3),
            &dataset(16, 1),
            &dataset(8, 2),
            device,
        )
        .unwrap()
}

#[test]
fn a_run_with_observers_is_bit_identical_to_one_without() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let cfg = config(3).with_restore_best(false);
    let policy = || TwoPhase::new(1, 10.0);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let plain = run(
        FineTune::new(cfg.clone(), policy()),
        dirs[0].path(),
        &device,
    );
    let noop = run(
        FineTune::new(cfg.clone(), policy()).observer(Noop),
        dirs[1].path(),
        &device,
    );
    let counted = recorder();
    let counting = run(
        FineTune::new(cfg, policy())
            .observer(counted.clone())
            .observer(Noop),
        dirs[2].path(),
        &device,
    );
    assert!(!counted.lock().unwrap().steps.is_empty());

    let reference = params(&plain.model);
    let log = |d: &Path| std::fs::read(d.join("metrics.jsonl")).unwrap();
    for (name, observed, dir) in [
        ("no-op", &noop, &dirs[1]),
        ("counting", &counting, &dirs[2]),
    ] {
        let got = params(&observed.model);
        assert_eq!(got.len(), reference.len());
        for ((param, x), (_, y)) in reference.iter().zip(&got) {
            assert!(x == y, "{param} differs with a {name} observer");
        }
        assert_eq!(observed.history, plain.history, "{name} observer");
        assert_eq!(log(dir.path()), log(dirs[0].path()), "{name} observer");
    }
}

#[test]
fn observers_hear_every_step_and_every_epoch() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    // 64 training images in batches of 16: 4 steps per epoch
    let dir = tempfile::tempdir().unwrap();
    let first = recorder();
    let paused = run(
        FineTune::new(config(3), TrainAll)
            .observer(first.clone())
            .pause_after(2),
        dir.path(),
        &device,
    );
    assert_eq!(paused.history.len(), 2);
    let rest = recorder();
    let resumed = FineTune::resume(dir.path())
        .unwrap()
        .progress(false)
        .observer(rest.clone())
        .fit(
            classifier(&device, 8, 0.3),
            &dataset(16, 1),
            &dataset(8, 2),
            &device,
        )
        .unwrap();
    assert_eq!(resumed.history.len(), 3);

    let first = first.lock().unwrap();
    let rest = rest.lock().unwrap();
    assert_eq!(first.epochs, [0, 1]);
    assert_eq!(
        rest.epochs,
        [2],
        "a resumed call reports only the epochs it runs"
    );
    let steps: Vec<(usize, usize, usize)> = first
        .steps
        .iter()
        .chain(&rest.steps)
        .map(|s| (s.epoch, s.batch, s.step))
        .collect();
    let expected: Vec<(usize, usize, usize)> =
        (0..12).map(|step| (step / 4, step % 4, step)).collect();
    assert_eq!(steps, expected);
    for s in first.steps.iter().chain(&rest.steps) {
        assert_eq!(s.images, 16);
        assert!(s.loss.is_finite() && s.lr > 0.0 && s.applied);
        assert_eq!(s.loss_scale, None, "an f32 run has no loss scale");
    }
    // the epoch's record and the last step agree on the rate
    let last = rest.steps.last().unwrap();
    assert_eq!(last.lr, resumed.history[2].lr);
}

#[test]
fn the_feature_cache_reports_the_same_steps_as_live_training() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let (train, valid) = (dataset(8, 1), dataset(4, 2));
    let mut seen = Vec::new();
    for cache in [true, false] {
        let rec = recorder();
        FineTune::new(config(2), Frozen)
            .feature_cache(cache)
            .observer(rec.clone())
            .fit(classifier(&device, 3, 0.0), &train, &valid, &device)
            .unwrap();
        let rec = rec.lock().unwrap();
        assert_eq!(rec.epochs, [0, 1]);
        seen.push(
            rec.steps
                .iter()
                .map(|s| (s.epoch, s.batch, s.step, s.images))
                .collect::<Vec<_>>(),
        );
    }
    // 32 images in batches of 16
    assert_eq!(seen[0].len(), 4);
    assert_eq!(seen[0], seen[1]);
}
