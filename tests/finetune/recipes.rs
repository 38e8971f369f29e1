//! The training recipes: gradient accumulation (equal to one larger batch, under f16 too),
//! the weight average (EMA: evaluated, selected, resumed bit for bit) and class weights.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use grafter::finetune::{ClassWeights, Ema, EmaSelect, Observer, Precision, Sampler, StepInfo};
use grafter::prelude::*;
use grafter::source::{DataSource, InMemoryDataset};
use grafter::{LinearHead, evaluate};

use crate::common::{CLASSES, SIDE, classifier, config, dataset, params};

/// Two convolutions without BatchNorm: a batch's gradient is the mean of its images', so
/// accumulation must equal a larger batch up to rounding.
#[derive(Module, Debug)]
pub struct PlainCnn {
    pub stem: Conv2d,
    pub stage1: Conv2d,
}

impl Backbone for PlainCnn {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        relu(self.stage1.forward(relu(self.stem.forward(images))))
    }

    fn feature_channels(&self) -> usize {
        16
    }

    fn stages(&self) -> Vec<Stage> {
        vec![
            Stage::of("stem", &self.stem),
            Stage::of("stage1", &self.stage1),
        ]
    }

    fn preprocess(&self) -> Preprocess {
        Preprocess::imagenet().with_input_size(SIDE, SIDE)
    }
}

pub(crate) fn plain_classifier(device: &Device, seed: u64) -> Classifier<PlainCnn, LinearHead> {
    device.seed(seed);
    let conv = |cin, cout, stride| {
        Conv2dConfig::new([cin, cout], [3, 3])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(device)
    };
    let backbone = PlainCnn {
        stem: conv(3, 8, 1),
        stage1: conv(8, 16, 2),
    };
    let head = LinearHeadConfig::new(16, CLASSES).try_init(device).unwrap();
    Classifier::new(backbone, head).unwrap()
}

/// The largest absolute difference between two parameter lists.
pub(crate) fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((_, x), (_, y))| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

/// `dataset(16, seed)` with classes thinned to 16, 8, 4 and 12 images.
fn imbalanced(seed: u64) -> InMemoryDataset {
    let mut full = dataset(16, seed);
    let keep = [16, 8, 4, 12];
    let mut seen = [0; CLASSES];
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..full.len() {
        let c = full.labels()[i];
        if seen[c] < keep[c] {
            seen[c] += 1;
            images.extend_from_slice(full.image_mut(i));
            labels.push(c);
        }
    }
    InMemoryDataset::new(images, [3, SIDE, SIDE], labels, CLASSES).unwrap()
}

/// 64 images in batches of 8, 3 per step (steps of 24, 24 and 16 images), against batches
/// of 24: the same weights up to rounding, with and without class weights (whose sum, not
/// the image count, normalises a weighted batch). Not accumulating is a different run.
#[test]
fn accumulation_equals_one_larger_batch() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(16, 1);
    let valid = dataset(4, 2);
    let base = config(2)
        .with_optimizer(OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-4,
        })
        .with_restore_best(false);
    let fit = |cfg: FineTuneConfig| {
        FineTune::new(cfg, TrainAll)
            .fit(plain_classifier(&device, 5), &train, &valid, &device)
            .unwrap()
    };
    for weights in [None, Some(ClassWeights::Given(vec![1.0, 3.0, 0.5, 2.0]))] {
        let cfg = base.clone().with_class_weights(weights.clone());
        let micro = fit(cfg.clone().with_batch_size(8).with_accumulate_steps(3));
        let large = fit(cfg.clone().with_batch_size(24));
        let plain = fit(cfg.with_batch_size(8));
        let (m, l, p) = (
            params(&micro.model),
            params(&large.model),
            params(&plain.model),
        );
        let same = max_diff(&m, &l);
        let other = max_diff(&m, &p);
        println!(
            "weights {weights:?}: accumulated vs large batch {same:e}, vs batches of 8 {other:e}"
        );
        assert!(
            same < 2e-5,
            "accumulation differs from one larger batch by {same}"
        );
        assert!(other > 1e-3, "accumulation made no difference ({other})");
        assert_eq!(micro.history.last().unwrap().step, 6, "3 steps per epoch");
        assert_eq!(large.history.last().unwrap().step, 6);
        for (a, b) in micro.history.iter().zip(&large.history) {
            // the logged training loss too: per image, or weighted by the class weights
            assert!((a.train.loss - b.train.loss).abs() < 1e-5);
            assert!((a.valid.loss - b.valid.loss).abs() < 1e-5);
        }
    }
}

