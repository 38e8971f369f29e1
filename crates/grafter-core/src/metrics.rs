//! Per-epoch metrics: loss, top-1, top-5, per-class accuracy, the confusion matrix and, for
//! multi-label tasks, mean average precision; per-class precision, recall and F1 with
//! scikit-learn's averages ([`ClassReport`]) derive from the confusion matrix.

use serde::{Deserialize, Serialize};

mod average_precision;
mod report;
mod top_losses;

pub use average_precision::{average_precision, mean_average_precision};
pub use report::{ClassReport, ClassScores};
pub use top_losses::{TopLoss, TopLosses};

use crate::Task;
use crate::source::Labels;

/// Metrics of one pass over a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean loss per image (with label smoothing, as optimised; with class weights, the mean
    /// weighted by them, as optimised). NaN when it was not finite (saved as `null`).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    /// Top-1 accuracy in [0, 1]. Multi-label: fraction of correct label decisions at 0.5.
    #[serde(deserialize_with = "nan_if_null")]
    pub top1: f64,
    /// Top-5 accuracy, when there are more than 5 classes (single-label only).
    pub top5: Option<f64>,
    /// Accuracy (recall) per class; `None` for a class absent from the data.
    pub per_class: Vec<Option<f64>>,
    /// Number of images.
    pub samples: usize,
    /// `confusion[true][predicted]` counts (single-label and binary tasks; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confusion: Vec<Vec<u64>>,
    /// Mean average precision over the labels with a positive (multi-label tasks only; see
    /// [`mean_average_precision`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<f64>,
}

impl Metrics {
    /// Per-class precision, recall and F1, macro/micro/weighted F1 and balanced accuracy
    /// (single-label and binary tasks: `None` without a confusion matrix).
    pub fn class_report(&self) -> Option<ClassReport> {
        ClassReport::from_confusion(&self.confusion)
    }
}

/// Which quantity early stopping and best-model selection watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Monitor {
    /// Validation loss (lower is better).
    ValLoss,
    /// Validation top-1 accuracy (higher is better).
    #[default]
    ValTop1,
    /// Validation top-5 accuracy (higher is better; falls back to top-1 below 6 classes).
    ValTop5,
}

impl Monitor {
    /// Reads the monitored value from validation metrics.
    pub fn value(&self, valid: &Metrics) -> f64 {
        match self {
            Monitor::ValLoss => valid.loss,
            Monitor::ValTop1 => valid.top1,
            Monitor::ValTop5 => valid.top5.unwrap_or(valid.top1),
        }
    }

    /// True when `candidate` beats `best` by more than `min_delta`.
    pub fn improves(&self, candidate: f64, best: f64, min_delta: f64) -> bool {
        match self {
            Monitor::ValLoss => candidate < best - min_delta,
            _ => candidate > best + min_delta,
        }
    }
}

/// Accumulates [`Metrics`] batch by batch from host-side logits.
#[derive(Debug)]
pub struct MetricsAccumulator {
    task: Task,
    num_classes: usize,
    loss_sum: f64,
    /// What `loss_sum` is divided by: the images, or the sum of their class weights.
    loss_weight: f64,
    samples: usize,
    correct1: f64,
    correct5: usize,
    decisions: usize,
    class_hits: Vec<u64>,
    class_total: Vec<u64>,
    confusion: Vec<Vec<u64>>,
    /// Multi-label: every score and target, for the average precision.
    scores: Vec<f32>,
    targets: Vec<f32>,
}

