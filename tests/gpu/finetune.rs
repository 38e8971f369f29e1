//! The fine-tune loop on wgpu: it learns, frozen stages stay bit-identical, and checkpoints
//! move between wgpu and flex.

use std::time::Instant;

use burn::tensor::Device;
use grafter::prelude::*;

use crate::adapter::{secs, serial, wgpu};
use crate::common::{classifier, config, dataset, frozen_and_trained, params};

#[test]
fn fine_tune_on_wgpu_learns_and_keeps_frozen_stages_bit_identical() {
    let _serial = serial();
    let Some(device) = wgpu() else { return };
    let model = classifier(&device, 11, 0.0);
    let before = params(&model);
    let t = Instant::now();
    let outcome = FineTune::new(config(4), FreezeFirst(1))
        .fit(model, &dataset(16, 1), &dataset(8, 2), &device)
        .unwrap();
    let losses: Vec<f64> = outcome.history.iter().map(|r| r.train.loss).collect();
    println!(
        "TIMING fine-tune 4 epochs x 64 images on wgpu: {:.2}s; train loss {losses:?}, valid top1 {:?}",
        secs(t),
        outcome
            .history
            .iter()
            .map(|r| r.valid.top1)
            .collect::<Vec<_>>()
    );
    assert!(
        losses.last().unwrap() < losses.first().unwrap(),
        "loss did not decrease: {losses:?}"
    );
    let (frozen, trained) = frozen_and_trained(
        &before,
        &params(&outcome.model),
        &["backbone.stem"],
        "on wgpu",
    );
    // conv weight, BN gamma, beta, running mean, running var
    assert_eq!(frozen, 5);
    // stage1 (5) + stage2 (5) + head weight and bias (2)
    assert_eq!(trained, 12);
}