#[derive(Default)]
struct Steps(Vec<StepInfo>);

impl Observer for Steps {
    fn on_step(&mut self, step: &StepInfo) {
        self.0.push(*step);
    }
}

/// Under f16 the loss scale multiplies every micro-batch and is checked once per optimiser
/// step: its count of good steps is the number of steps, and the run tracks the large-batch
/// f16 run.
#[test]
fn accumulation_under_f16_checks_the_loss_scale_once_per_step() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(16, 1);
    let valid = dataset(4, 2);
    let cfg = config(2)
        .with_optimizer(OptimizerConfig::sgd())
        .with_precision(Precision::F16)
        .with_restore_best(false);
    let steps = std::sync::Arc::new(std::sync::Mutex::new(Steps::default()));
    let dir = tempfile::tempdir().unwrap();
    let micro = FineTune::new(
        cfg.clone().with_batch_size(8).with_accumulate_steps(2),
        TrainAll,
    )
    .out_dir(dir.path())
    .observer(steps.clone())
    .fit(plain_classifier(&device, 3), &train, &valid, &device)
    .unwrap();
    let large = FineTune::new(cfg.with_batch_size(16), TrainAll)
        .fit(plain_classifier(&device, 3), &train, &valid, &device)
        .unwrap();
    let seen = &steps.lock().unwrap().0;
    assert_eq!(seen.len(), 8, "64 images, 16 per step, 2 epochs");
    assert!(seen.iter().all(|s| s.images == 16), "{seen:?}");
    assert_eq!(seen[1].batch, 3, "a step reports its last micro-batch");
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("checkpoints/epoch-0002/state.json")).unwrap(),
    )
    .unwrap();
    let scale = &state["loss_scale"];
    let skipped = seen.iter().filter(|s| !s.applied).count();
    println!("loss scale {scale}, {skipped} steps skipped");
    assert_eq!(scale["skipped_steps"], skipped, "{state}");
    // good steps count from the last skipped one: 16 checks (one per micro-batch) would
    // not fit in 8 steps
    let after_last_skip = seen.iter().rev().take_while(|s| s.applied).count();
    assert_eq!(scale["good_steps"], after_last_skip, "{state}");
    assert!(skipped < 8);
    assert_eq!(state["step"], 8);
    let diff = max_diff(&params(&micro.model), &params(&large.model));
    assert!(diff < 1e-2, "f16 accumulated vs large batch: {diff}");
}

