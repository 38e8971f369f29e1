//! The learning-rate range test leaves no trace: the model (weights and BatchNorm
//! statistics) is untouched, and a run after it is bit for bit the run without it.

use burn::tensor::Device;
use grafter::finetune::LrFind;
use grafter::prelude::*;

use crate::common::{classifier, config, dataset, params};

#[test]
fn lr_find_leaves_no_trace_and_suggests_a_rate() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let train = dataset(16, 1);
    let valid = dataset(4, 2);
    // every stage trains (so BatchNorm statistics would move) and the head has dropout
    let cfg = config(2).with_restore_best(false);
    let dir = tempfile::tempdir().unwrap();
    let run = || FineTune::new(cfg.clone(), TrainAll);

    let model = classifier(&device, 8, 0.3);
    let before = params(&model);
    let settings = LrFind {
        steps: 40,
        ..LrFind::default()
    };
    let found = run()
        .out_dir(dir.path())
        .lr_find(&model, &train, &device, &settings)
        .unwrap();
    assert_eq!(params(&model), before, "lr_find changed the model");

    let n = found.lrs.len();
    println!(
        "{n} steps, diverged {}, steepest {:?}, valley {:?}, smoothed {:.3?}",
        found.diverged, found.steepest, found.valley, found.smoothed
    );
    assert!((20..=40).contains(&n), "{n} steps");
    assert_eq!(found.lrs[0], settings.start_lr);
    assert!(found.lrs.windows(2).all(|w| w[1] > w[0]));
    assert_eq!((found.losses.len(), found.smoothed.len()), (n, n));
    for lr in [found.steepest.unwrap(), found.valley.unwrap()] {
        assert!(lr > settings.start_lr && lr < settings.end_lr, "{lr}");
    }
    // `with_found_lr` runs the same test and takes its valley as the run's peak rate.
    let (tuned, again) = run()
        .with_found_lr(&model, &train, &device, &settings)
        .unwrap();
    assert_eq!(again, found, "the range test is deterministic");
    assert_eq!(tuned.config().lr, found.valley.unwrap());
    assert_ne!(tuned.config().lr, cfg.lr);

    let svg = std::fs::read_to_string(dir.path().join("lr_find.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("valley"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("lr_find.json")).unwrap()).unwrap();
    assert_eq!(json["lrs"].as_array().unwrap().len(), n);

    // the run after the range test is the run without it
    let after = run().fit(model, &train, &valid, &device).unwrap();
    let without = run()
        .fit(classifier(&device, 8, 0.3), &train, &valid, &device)
        .unwrap();
    assert_eq!(params(&after.model), params(&without.model));
    assert_eq!(after.history, without.history);
}