/// One epoch on `first`, checkpointed; the remaining two resumed on `second`.
fn move_checkpoint(first: &Device, second: &Device) {
    let train = dataset(16, 1);
    let valid = dataset(8, 2);
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let paused = FineTune::new(config(3), FreezeFirst(1))
        .out_dir(dir.path())
        .pause_after(1)
        .fit(classifier(first, 5, 0.0), &train, &valid, first)
        .unwrap();
    assert_eq!(paused.history.len(), 1);
    let t1 = secs(t);
    let t = Instant::now();
    let resumed = FineTune::resume(dir.path())
        .unwrap()
        .progress(false)
        .fit(classifier(second, 999, 0.0), &train, &valid, second)
        .unwrap();
    println!(
        "TIMING checkpoint {first:?} -> {second:?}: 1 epoch {t1:.2}s, resumed 2 epochs {:.2}s; train loss {:?}",
        secs(t),
        resumed
            .history
            .iter()
            .map(|r| r.train.loss)
            .collect::<Vec<_>>()
    );
    assert_eq!(resumed.history.len(), 3);
    assert_eq!(resumed.history[0], paused.history[0], "epoch 0 record lost");
    for r in &resumed.history {
        assert!(
            r.train.loss.is_finite() && r.valid.loss.is_finite(),
            "{r:?}"
        );
        assert!((0.0..=1.0).contains(&r.valid.top1));
    }
    // the frozen stem came through the move unchanged
    let stem = |m: &[(String, Vec<f32>)]| -> Vec<Vec<f32>> {
        m.iter()
            .filter(|(n, _)| n.starts_with("backbone.stem"))
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(stem(&params(&paused.model)), stem(&params(&resumed.model)));
    let m =
        grafter::evaluate(&resumed.model, &valid, Task::SingleLabel, 16, second, false).unwrap();
    assert!(m.loss.is_finite());
}

#[test]
fn checkpoint_written_on_wgpu_resumes_on_flex() {
    let _serial = serial();
    let Some(device) = wgpu() else { return };
    move_checkpoint(&device, &Device::flex());
}

#[test]
fn checkpoint_written_on_flex_resumes_on_wgpu() {
    let _serial = serial();
    let Some(device) = wgpu() else { return };
    move_checkpoint(&Device::flex(), &device);
}

/// Mixed precision (`FineTuneConfig::precision`) on wgpu: f16 forward and backward, f32 master
/// weights, dynamic loss scale. Skipped on adapters without `shader-f16`.
#[test]
fn f16_mixed_precision_fine_tune_on_wgpu_learns_and_keeps_frozen_stages() {
    use grafter::finetune::Precision;
    let _serial = serial();
    let Some(device) = wgpu() else { return };
    if let Err(e) = Precision::F16.check_device(&device) {
        crate::skip::skip_unless_required("GRAFTER_REQUIRE_F16", &e.to_string());
        return;
    }
    let model = classifier(&device, 11, 0.0);
    let before = params(&model);
    let t = Instant::now();
    let outcome = FineTune::new(config(4).with_precision(Precision::F16), FreezeFirst(1))
        .fit(model, &dataset(16, 1), &dataset(8, 2), &device)
        .unwrap();
    let losses: Vec<f64> = outcome.history.iter().map(|r| r.train.loss).collect();
    println!(
        "TIMING f16 mixed-precision fine-tune 4 epochs x 64 images on wgpu: {:.2}s; train loss {losses:?}",
        secs(t)
    );
    assert!(
        losses.last().unwrap() < losses.first().unwrap(),
        "loss did not decrease: {losses:?}"
    );
    let counts = frozen_and_trained(
        &before,
        &params(&outcome.model),
        &["backbone.stem"],
        "under f16 on wgpu",
    );
    assert_eq!(counts, (5, 12));
}

/// bf16 where the adapter has it; otherwise `fit` refuses with an error naming the precision
/// (WGSL has no bf16 type, so wgpu adapters report no support today).
#[test]
fn bf16_mixed_precision_on_wgpu_trains_or_is_refused_by_name() {
    use burn::tensor::FloatDType;
    use grafter::finetune::Precision;
    let _serial = serial();
    let Some(device) = wgpu() else { return };
    let result = FineTune::new(config(2).with_precision(Precision::Bf16), FreezeFirst(1)).fit(
        classifier(&device, 3, 0.0),
        &dataset(8, 1),
        &dataset(4, 2),
        &device,
    );
    if device.supports_dtype(FloatDType::BF16) {
        let outcome = result.expect("bf16 is supported, so it must train");
        let losses: Vec<f64> = outcome.history.iter().map(|r| r.train.loss).collect();
        println!("BF16 on wgpu: train loss {losses:?}");
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    } else {
        let err = result
            .expect_err("an unsupported precision must be refused")
            .to_string();
        println!("BF16 on wgpu refused: {err}");
        assert!(err.contains("bf16"), "{err}");
    }
}

/// Data parallel across two different devices, a flex CPU replica and a wgpu one, running at
/// the same time on their own threads (gradients summed on the CPU): the same run as two
/// replicas taking turns on the CPU, up to the devices' float rounding.
#[test]
fn a_cpu_and_a_wgpu_replica_train_as_two_cpu_replicas() {
    let _serial = serial();
    let Some(gpu) = wgpu() else { return };
    let cpu = Device::flex();
    let train = dataset(16, 1);
    let valid = dataset(8, 2);
    let fit = |devices: Vec<Device>| {
        let t = Instant::now();
        let outcome = FineTune::new(config(2).with_batch_size(32), TwoPhase::new(1, 10.0))
            .devices(devices.clone())
            .feature_cache(false)
            .fit(classifier(&cpu, 5, 0.0), &train, &valid, &cpu)
            .unwrap();
        println!("TIMING 2 epochs on {devices:?}: {:.2}s", secs(t));
        outcome
    };
    let mixed = fit(vec![cpu.clone(), gpu]);
    let turns = fit(vec![cpu.clone(), cpu.clone()]);
    let (a, b) = (params(&mixed.model), params(&turns.model));
    let scale = b
        .iter()
        .flat_map(|(_, v)| v.iter().map(|x| x.abs()))
        .fold(0.0f32, f32::max);
    let diff = a
        .iter()
        .zip(&b)
        .flat_map(|((_, x), (_, y))| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0f32, f32::max);
    println!(
        "cpu+wgpu vs cpu+cpu replicas: max rel param difference {:e}",
        diff / scale
    );
    assert!(diff / scale < 1e-5, "{}", diff / scale);
    for (x, y) in mixed.history.iter().zip(&turns.history) {
        assert!((x.train.loss - y.train.loss).abs() < 1e-3, "{x:?} vs {y:?}");
        assert_eq!(x.step, y.step);
    }
}