/// EMA, accumulation, balanced class weights and the class-balanced sampler at once: paused
/// after two epochs and resumed, the run equals the uninterrupted one bit for bit — trained
/// weights, average, metrics log and history (raw and EMA metrics).
#[test]
fn resume_with_ema_accumulation_and_class_weights_is_bit_identical() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = imbalanced(1);
    let valid = dataset(8, 2);
    let cfg = config(4)
        .with_batch_size(8)
        .with_accumulate_steps(2)
        .with_ema(Some(Ema::new(0.9).with_warmup(true)))
        .with_class_weights(Some(ClassWeights::Balanced))
        .with_sampler(Sampler::ClassBalanced);
    let policy = || TwoPhase::new(1, 10.0);

    let straight_dir = tempfile::tempdir().unwrap();
    let straight = FineTune::new(cfg.clone(), policy())
        .out_dir(straight_dir.path())
        .fit(classifier(&device, 21, 0.3), &train, &valid, &device)
        .unwrap();
    let split_dir = tempfile::tempdir().unwrap();
    FineTune::new(cfg.clone(), policy())
        .out_dir(split_dir.path())
        .pause_after(2)
        .fit(classifier(&device, 21, 0.3), &train, &valid, &device)
        .unwrap();
    assert!(
        split_dir
            .path()
            .join("checkpoints/epoch-0002/ema.bpk")
            .is_file()
    );
    let resumed = FineTune::resume(split_dir.path())
        .unwrap()
        .progress(false)
        .fit(classifier(&device, 999, 0.3), &train, &valid, &device)
        .unwrap();

    assert_eq!(straight.history, resumed.history);
    assert!(straight.history.iter().all(|r| r.valid_ema.is_some()));
    assert_eq!(params(&straight.model), params(&resumed.model));
    let (a, b) = (straight.ema.unwrap(), resumed.ema.unwrap());
    assert_eq!(params(&a), params(&b));
    assert_ne!(
        params(&a),
        params(&straight.model),
        "the average is not the model"
    );
    let log = |d: &std::path::Path| std::fs::read(d.join("metrics.jsonl")).unwrap();
    assert_eq!(log(straight_dir.path()), log(split_dir.path()));
    // 40 images in batches of 8, two per step: 3 steps per epoch
    assert_eq!(straight.history.last().unwrap().step, 12);
    // the sampler draws the rare class (4 of 40 images) about as often as the others
    let drawn = |c: usize| -> u64 {
        straight
            .history
            .iter()
            .map(|r| r.train.confusion[c].iter().sum::<u64>())
            .sum()
    };
    println!(
        "drawn per class over 4 epochs: {:?}",
        (0..4).map(drawn).collect::<Vec<_>>()
    );
    assert_eq!((0..4).map(drawn).sum::<u64>(), 160);
    assert!(
        drawn(2) > 24,
        "class 2 drawn {} times, 16 without the sampler",
        drawn(2)
    );
    assert!(
        drawn(0) < 56,
        "class 0 drawn {} times, 64 without the sampler",
        drawn(0)
    );
}

/// The best model comes from the weights `select` asks for, and is what `fit` returns.
#[test]
fn the_best_model_is_the_average_or_the_trained_weights_as_selected() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(8, 1);
    let valid = dataset(4, 2);
    for select in [EmaSelect::Ema, EmaSelect::Raw, EmaSelect::Better] {
        let cfg = config(3).with_ema(Some(Ema::new(0.8).with_select(select)));
        let outcome = FineTune::new(cfg, TrainAll)
            .fit(classifier(&device, 4, 0.0), &train, &valid, &device)
            .unwrap();
        let best = outcome.best.unwrap();
        let record = &outcome.history[best.epoch];
        let ema_top1 = record.valid_ema.as_ref().unwrap().top1;
        let (want_ema, value) = match select {
            EmaSelect::Ema => (true, ema_top1),
            EmaSelect::Raw => (false, record.valid.top1),
            EmaSelect::Better => (
                ema_top1 > record.valid.top1,
                ema_top1.max(record.valid.top1),
            ),
        };
        assert_eq!(best.ema, want_ema, "{select:?}");
        assert_eq!(best.value, value, "{select:?}");
        let again = evaluate(
            &outcome.model,
            &valid,
            Task::SingleLabel,
            16,
            &device,
            false,
        )
        .unwrap();
        assert_eq!(again.top1, value, "{select:?}: fit returned other weights");
    }
}

