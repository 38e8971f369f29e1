//! TensorBoard event files written by the `TensorBoard` observer, read back with the
//! `tensorboard` package's own loader (tests/fixtures/requirements.txt).

use std::process::Command;
use std::sync::{Arc, Mutex};

use burn::tensor::Device;
use grafter::finetune::{Observer, StepInfo};
use grafter::history::EpochRecord;
use grafter::prelude::*;
use grafter::tensorboard::TensorBoard;

use crate::common::{classifier, config, dataset};

/// Reads every scalar of the event files under DIR: one "tag step value" line each.
const READER: &str = r#"
import sys, glob
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
files = glob.glob(sys.argv[1] + "/events.out.tfevents.*")
assert len(files) == 1, files
first = True
for event in EventFileLoader(files[0]).Load():
    if first:
        assert event.file_version == "brain.Event:2", event
        first = False
    for v in event.summary.value:
        if v.metadata.plugin_data.plugin_name == "images":
            # the loader migrates an image to a tensor of [width, height, encoded]; decoded
            # with PIL: "tag step IMAGE width height first-pixel"
            import io
            from PIL import Image
            width, height, encoded = v.tensor.string_val
            im = Image.open(io.BytesIO(encoded))
            im.load()
            assert im.mode == "RGB" and im.size == (int(width), int(height)), im
            print(v.tag, event.step, "IMAGE", im.size[0], im.size[1], *im.getpixel((0, 0)))
            continue
        # the loader migrates simple_value to a tensor
        value = v.simple_value if v.HasField("simple_value") else v.tensor.float_val[0]
        print(v.tag, event.step, repr(value))
"#;

#[derive(Default)]
struct Record {
    steps: Vec<StepInfo>,
    epochs: Vec<EpochRecord>,
}

impl Observer for Record {
    fn on_step(&mut self, step: &StepInfo) {
        self.steps.push(*step);
    }
    fn on_epoch_end(&mut self, epoch: &EpochRecord) {
        self.epochs.push(epoch.clone());
    }
}

#[test]
fn a_run_logged_to_tensorboard_reads_back_with_tensorboards_loader() {
    let Some(python) = std::env::var_os("GRAFTER_PYTHON") else {
        crate::skip::skip_unless_required(
            "GRAFTER_REQUIRE_FIXTURES",
            "no GRAFTER_PYTHON with the tensorboard package (tests/fixtures/requirements.txt)",
        );
        return;
    };
    let _rng = crate::common::rng_lock();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let record = Arc::new(Mutex::new(Record::default()));
    FineTune::new(config(2), TwoPhase::new(1, 10.0))
        .observer(TensorBoard::new(dir.path()).unwrap())
        .observer(record.clone())
        .fit(
            classifier(&device, 7, 0.0),
            &dataset(16, 1),
            &dataset(8, 2),
            &device,
        )
        .unwrap();
    let out = Command::new(python)
        .args(["-c", READER])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8(out.stdout).unwrap();
    let (images, lines): (Vec<&str>, Vec<&str>) =
        lines.lines().partition(|l| l.contains(" IMAGE "));
    let scalars: Vec<(String, u64, f64)> = lines
        .into_iter()
        .map(|l| {
            let mut it = l.split_whitespace();
            (
                it.next().unwrap().to_string(),
                it.next().unwrap().parse().unwrap(),
                it.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let record = record.lock().unwrap();
    let losses: Vec<_> = scalars.iter().filter(|s| s.0 == "train/loss").collect();
    assert_eq!(losses.len(), record.steps.len());
    for (s, step) in losses.iter().zip(&record.steps) {
        assert_eq!(s.1, step.step as u64);
        assert_eq!(s.2, step.loss as f32 as f64, "step {}", step.step);
    }
    let lrs = scalars.iter().filter(|s| s.0 == "train/lr").count();
    assert_eq!(lrs, record.steps.len());
    let top1: Vec<_> = scalars.iter().filter(|s| s.0 == "valid/top1").collect();
    assert_eq!(top1.len(), record.epochs.len());
    for (s, e) in top1.iter().zip(&record.epochs) {
        assert_eq!(s.1, e.step as u64);
        assert_eq!(s.2, e.valid.top1 as f32 as f64);
    }
    // one confusion heat map per epoch, 4 classes × 64 px; its top-left cell is class 0's
    // share predicted as class 0, on a white (none) to blue (all) scale
    assert_eq!(images.len(), record.epochs.len(), "{images:?}");
    for (line, e) in images.iter().zip(&record.epochs) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[0], "valid/confusion");
        assert_eq!(f[1].parse::<usize>().unwrap(), e.step);
        assert_eq!((f[3], f[4]), ("256", "256"));
        let row = &e.valid.confusion[0];
        let share = row[0] as f64 / row.iter().sum::<u64>() as f64;
        let red = (255.0 + (8.0 - 255.0) * share).round();
        assert_eq!(f[5].parse::<f64>().unwrap(), red, "{line}");
    }
}
