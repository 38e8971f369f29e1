//! Data-parallel training (`FineTune::devices`) on replicas of the flex CPU device, the one
//! multi-device setup a CPU-only machine has (Burn's CPU backend is a single device; see
//! docs/DISTRIBUTED.md): a two-replica step equals the one-device step on the same global
//! batch, runs resume bit for bit and across device counts, frozen stages stay frozen, and a
//! failing replica stops the run with an error and an intact checkpoint.

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use grafter::finetune::ClassWeights;
use grafter::prelude::*;
use grafter::source::InMemoryDataset;
use grafter::{GrafterError, LinearHead};

use crate::common::{classifier, config, dataset, frozen_and_trained, params};
use crate::recipes::{PlainCnn, max_diff, plain_classifier};

fn two() -> Vec<Device> {
    grafter::device::parse_devices("cpu:2").unwrap()
}

fn sgd(cfg: FineTuneConfig) -> FineTuneConfig {
    cfg.with_optimizer(OptimizerConfig::Sgd {
        momentum: 0.9,
        nesterov: false,
        weight_decay: 1e-4,
    })
    .with_restore_best(false)
}

/// The largest parameter difference relative to the largest parameter magnitude.
fn max_rel(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    let scale = b
        .iter()
        .flat_map(|(_, v)| v.iter().map(|x| x.abs()))
        .fold(0.0, f32::max);
    max_diff(a, b) / scale
}

/// 64 images, a BatchNorm-free CNN trained whole: two replicas equal one device on the same
/// global batch (within 1e-5 relative; loss curves within 1e-4), for even shards (24 = 12 +
/// 12), uneven ones (23 = 12 + 11, and a last batch of 18 = 9 + 9) and class-weighted losses
/// (shards weighted by their class-weight sums). Batches of one shard's size are a different
/// run, so the comparison is not vacuous.
#[test]
fn two_replicas_equal_one_device_on_the_same_global_batch() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(16, 1);
    let valid = dataset(4, 2);
    let fit = |cfg: FineTuneConfig, devices: Vec<Device>| {
        FineTune::new(cfg, TrainAll)
            .devices(devices)
            .fit(plain_classifier(&device, 5), &train, &valid, &device)
            .unwrap()
    };
    for (batch, weights) in [
        (24, None),
        (23, None),
        (24, Some(ClassWeights::Given(vec![1.0, 3.0, 0.5, 2.0]))),
    ] {
        let cfg = sgd(config(2)).with_class_weights(weights.clone());
        let parallel = fit(cfg.clone().with_batch_size(batch), two());
        let single = fit(cfg.clone().with_batch_size(batch), vec![]);
        let halves = fit(cfg.with_batch_size(batch / 2), vec![]);
        let (p, s, h) = (
            params(&parallel.model),
            params(&single.model),
            params(&halves.model),
        );
        let rel = max_rel(&p, &s);
        let other = max_rel(&p, &h);
        println!(
            "batch {batch}, weights {weights:?}: 2 replicas vs 1 device max rel {rel:e}, vs half batches {other:e}"
        );
        assert!(rel < 1e-5, "two replicas differ from one device by {rel}");
        assert!(
            other > 1e-3,
            "the global batch made no difference ({other})"
        );
        assert_eq!(parallel.history.len(), 2);
        for (a, b) in parallel.history.iter().zip(&single.history) {
            assert_eq!(a.step, b.step);
            assert!((a.train.loss - b.train.loss).abs() < 1e-4);
            assert!((a.valid.loss - b.valid.loss).abs() < 1e-4);
            assert_eq!(a.train.confusion, b.train.confusion);
        }
    }
}

