//! The loop's reporter: what a person watching the run sees (progress bars, one summary
//! line per epoch, notes on precision and the feature cache) and the run directory's
//! readable logs (`metrics.jsonl`, `curves.svg`, `class_report.json`), rewritten atomically
//! after every epoch.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Monitor;
use crate::Result;
use crate::checkpoint::{FileWriter, write_atomic};
use crate::history::{EpochRecord, to_jsonl};
use crate::metrics::{ClassReport, TopLoss};
use crate::plot::curves_svg;
use crate::progress::PassProgress;

/// The JSON-lines log of a run, one [`EpochRecord`] per line.
pub(crate) const METRICS: &str = "metrics.jsonl";
/// Loss and accuracy curves of a run.
pub(crate) const CURVES: &str = "curves.svg";
/// Per-class precision, recall and F1 of the latest epoch's validation pass.
pub(crate) const CLASS_REPORT: &str = "class_report.json";
/// The validation images the latest epoch's weights get most confidently wrong.
pub(crate) const TOP_LOSSES: &str = "top_losses.json";
/// How many of them `top_losses.json` lists.
pub(crate) const TOP_LOSSES_KEPT: usize = 25;

/// The content of `top_losses.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TopLossesFile {
    /// Zero-based epoch the list is of.
    pub epoch: usize,
    /// The trained weights' most confident mistakes on the validation data, highest loss
    /// first.
    pub images: Vec<TopLoss>,
}

/// The content of `class_report.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ClassReportFile {
    /// Zero-based epoch the report is of.
    pub epoch: usize,
    /// The validation pass of the trained weights.
    pub valid: ClassReport,
    /// The validation pass of the weight average, when the run keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_ema: Option<ClassReport>,
}

/// Progress output (on stderr when `progress` is on; notes also go to the log) and logs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reporter {
    progress: bool,
    epochs: usize,
}

impl Reporter {
    /// Reports on a run of `epochs` epochs; shows bars and lines only when `progress`.
    pub(crate) fn new(progress: bool, epochs: usize) -> Self {
        Self { progress, epochs }
    }

    /// Whether progress output is shown.
    pub(crate) fn progress(&self) -> bool {
        self.progress
    }

    /// Logs `line`, and prints it when progress output is on.
    pub(crate) fn say(&self, line: &str) {
        log::info!("{line}");
        if self.progress {
            eprintln!("{line}");
        }
    }

    /// A bar over the `images` of training epoch `epoch` (zero-based).
    pub(crate) fn epoch_bar(&self, epoch: usize, images: usize) -> PassProgress {
        PassProgress::new(
            format!("epoch {}/{}", epoch + 1, self.epochs),
            images,
            self.progress,
        )
    }

    /// The epoch's summary line, after `secs` seconds of training and evaluation.
    pub(crate) fn epoch_done(&self, record: &EpochRecord, secs: f64, images: usize) {
        if self.progress {
            eprintln!("{}", summary_line(record, self.epochs, secs, images));
        }
    }

    /// Says why the run ends early.
    pub(crate) fn stopped_early(&self, monitor: Monitor, bad_epochs: usize) {
        if self.progress {
            eprintln!("early stopping: no improvement of {monitor:?} for {bad_epochs} epochs");
        }
    }

    /// Rewrites `metrics.jsonl` and `curves.svg` in `root` from the whole history, and
    /// `class_report.json` from its last epoch (single-label and binary tasks): all of it
    /// held by the checkpoint, so a resume rewrites them.
    pub(crate) fn write_logs(
        &self,
        writer: &dyn FileWriter,
        root: &Path,
        history: &[EpochRecord],
    ) -> Result<()> {
        write_atomic(writer, &root.join(METRICS), to_jsonl(history).as_bytes())?;
        write_atomic(writer, &root.join(CURVES), curves_svg(history)?.as_bytes())?;
        let Some(last) = history.last() else {
            return Ok(());
        };
        if let Some(valid) = last.valid.class_report() {
            let file = ClassReportFile {
                epoch: last.epoch,
                valid,
                valid_ema: last.valid_ema.as_ref().and_then(|m| m.class_report()),
            };
            let json = serde_json::to_string_pretty(&file)
                .map_err(|e| crate::GrafterError::Config(e.to_string()))?;
            write_atomic(writer, &root.join(CLASS_REPORT), json.as_bytes())?;
        }
        Ok(())
    }

