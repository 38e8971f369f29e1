//! `top_losses.json` in the run folder and `grafter::top_losses`: the validation images the
//! latest weights get most confidently wrong.

use burn::tensor::Device;
use grafter::prelude::*;
use grafter::{Task, TopLoss, top_losses};

use crate::common::{classifier, config, dataset};

#[derive(serde::Deserialize)]
struct File {
    epoch: usize,
    images: Vec<TopLoss>,
}

/// After one epoch the file lists the last weights' mistakes, highest loss first: exactly
/// what `top_losses` finds for the returned model (restore_best off, so it holds those
/// weights).
#[test]
fn the_run_folder_lists_the_last_epochs_most_confident_mistakes() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let (train, valid) = (dataset(16, 1), dataset(8, 2));
    let dir = tempfile::tempdir().unwrap();
    let outcome = FineTune::new(config(1).with_restore_best(false), TrainAll)
        .out_dir(dir.path())
        .fit(classifier(&device, 3, 0.0), &train, &valid, &device)
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join("top_losses.json")).unwrap();
    let file: File = serde_json::from_str(&text).unwrap();
    assert_eq!(file.epoch, 0);
    let expected = top_losses(&outcome.model, &valid, Task::SingleLabel, 16, 25, &device).unwrap();
    let wrong = outcome.history[0].valid.samples as f64 * (1.0 - outcome.history[0].valid.top1);
    println!("{} mistakes of {} listed", expected.len(), wrong.round());
    assert_eq!(expected.len(), (wrong.round() as usize).min(25));
    assert!(!expected.is_empty(), "one epoch leaves mistakes to list");
    assert_eq!(file.images, expected);
    for pair in expected.windows(2) {
        assert!(pair[0].loss >= pair[1].loss);
    }
    for m in &expected {
        assert_ne!(m.label, m.predicted);
        assert_eq!(valid.labels()[m.index], m.label);
        assert!(m.confidence > 1.0 / 4.0 && m.loss > 0.0);
    }
}
