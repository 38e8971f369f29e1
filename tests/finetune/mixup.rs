//! MixUp / CutMix in the loop: they change the training, stop at `mixup_off_epoch`, and a
//! paused run resumes bit for bit.

use burn::tensor::Device;
use grafter::mixup::{MixMode, Mixup};
use grafter::prelude::*;

use crate::common::{classifier, config, dataset, params};

#[test]
fn mixup_and_cutmix_change_the_run_and_resume_bit_identically() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let (train, valid) = (dataset(16, 1), dataset(8, 2));
    let policy = || TwoPhase::new(1, 10.0);
    let base = config(3).with_batch_size(8);
    let mixed = base
        .clone()
        .with_mixup(Some(Mixup::timm().with_mode(MixMode::Elem)))
        .with_mixup_off_epoch(Some(2));
    let fit = |cfg: &FineTuneConfig, dir: &std::path::Path, pause: Option<usize>| {
        let mut run = FineTune::new(cfg.clone(), policy()).out_dir(dir);
        if let Some(p) = pause {
            run = run.pause_after(p);
        }
        run.fit(classifier(&device, 5, 0.3), &train, &valid, &device)
            .unwrap()
    };

    let straight_dir = tempfile::tempdir().unwrap();
    let straight = fit(&mixed, straight_dir.path(), None);
    let split_dir = tempfile::tempdir().unwrap();
    fit(&mixed, split_dir.path(), Some(1));
    let resumed = FineTune::resume(split_dir.path())
        .unwrap()
        .progress(false)
        .fit(classifier(&device, 99, 0.3), &train, &valid, &device)
        .unwrap();
    assert_eq!(straight.history, resumed.history);
    assert_eq!(params(&straight.model), params(&resumed.model));
    let log = |d: &std::path::Path| std::fs::read(d.join("metrics.jsonl")).unwrap();
    assert_eq!(log(straight_dir.path()), log(split_dir.path()));

    let plain_dir = tempfile::tempdir().unwrap();
    let plain = fit(&base, plain_dir.path(), None);
    assert_ne!(
        params(&plain.model),
        params(&straight.model),
        "mixing changes the training"
    );
    // switched off from the first epoch, it is the plain run exactly
    let off_dir = tempfile::tempdir().unwrap();
    let off = fit(
        &mixed.clone().with_mixup_off_epoch(Some(0)),
        off_dir.path(),
        None,
    );
    assert_eq!(params(&plain.model), params(&off.model));
    assert_eq!(plain.history, off.history);
}

#[test]
fn mixup_settings_are_checked() {
    let bad = [
        config(1).with_mixup(Some(Mixup {
            mixup_alpha: -1.0,
            ..Mixup::timm()
        })),
        config(1).with_mixup(Some(Mixup {
            prob: 1.5,
            ..Mixup::timm()
        })),
        config(1).with_mixup(Some(Mixup {
            cutmix_minmax: Some((0.5, 0.2)),
            ..Mixup::timm()
        })),
        config(1)
            .with_mixup(Some(Mixup::timm()))
            .with_class_weights(Some(grafter::finetune::ClassWeights::Balanced)),
    ];
    for cfg in bad {
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("mixup") || err.contains("MixUp"), "{err}");
    }
    config(1)
        .with_mixup(Some(Mixup::timm()))
        .validate()
        .unwrap();
}