    /// Writes `top_losses.json`: epoch `epoch`'s most confidently wrong validation images.
    /// The checkpoint does not hold them, so the loop writes this file before the epoch's
    /// checkpoint: a crash before the checkpoint redoes the epoch and writes it again, and
    /// none after the checkpoint leaves an older epoch's (the kill −9 soak's finding).
    pub(crate) fn write_top_losses(
        &self,
        writer: &dyn FileWriter,
        root: &Path,
        epoch: usize,
        images: &[TopLoss],
    ) -> Result<()> {
        let file = TopLossesFile {
            epoch,
            images: images.to_vec(),
        };
        let json = serde_json::to_string_pretty(&file)
            .map_err(|e| crate::GrafterError::Config(e.to_string()))?;
        write_atomic(writer, &root.join(TOP_LOSSES), json.as_bytes())
    }
}

/// One line per epoch: losses, accuracies, rate, trainable stages, time and throughput.
fn summary_line(r: &EpochRecord, epochs: usize, secs: f64, images: usize) -> String {
    let top5 = r
        .valid
        .top5
        .map(|t| format!(" top5 {:5.1}%", 100.0 * t))
        .unwrap_or_default();
    let ema = r
        .valid_ema
        .as_ref()
        .map(|m| format!("  ema loss {:.4} acc {:5.1}%", m.loss, 100.0 * m.top1))
        .unwrap_or_default();
    format!(
        "epoch {:>3}/{epochs}  train loss {:.4} acc {:5.1}%  valid loss {:.4} acc {:5.1}%{top5}{ema}  lr {:.2e}  stages {}/{} trainable  {:.1}s ({:.0} img/s)",
        r.epoch + 1,
        r.train.loss,
        100.0 * r.train.top1,
        r.valid.loss,
        100.0 * r.valid.top1,
        r.lr,
        r.plan.trainable_stages().len(),
        r.plan.stages.len(),
        secs,
        images as f64 / secs.max(1e-9),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metrics;
    use crate::checkpoint::FsWriter;
    use crate::policy::{EpochPlan, StageSetting};

    fn record(epoch: usize, top1: f64) -> EpochRecord {
        let metrics = Metrics {
            loss: 1.0 - top1,
            top1,
            top5: Some(0.9),
            per_class: vec![Some(top1)],
            samples: 10,
            confusion: vec![vec![3]],
            map: None,
        };
        let mut plan = EpochPlan::uniform(4, StageSetting::frozen());
        plan.stages[3] = StageSetting::train(0.1);
        EpochRecord {
            epoch,
            step: 5 * (epoch + 1),
            lr: 2e-3,
            plan,
            train: metrics.clone(),
            valid: metrics,
            valid_ema: None,
        }
    }

    #[test]
    fn the_summary_line_says_what_a_person_looks_for() {
        let line = summary_line(&record(1, 0.75), 5, 2.0, 100);
        for part in [
            "epoch   2/5",
            "acc  75.0%",
            "top5  90.0%",
            "lr 2.00e-3",
            "stages 1/4 trainable",
            "(50 img/s)",
        ] {
            assert!(line.contains(part), "'{part}' missing from: {line}");
        }
    }

    #[test]
    fn logs_hold_one_line_per_epoch_and_a_plot() {
        let dir = tempfile::tempdir().unwrap();
        let history = [record(0, 0.5), record(1, 0.6)];
        let reporter = Reporter::new(false, 2);
        reporter
            .write_logs(&FsWriter, dir.path(), &history[..1])
            .unwrap();
        reporter
            .write_logs(&FsWriter, dir.path(), &history)
            .unwrap();
        let log = std::fs::read_to_string(dir.path().join(METRICS)).unwrap();
        let lines: Vec<EpochRecord> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "rewritten, not appended");
        assert_eq!(lines[1].valid.top1, 0.6);
        assert!(
            lines[1].valid.confusion.is_empty(),
            "no confusion matrices in the log"
        );
        let svg = std::fs::read_to_string(dir.path().join(CURVES)).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(40)]);
        let report: ClassReportFile =
            serde_json::from_slice(&std::fs::read(dir.path().join(CLASS_REPORT)).unwrap()).unwrap();
        assert_eq!(report.epoch, 1);
        assert_eq!(report.valid.classes.len(), 1);
        assert_eq!(report.valid.classes[0].support, 3);
        assert!(report.valid_ema.is_none());
    }
}