/// A BatchNorm CNN under a two-phase policy on two replicas: the frozen first epoch leaves the
/// backbone bit-identical (BatchNorm statistics too), later epochs train it, and a run paused
/// after one epoch and resumed on two replicas equals the uninterrupted one bit for bit.
#[test]
fn two_replicas_keep_frozen_stages_and_resume_bit_identically() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(16, 1);
    let valid = dataset(4, 2);
    let cfg = config(3).with_restore_best(false);
    let policy = || TwoPhase::new(1, 10.0);
    let initial = params(&classifier(&device, 7, 0.3));

    let straight_dir = tempfile::tempdir().unwrap();
    let straight = FineTune::new(cfg.clone(), policy())
        .devices(two())
        .feature_cache(false)
        .out_dir(straight_dir.path())
        .fit(classifier(&device, 7, 0.3), &train, &valid, &device)
        .unwrap();

    let split_dir = tempfile::tempdir().unwrap();
    let first = FineTune::new(cfg.clone(), policy())
        .devices(two())
        .feature_cache(false)
        .out_dir(split_dir.path())
        .pause_after(1)
        .fit(classifier(&device, 7, 0.3), &train, &valid, &device)
        .unwrap();
    let (frozen, trained) =
        frozen_and_trained(&initial, &params(&first.model), &["backbone"], "epoch 0");
    assert_eq!(
        (frozen, trained),
        (15, 2),
        "the backbone is frozen in epoch 0"
    );
    let resumed = FineTune::resume(split_dir.path())
        .unwrap()
        .devices(two())
        .feature_cache(false)
        .progress(false)
        .fit(classifier(&device, 999, 0.3), &train, &valid, &device)
        .unwrap();
    assert_eq!(straight.history, resumed.history);
    assert_eq!(params(&straight.model), params(&resumed.model));
    let (frozen, _) = frozen_and_trained(&initial, &params(&straight.model), &[], "after 3");
    assert_eq!(
        frozen, 0,
        "every tensor trained (statistics included) after epoch 0"
    );
}

/// Paused on two replicas and resumed on one, or the other way round: the data order does
/// not depend on the device count, so both end where the one-device run does (within the
/// rounding of summing shards).
#[test]
fn a_run_resumes_on_another_device_count() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(16, 1);
    let valid = dataset(4, 2);
    let cfg = sgd(config(3)).with_batch_size(24);
    let single = FineTune::new(cfg.clone(), TrainAll)
        .fit(plain_classifier(&device, 5), &train, &valid, &device)
        .unwrap();
    for (before, after) in [(two(), vec![]), (vec![], two())] {
        let dir = tempfile::tempdir().unwrap();
        FineTune::new(cfg.clone(), TrainAll)
            .devices(before.clone())
            .out_dir(dir.path())
            .pause_after(1)
            .fit(plain_classifier(&device, 5), &train, &valid, &device)
            .unwrap();
        let resumed = FineTune::resume(dir.path())
            .unwrap()
            .devices(after.clone())
            .progress(false)
            .fit(plain_classifier(&device, 9), &train, &valid, &device)
            .unwrap();
        let rel = max_rel(&params(&resumed.model), &params(&single.model));
        println!(
            "{} → {} devices: max rel {rel:e} from the one-device run",
            before.len().max(1),
            after.len().max(1)
        );
        assert!(rel < 1e-5, "{rel}");
        assert_eq!(resumed.history.len(), 3);
        for (a, b) in resumed.history.iter().zip(&single.history) {
            assert!((a.valid.loss - b.valid.loss).abs() < 1e-4);
        }
    }
}

/// Replica forwards left before the injected failure (counted on replica 1's threads only).
static REPLICA_1_FORWARDS_LEFT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// [`PlainCnn`] whose forward panics, as a backend does when its device is lost, on the
/// replica-1 forward that [`REPLICA_1_FORWARDS_LEFT`] counts down to.
#[derive(Module, Debug)]
struct Flaky {
    inner: PlainCnn,
}

