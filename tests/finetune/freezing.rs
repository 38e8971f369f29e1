use burn::tensor::Device;
use grafter::prelude::*;

use crate::common::{classifier, config, dataset, frozen_and_trained, params};

/// The bug this guards against: a "frozen" BatchNorm that still updates its running
/// statistics in training mode, silently shifting a pretrained backbone.
#[test]
fn frozen_stages_are_bit_identical_including_batchnorm_statistics() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let model = classifier(&device, 11, 0.0);
    let before = params(&model);
    let outcome = FineTune::new(config(3), FreezeFirst(2))
        .fit(model, &dataset(16, 1), &dataset(8, 2), &device)
        .unwrap();
    let (frozen, trained) = frozen_and_trained(
        &before,
        &params(&outcome.model),
        &["backbone.stem", "backbone.stage1"],
        "",
    );
    // conv weight, BN gamma, beta, running mean, running var: 5 per frozen block
    assert_eq!(frozen, 10);
    // stage2 (5) + head linear weight and bias (2)
    assert_eq!(trained, 7);
}

#[test]
fn frozen_policy_leaves_the_whole_backbone_untouched_and_unfreezing_moves_it() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let model = classifier(&device, 12, 0.0);
    let before = params(&model);
    // epoch 0: head only; epoch 1: everything
    let outcome = FineTune::new(config(1), Frozen)
        .fit(model, &dataset(16, 1), &dataset(8, 2), &device)
        .unwrap();
    let mid = params(&outcome.model);
    for ((name, a), (_, b)) in before.iter().zip(&mid) {
        if name.starts_with("backbone") {
            assert!(a == b, "{name} changed under Frozen");
        } else {
            assert!(a != b, "{name} did not train under Frozen");
        }
    }
    let outcome = FineTune::new(config(1), TrainAll)
        .fit(outcome.model, &dataset(16, 1), &dataset(8, 2), &device)
        .unwrap();
    let after = params(&outcome.model);
    let bn_mean = |p: &[(String, Vec<f32>)]| {
        p.iter()
            .find(|(n, _)| n == "backbone.stem.bn.running_mean")
            .unwrap()
            .1
            .clone()
    };
    assert!(
        bn_mean(&mid) != bn_mean(&after),
        "unfrozen BN statistics did not move"
    );
}