/// Balanced weights need every class in the training data; given ones one per class; and
/// they apply to single-label tasks only. Each refusal names the problem.
#[test]
fn bad_class_weights_are_refused() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let valid = dataset(2, 2);
    let try_fit = |cfg: FineTuneConfig, train: &InMemoryDataset| {
        FineTune::new(cfg, Frozen)
            .fit(classifier(&device, 1, 0.0), train, &valid, &device)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let mut no_class_3 = dataset(2, 1);
    let kept: Vec<usize> = (0..no_class_3.len())
        .filter(|&i| no_class_3.labels()[i] != 3)
        .collect();
    let images = kept
        .iter()
        .flat_map(|&i| no_class_3.image_mut(i).to_vec())
        .collect();
    let labels = kept.iter().map(|&i| no_class_3.labels()[i]).collect();
    let no_class_3 = InMemoryDataset::new(images, [3, SIDE, SIDE], labels, CLASSES).unwrap();
    let err = try_fit(
        config(1).with_class_weights(Some(ClassWeights::Balanced)),
        &no_class_3,
    );
    assert!(err.contains("class 3 has no training image"), "{err}");
    let err = try_fit(
        config(1).with_class_weights(Some(ClassWeights::Given(vec![1.0; 3]))),
        &dataset(2, 1),
    );
    assert!(err.contains("3 class_weights given for 4 classes"), "{err}");
    let err = try_fit(
        config(1)
            .with_task(Task::MultiLabel)
            .with_class_weights(Some(ClassWeights::Balanced)),
        &dataset(2, 1),
    );
    assert!(err.contains("single-label"), "{err}");
    let err = try_fit(config(1).with_accumulate_steps(0), &dataset(2, 1));
    assert!(err.contains("accumulate_steps"), "{err}");
    let err = try_fit(
        config(1)
            .with_task(Task::MultiLabel)
            .with_sampler(Sampler::ClassBalanced),
        &dataset(2, 1),
    );
    assert!(err.contains("class-balanced sampler"), "{err}");
    // one class per image is all the sampler needs: binary tasks draw too
    let binary = config(1)
        .with_task(Task::Binary)
        .with_sampler(Sampler::ClassBalanced);
    assert!(binary.validate().is_ok());
}

/// A frozen backbone trains its head from cached features; the average then covers the head
/// (the backbone's average is the backbone), and the paused and resumed cached run equals
/// the uninterrupted one, average included.
#[test]
fn the_average_follows_the_head_on_cached_features_and_resumes() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(8, 1);
    let valid = dataset(4, 2);
    let cfg = config(3)
        .with_accumulate_steps(2)
        .with_sampler(Sampler::ClassBalanced)
        .with_restore_best(false)
        .with_ema(Some(Ema::new(0.5).with_select(EmaSelect::Ema)));
    let run = || FineTune::new(cfg.clone(), Frozen);
    let model = classifier(&device, 6, 0.0);
    assert!(
        run()
            .feature_cache_use(&model, &train, &valid)
            .unwrap()
            .is_on()
    );
    let straight_dir = tempfile::tempdir().unwrap();
    let straight = run()
        .out_dir(straight_dir.path())
        .fit(model, &train, &valid, &device)
        .unwrap();
    let split_dir = tempfile::tempdir().unwrap();
    run()
        .out_dir(split_dir.path())
        .pause_after(1)
        .fit(classifier(&device, 6, 0.0), &train, &valid, &device)
        .unwrap();
    let resumed = FineTune::resume(split_dir.path())
        .unwrap()
        .progress(false)
        .fit(classifier(&device, 77, 0.0), &train, &valid, &device)
        .unwrap();
    assert_eq!(straight.history, resumed.history);
    let (a, b) = (straight.ema.unwrap(), resumed.ema.unwrap());
    assert_eq!(params(&a), params(&b));
    assert_eq!(params(&straight.model), params(&resumed.model));
    // the backbone of the average is the frozen backbone; its head is not the last trained one
    assert_eq!(params(&a.backbone), params(&straight.model.backbone));
    assert_ne!(params(&a.head), params(&straight.model.head));
    assert!(straight.best.unwrap().ema);
}