impl Backbone for Flaky {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        if std::thread::current().name() == Some("grafter-replica-1")
            && REPLICA_1_FORWARDS_LEFT.fetch_sub(1, Ordering::SeqCst) == 1
        {
            panic!("injected failure: device lost");
        }
        self.inner.forward_features(images)
    }
    fn feature_channels(&self) -> usize {
        self.inner.feature_channels()
    }
    fn stages(&self) -> Vec<Stage> {
        self.inner.stages()
    }
    fn preprocess(&self) -> Preprocess {
        self.inner.preprocess()
    }
}

fn flaky(device: &Device) -> Classifier<Flaky, LinearHead> {
    let Classifier { backbone, head } = plain_classifier(device, 5);
    Classifier::new(Flaky { inner: backbone }, head).unwrap()
}

/// Replica 1 fails in the second epoch's first step: the run stops with an error naming the
/// replica, the step and the last checkpoint, which is intact — the run resumes from it and
/// finishes.
#[test]
fn a_failing_replica_stops_the_run_with_an_intact_checkpoint() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train: InMemoryDataset = dataset(16, 1);
    let valid = dataset(4, 2);
    let cfg = sgd(config(2)).with_batch_size(24);
    let dir = tempfile::tempdir().unwrap();
    // 64 images in batches of 24: 3 steps, so replica 1 forwards 3 times per epoch
    REPLICA_1_FORWARDS_LEFT.store(4, Ordering::SeqCst);
    let err = FineTune::new(cfg, TrainAll)
        .devices(two())
        .out_dir(dir.path())
        .fit(flaky(&device), &train, &valid, &device)
        .unwrap_err();
    REPLICA_1_FORWARDS_LEFT.store(usize::MAX, Ordering::SeqCst);
    let text = err.to_string();
    println!("{text}");
    match &err {
        GrafterError::Replica {
            replica,
            epoch,
            step,
            message,
            last_checkpoint,
            ..
        } => {
            assert_eq!((*replica, *epoch, *step), (1, 1, 3), "{text}");
            assert!(message.contains("device lost"), "{text}");
            let ck = last_checkpoint.as_ref().expect("epoch 0 was checkpointed");
            assert!(ck.ends_with("epoch-0001"), "{text}");
            assert!(text.contains("epoch-0001"), "{text}");
        }
        other => panic!("expected a replica failure, got {other}"),
    }
    let resumed = FineTune::resume(dir.path())
        .unwrap()
        .devices(two())
        .progress(false)
        .fit(flaky(&device), &train, &valid, &device)
        .unwrap();
    assert_eq!(resumed.history.len(), 2);
    assert_eq!(resumed.history.last().unwrap().step, 6);
}

/// Mixed precision across replicas: one loss scale for the step (the replicas' scaled
/// gradients summed, then unscaled and checked once), f32 master weights; the run follows the
/// one-device f16 run up to half-precision rounding.
#[test]
fn two_replicas_train_in_f16_with_one_loss_scale() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(16, 1);
    let valid = dataset(4, 2);
    let cfg = sgd(config(2))
        .with_batch_size(24)
        .with_precision(grafter::finetune::Precision::F16);
    let fit = |devices: Vec<Device>| {
        FineTune::new(cfg.clone(), TrainAll)
            .devices(devices)
            .fit(plain_classifier(&device, 5), &train, &valid, &device)
            .unwrap()
    };
    let parallel = fit(two());
    let single = fit(vec![]);
    let rel = max_rel(&params(&parallel.model), &params(&single.model));
    println!("f16: 2 replicas vs 1 device max rel {rel:e}");
    assert!(rel < 1e-2, "{rel}");
    for (a, b) in parallel.history.iter().zip(&single.history) {
        assert!((a.train.loss - b.train.loss).abs() < 1e-2, "{a:?} vs {b:?}");
    }
    let mut f32_only = true;
    struct Dtypes<'a>(&'a mut bool);
    impl burn::module::ModuleVisitor for Dtypes<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            *self.0 &= p.val().dtype() == burn::tensor::DType::F32;
        }
    }
    parallel.model.visit(&mut Dtypes(&mut f32_only));
    assert!(f32_only, "the master weights stay f32");
}
