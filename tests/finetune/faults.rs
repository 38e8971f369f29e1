use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;
use grafter::checkpoint::{FileWriter, FsWriter};
use grafter::prelude::*;

use crate::common::{NanAtEpoch, classifier, config, dataset};

/// Fails (after writing half the file, like a full disk) on the optimiser file of the
/// second checkpoint.
#[derive(Debug, Default)]
struct FailSecondOptimizer {
    seen_first: AtomicBool,
}

impl FileWriter for FailSecondOptimizer {
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        if path.to_string_lossy().contains("optimizer")
            && self.seen_first.swap(true, Ordering::SeqCst)
        {
            std::fs::write(path, &bytes[..bytes.len() / 2])?;
            return Err(io::Error::other("No space left on device (simulated)"));
        }
        FsWriter.write(path, bytes)
    }
}

#[test]
fn interrupted_checkpoint_never_corrupts_latest() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let (train, valid) = (dataset(8, 1), dataset(4, 2));
    let err = FineTune::new(config(3), TrainAll)
        .out_dir(dir.path())
        .writer(Arc::new(FailSecondOptimizer::default()))
        .fit(classifier(&device, 2, 0.0), &train, &valid, &device)
        .unwrap_err();
    assert!(
        matches!(&err, GrafterError::Io { path, .. } if path.to_string_lossy().contains("optimizer")),
        "{err}"
    );
    let latest = std::fs::read_to_string(dir.path().join("latest")).unwrap();
    assert_eq!(latest, "epoch-0001");
    let names: Vec<String> = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["epoch-0001"], "partial checkpoint left behind");
    // the intact checkpoint resumes and the run completes
    let done = FineTune::resume(dir.path())
        .unwrap()
        .progress(false)
        .fit(classifier(&device, 3, 0.0), &train, &valid, &device)
        .unwrap();
    assert_eq!(done.history.len(), 3);
}

#[test]
fn nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let (train, valid) = (dataset(8, 1), dataset(4, 2));
    let poisoned = NanAtEpoch {
        inner: &train,
        epoch: 1,
    };
    let err = FineTune::new(config(3), TrainAll)
        .out_dir(dir.path())
        .fit(classifier(&device, 4, 0.0), &poisoned, &valid, &device)
        .unwrap_err();
    assert!(err.to_string().contains("epoch-0001"), "{err}");
    match err {
        GrafterError::Diverged {
            epoch,
            loss,
            last_checkpoint,
            ..
        } => {
            assert_eq!(epoch, 1);
            assert!(!loss.is_finite());
            assert!(last_checkpoint.as_ref().unwrap().ends_with("epoch-0001"));
        }
        other => panic!("expected Diverged, got {other}"),
    }
    let before = std::fs::read(dir.path().join("checkpoints/epoch-0001/model.bpk")).unwrap();
    // clean data: the run resumes from the intact checkpoint
    let done = FineTune::resume(dir.path())
        .unwrap()
        .progress(false)
        .fit(classifier(&device, 5, 0.0), &train, &valid, &device)
        .unwrap();
    assert_eq!(done.history.len(), 3);
    assert_eq!(done.history[0].epoch, 0);
    assert!(!before.is_empty());
}
