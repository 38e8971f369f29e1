//! Mixed-precision training on flex (which computes in f16 and bf16 too): the loop trains in
//! half precision with f32 master weights, tracks the f32 run, keeps frozen stages bit for
//! bit, recovers from gradient overflow, and resumes with its loss scale.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{DType, Device, Tensor};
use grafter::finetune::Precision;
use grafter::prelude::*;

use crate::common::{classifier, config, dataset, frozen_and_trained, params};

/// The dtype of every float tensor (parameters and running statistics) of `module`.
fn dtypes<M: Module>(module: &M) -> Vec<DType> {
    struct Collect(Vec<DType>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.val().dtype());
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}

fn losses(h: &[grafter::history::EpochRecord]) -> Vec<f64> {
    h.iter().map(|r| r.train.loss).collect()
}

#[test]
fn f16_and_bf16_training_track_the_f32_run_and_keep_f32_weights() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(32, 1);
    let valid = dataset(16, 2);
    let run = |p: Precision| {
        let dir = tempfile::tempdir().unwrap();
        let outcome = FineTune::new(config(6).with_precision(p), TrainAll)
            .out_dir(dir.path())
            .fit(classifier(&device, 7, 0.0), &train, &valid, &device)
            .unwrap();
        // the saved best model is f32 and loads into an f32 classifier
        let best = std::fs::read(dir.path().join("best.bpk")).unwrap();
        assert!(!best.is_empty());
        outcome
    };
    let full = run(Precision::F32);
    let f32_losses = losses(&full.history);
    for p in [Precision::F16, Precision::Bf16] {
        let outcome = run(p);
        let l = losses(&outcome.history);
        let best = outcome
            .history
            .iter()
            .map(|r| r.valid.top1)
            .fold(0.0, f64::max);
        println!("{p}: train loss {l:.4?} (f32 {f32_losses:.4?}), best valid top-1 {best:.3}");
        assert!(
            l[5] < 0.5 * l[0],
            "{p} loss did not decrease: {:.4} -> {:.4}",
            l[0],
            l[5]
        );
        assert!(best >= 0.9, "{p} validation accuracy only {best}");
        // the first epoch runs the same data through the same initial weights: its mean
        // loss differs from f32 only by rounding
        let rel = (l[0] - f32_losses[0]).abs() / f32_losses[0];
        let tol = if p == Precision::F16 { 0.02 } else { 0.05 };
        assert!(
            rel < tol,
            "{p} epoch-1 loss {} vs f32 {}",
            l[0],
            f32_losses[0]
        );
        let kinds = dtypes(&outcome.model);
        assert!(
            kinds.iter().all(|d| *d == DType::F32),
            "{p}: the trained model must be f32, got {kinds:?}"
        );
        assert_ne!(
            params(&outcome.model),
            params(&full.model),
            "{p} run is the f32 run: the precision switch did nothing"
        );
    }
}

#[test]
fn frozen_stages_are_bit_identical_under_f16() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let model = classifier(&device, 11, 0.0);
    let before = params(&model);
    let outcome = FineTune::new(config(2).with_precision(Precision::F16), FreezeFirst(2))
        .fit(model, &dataset(16, 1), &dataset(8, 2), &device)
        .unwrap();
    let counts = frozen_and_trained(
        &before,
        &params(&outcome.model),
        &["backbone.stem", "backbone.stage1"],
        "under f16 training",
    );
    assert_eq!(counts, (10, 7));
}

#[test]
fn an_overflowing_loss_scale_skips_steps_backs_off_and_still_trains() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    // 2^30 × the loss overflows f16 (65504) in the first backward: steps are skipped and the
    // scale halves until the gradients fit (about 2^20 here)
    let cfg = config(6)
        .with_precision(Precision::F16)
        .with_loss_scale(2f64.powi(30));
    let model = classifier(&device, 5, 0.0);
    let before = params(&model);
    let outcome = FineTune::new(cfg, TrainAll)
        .out_dir(dir.path())
        .fit(model, &dataset(32, 1), &dataset(8, 2), &device)
        .unwrap();
    assert_ne!(params(&outcome.model), before);
    let l = losses(&outcome.history);
    assert!(l[5] < 0.7 * l[0], "loss did not decrease: {l:?}");
    let latest = grafter::checkpoint::CheckpointDir::new(
        dir.path(),
        std::sync::Arc::new(grafter::checkpoint::FsWriter),
        2,
    )
    .latest()
    .unwrap()
    .unwrap();
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(latest.join("state.json")).unwrap()).unwrap();
    let ls = &state["loss_scale"];
    let scale = ls["scale"].as_f64().unwrap();
    let skipped = ls["skipped_steps"].as_u64().unwrap();
    println!("loss scale after 6 epochs: {scale} ({skipped} of 48 steps skipped); loss {l:.4?}");
    assert!(skipped >= 5, "only {skipped} steps skipped from 2^30");
    assert!(
        skipped < 24,
        "{skipped} of 48 steps skipped: the scale did not settle"
    );
    assert!(scale < 2f64.powi(30) && scale >= 1.0, "scale {scale}");
}

#[test]
fn a_resumed_f16_run_equals_an_uninterrupted_one() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(16, 1);
    let valid = dataset(8, 2);
    let cfg = || {
        config(4)
            .with_precision(Precision::F16)
            .with_loss_scale(2f64.powi(20))
    };
    let straight = tempfile::tempdir().unwrap();
    let whole = FineTune::new(cfg(), TrainAll)
        .out_dir(straight.path())
        .fit(classifier(&device, 9, 0.0), &train, &valid, &device)
        .unwrap();
    let paused = tempfile::tempdir().unwrap();
    FineTune::new(cfg(), TrainAll)
        .out_dir(paused.path())
        .pause_after(2)
        .fit(classifier(&device, 9, 0.0), &train, &valid, &device)
        .unwrap();
    let resumed = FineTune::resume(paused.path())
        .unwrap()
        .fit(classifier(&device, 1, 0.0), &train, &valid, &device)
        .unwrap();
    assert_eq!(losses(&resumed.history), losses(&whole.history));
    assert!(params(&resumed.model) == params(&whole.model));
}

#[test]
fn an_unknown_precision_name_is_refused() {
    let err = "fp8".parse::<Precision>().unwrap_err().to_string();
    assert!(err.contains("fp8"), "{err}");
}