/// In an f16 run the trained BatchNorm statistics are half precision during an epoch; the
/// average takes them in, but stays f32 and finite, and is evaluated every epoch.
#[test]
fn the_average_of_an_f16_run_with_batchnorm_stays_f32() {
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::DType;
    struct Kinds(Vec<DType>);
    impl ModuleVisitor for Kinds {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.val().dtype());
        }
    }
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let cfg = config(2)
        .with_precision(Precision::F16)
        .with_ema(Some(Ema::new(0.9)));
    let outcome = FineTune::new(cfg, TrainAll)
        .fit(
            classifier(&device, 2, 0.0),
            &dataset(8, 1),
            &dataset(4, 2),
            &device,
        )
        .unwrap();
    let ema = outcome.ema.unwrap();
    let mut kinds = Kinds(Vec::new());
    ema.visit(&mut kinds);
    assert!(kinds.0.iter().all(|d| *d == DType::F32), "{:?}", kinds.0);
    let values = params(&ema);
    assert!(values.iter().all(|(_, v)| v.iter().all(|x| x.is_finite())));
    assert_ne!(
        values,
        params(&classifier(&device, 2, 0.0)),
        "the average moved"
    );
    assert!(outcome.history.iter().all(|r| r.valid_ema.is_some()));
}

/// A run that keeps an average resumes only from a checkpoint holding it: a missing
/// `ema.bpk` is an error naming the checkpoint, not a fresh average.
#[test]
fn resuming_an_average_without_its_file_is_refused() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let (train, valid) = (dataset(2, 1), dataset(2, 2));
    let dir = tempfile::tempdir().unwrap();
    FineTune::new(config(2).with_ema(Some(Ema::new(0.9))), TrainAll)
        .out_dir(dir.path())
        .pause_after(1)
        .fit(classifier(&device, 1, 0.0), &train, &valid, &device)
        .unwrap();
    let checkpoint = dir.path().join("checkpoints/epoch-0001");
    std::fs::remove_file(checkpoint.join("ema.bpk")).unwrap();
    let err = FineTune::resume(dir.path())
        .unwrap()
        .progress(false)
        .fit(classifier(&device, 1, 0.0), &train, &valid, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("ema.bpk") && err.contains("epoch-0001"),
        "{err}"
    );
}

/// Everything at once on a zoo ResNet: stochastic depth (masks from the generator the loop
/// seeds per epoch), accumulation, the average, class weights and the class-balanced
/// sampler; paused and resumed, the run is bit for bit the uninterrupted one — and drop path
/// does change it.
#[test]
fn everything_at_once_on_a_resnet_with_drop_path_resumes_bit_identically() {
    use grafter::zoo::{ResNet, ResNetConfig};
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let (train, valid) = (dataset(4, 1), dataset(2, 2));
    let resnet = |rate: f64| -> Classifier<ResNet, LinearHead> {
        device.seed(11);
        let backbone = ResNetConfig::resnet18()
            .init(&device)
            .with_drop_path(rate)
            .unwrap();
        let head = LinearHeadConfig::new(512, CLASSES)
            .try_init(&device)
            .unwrap();
        Classifier::new(backbone, head).unwrap()
    };
    let cfg = config(2)
        .with_batch_size(4)
        .with_accumulate_steps(2)
        .with_ema(Some(Ema::new(0.9).with_warmup(true)))
        .with_class_weights(Some(ClassWeights::Given(vec![1.0, 2.0, 0.5, 1.5])))
        .with_sampler(Sampler::ClassBalanced)
        .with_restore_best(false);
    let straight = FineTune::new(cfg.clone(), TrainAll)
        .fit(resnet(0.3), &train, &valid, &device)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    FineTune::new(cfg.clone(), TrainAll)
        .out_dir(dir.path())
        .pause_after(1)
        .fit(resnet(0.3), &train, &valid, &device)
        .unwrap();
    let resumed = FineTune::resume(dir.path())
        .unwrap()
        .progress(false)
        .fit(resnet(0.3), &train, &valid, &device)
        .unwrap();
    assert_eq!(params(&straight.model), params(&resumed.model));
    assert_eq!(straight.history, resumed.history);
    assert_eq!(
        params(&straight.ema.unwrap()),
        params(&resumed.ema.unwrap())
    );
    let without = FineTune::new(cfg, TrainAll)
        .fit(resnet(0.0), &train, &valid, &device)
        .unwrap();
    assert_ne!(params(&straight.model), params(&without.model));
}