impl MetricsAccumulator {
    /// An empty accumulator for `num_classes` classes.
    pub fn new(task: Task, num_classes: usize) -> Self {
        let confusion = match task {
            Task::MultiLabel => Vec::new(),
            _ => vec![vec![0; num_classes]; num_classes],
        };
        Self {
            task,
            num_classes,
            loss_sum: 0.0,
            loss_weight: 0.0,
            samples: 0,
            correct1: 0.0,
            correct5: 0,
            decisions: 0,
            class_hits: vec![0; num_classes],
            class_total: vec![0; num_classes],
            confusion,
            scores: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// Adds one batch: its mean loss, its logits `[N, K]` row-major, and its labels.
    pub fn add(&mut self, mean_loss: f64, logits: &[f32], labels: &Labels) {
        self.add_weighted(mean_loss, labels.len() as f64, logits, labels);
    }

    /// Adds one batch whose loss is a weighted mean (class weights): the pass's loss is then
    /// `Σ mean_loss · weight / Σ weight`, whatever the batching. `weight` is the batch's sum
    /// of weights (its number of images for a plain mean, as [`add`](Self::add) passes).
    pub fn add_weighted(&mut self, mean_loss: f64, weight: f64, logits: &[f32], labels: &Labels) {
        let n = labels.len();
        if n == 0 {
            return;
        }
        let k = logits.len() / n;
        self.loss_sum += mean_loss * weight;
        self.loss_weight += weight;
        self.samples += n;
        match (self.task, labels) {
            (Task::SingleLabel, Labels::Classes(classes)) => {
                for (i, &y) in classes.iter().enumerate() {
                    let row = &logits[i * k..(i + 1) * k];
                    let pred = argmax(row);
                    // rank of the true class = number of logits strictly greater than it
                    let rank = row.iter().filter(|&&v| v > row[y]).count();
                    self.record(y, pred, rank == 0);
                    if rank < 5 {
                        self.correct5 += 1;
                    }
                }
            }
            (Task::Binary, Labels::Classes(classes)) => {
                for (i, &y) in classes.iter().enumerate() {
                    let pred = usize::from(logits[i] > 0.0);
                    self.record(y, pred, pred == y);
                }
            }
            (Task::MultiLabel, Labels::MultiHot { values, .. }) => {
                self.scores.extend_from_slice(logits);
                self.targets.extend_from_slice(values);
                for (j, (&x, &y)) in logits.iter().zip(values.iter()).enumerate() {
                    let class = j % k;
                    let hit = (x > 0.0) == (y > 0.5);
                    self.decisions += 1;
                    if hit {
                        self.correct1 += 1.0;
                        self.class_hits[class] += 1;
                    }
                    self.class_total[class] += 1;
                }
            }
            _ => {}
        }
    }

    fn record(&mut self, truth: usize, pred: usize, hit: bool) {
        self.decisions += 1;
        if hit {
            self.correct1 += 1.0;
        }
        if truth < self.num_classes {
            self.class_total[truth] += 1;
            if hit {
                self.class_hits[truth] += 1;
            }
            if pred < self.num_classes {
                self.confusion[truth][pred] += 1;
            }
        }
    }

    /// The metrics of everything added so far.
    pub fn finish(self) -> Metrics {
        let div = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
        let top5 = (self.task == Task::SingleLabel && self.num_classes > 5)
            .then(|| div(self.correct5 as f64, self.samples));
        Metrics {
            loss: if self.loss_weight > 0.0 {
                self.loss_sum / self.loss_weight
            } else {
                0.0
            },
            top1: div(self.correct1, self.decisions),
            top5,
            per_class: self
                .class_hits
                .iter()
                .zip(&self.class_total)
                .map(|(&h, &t)| (t > 0).then(|| h as f64 / t as f64))
                .collect(),
            samples: self.samples,
            map: (self.task == Task::MultiLabel)
                .then(|| mean_average_precision(&self.scores, &self.targets, self.num_classes))
                .flatten(),
            confusion: self.confusion,
        }
    }
}

/// Reads a number that may have been written as `null`: JSON has no NaN or infinity, and
/// serde_json writes them as `null`. A validation pass whose loss was not finite must not make
/// `state.json` and `metrics.jsonl` unreadable; it reads back as NaN.
pub(crate) fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The first index of the largest value.
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top1_top5_per_class_and_confusion() {
        let mut acc = MetricsAccumulator::new(Task::SingleLabel, 6);
        // sample 0: class 2 predicted correctly; sample 1: class 0 ranked 2nd (wrong top-1)
        let logits = [
            0.0, 0.0, 5.0, 0.0, 0.0, 0.0, //
            1.0, 2.0, 0.0, 0.0, 0.0, 0.0,
        ];
        acc.add(0.5, &logits, &Labels::Classes(vec![2, 0]));
        let m = acc.finish();
        assert_eq!(m.samples, 2);
        assert!((m.loss - 0.5).abs() < 1e-12);
        assert!((m.top1 - 0.5).abs() < 1e-12);
        assert_eq!(m.top5, Some(1.0));
        assert_eq!(m.per_class[2], Some(1.0));
        assert_eq!(m.per_class[0], Some(0.0));
        assert_eq!(m.per_class[1], None);
        assert_eq!(m.confusion[0][1], 1);
        assert_eq!(m.confusion[2][2], 1);
    }

    #[test]
    fn multilabel_accuracy_counts_decisions() {
        let mut acc = MetricsAccumulator::new(Task::MultiLabel, 2);
        let labels = Labels::MultiHot {
            values: vec![1.0, 0.0, 1.0, 1.0],
            num_classes: 2,
        };
        acc.add(0.1, &[3.0, -1.0, -2.0, 2.0], &labels);
        let m = acc.finish();
        assert!((m.top1 - 0.75).abs() < 1e-12);
        assert_eq!(m.per_class, vec![Some(0.5), Some(1.0)]);
    }

    /// The fixture's values were computed by scikit-learn (`tests/fixtures/make_metrics_fixture.py`).
    #[test]
    fn reports_and_average_precision_match_sklearn() {
        let doc: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/metrics_sklearn.json"
        )))
        .unwrap();
        let floats = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let close = |a: f64, b: f64, what: &str| {
            assert!((a - b).abs() < 1e-12, "{what}: {a} vs sklearn {b}");
        };
        let cases = doc["single_label"].as_array().unwrap();
        assert_eq!(cases.len(), 2);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let confusion: Vec<Vec<u64>> =
                serde_json::from_value(case["confusion"].clone()).unwrap();
            let r = ClassReport::from_confusion(&confusion).unwrap();
            for (c, s) in r.classes.iter().enumerate() {
                close(
                    s.precision,
                    floats(&case["precision"])[c],
                    &format!("{name} precision {c}"),
                );
                close(
                    s.recall,
                    floats(&case["recall"])[c],
                    &format!("{name} recall {c}"),
                );
                close(s.f1, floats(&case["f1"])[c], &format!("{name} f1 {c}"));
                assert_eq!(s.support as f64, floats(&case["support"])[c]);
            }
            for (got, key) in [
                (r.accuracy, "accuracy"),
                (r.macro_f1, "macro_f1"),
                (r.micro_f1, "micro_f1"),
                (r.weighted_f1, "weighted_f1"),
                (r.macro_precision, "macro_precision"),
                (r.macro_recall, "macro_recall"),
                (r.balanced_accuracy, "balanced_accuracy"),
            ] {
                close(got, case[key].as_f64().unwrap(), &format!("{name} {key}"));
            }
        }
        let ml = &doc["multilabel"];
        let rows = |key: &str| -> Vec<f32> {
            ml[key]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| floats(r).into_iter().map(|v| v as f32))
                .collect()
        };
        let (scores, targets) = (rows("scores"), rows("targets"));
        let k = ml["ap"].as_array().unwrap().len();
        let n = scores.len() / k;
        for (c, want) in floats(&ml["ap"]).into_iter().enumerate() {
            let s: Vec<f32> = (0..n).map(|i| scores[i * k + c]).collect();
            let t: Vec<bool> = (0..n).map(|i| targets[i * k + c] > 0.5).collect();
            close(
                average_precision(&s, &t).unwrap(),
                want,
                &format!("AP of label {c}"),
            );
        }
        let want = ml["map"].as_f64().unwrap();
        close(
            mean_average_precision(&scores, &targets, k).unwrap(),
            want,
            "mAP",
        );
        // the accumulator reports the same mAP, batch by batch
        let mut acc = MetricsAccumulator::new(Task::MultiLabel, k);
        for b in 0..3 {
            let range = b * 10 * k..(b + 1) * 10 * k;
            let labels = Labels::MultiHot {
                values: targets[range.clone()].to_vec(),
                num_classes: k,
            };
            acc.add(0.0, &scores[range], &labels);
        }
        close(acc.finish().map.unwrap(), want, "accumulated mAP");
        assert_eq!(average_precision(&[0.3, 0.2], &[false, false]), None);
    }

    #[test]
    fn a_weighted_loss_averages_by_the_weights() {
        let mut acc = MetricsAccumulator::new(Task::SingleLabel, 2);
        acc.add_weighted(2.0, 3.0, &[1.0, 0.0], &Labels::Classes(vec![0]));
        acc.add_weighted(
            1.0,
            1.0,
            &[0.0, 1.0, 1.0, 0.0],
            &Labels::Classes(vec![1, 1]),
        );
        let m = acc.finish();
        assert_eq!(m.loss, (2.0 * 3.0 + 1.0) / 4.0);
        assert_eq!(m.samples, 3);
    }

    #[test]
    fn monitor_direction() {
        assert!(Monitor::ValLoss.improves(0.4, 0.5, 0.0));
        assert!(!Monitor::ValTop1.improves(0.4, 0.5, 0.0));
        assert!(Monitor::ValTop1.improves(0.6, 0.5, 0.05));
    }
}
