//! The images a model gets most confidently wrong (fastai's `top_losses`, restricted to
//! mistakes): the first thing to look at after a run — mislabelled images, confusable classes,
//! a broken preprocessing.

use serde::{Deserialize, Serialize};

use super::argmax;
use crate::Task;
use crate::source::Labels;

/// One misclassified image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopLoss {
    /// Position of the image in the data source's evaluation order.
    pub index: usize,
    /// Where the image came from (its path), when the data source knows
    /// ([`DataSource::sample_name`](crate::source::DataSource::sample_name)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The true class.
    pub label: usize,
    /// The predicted class.
    pub predicted: usize,
    /// The model's probability of the predicted class.
    pub confidence: f64,
    /// Cross-entropy of the true class, `−ln p(label)` (no label smoothing).
    pub loss: f64,
}

/// Keeps the `n` misclassified images with the highest loss seen so far.
#[derive(Clone, Debug)]
pub struct TopLosses {
    task: Task,
    n: usize,
    seen: usize,
    kept: Vec<TopLoss>,
}

impl TopLosses {
    /// Keeps `n` images of a single-label or binary task; `None` for multi-label tasks,
    /// where "wrong" has no single meaning.
    pub fn new(task: Task, n: usize) -> Option<Self> {
        (task != Task::MultiLabel).then_some(Self {
            task,
            n,
            seen: 0,
            kept: Vec::new(),
        })
    }

    /// Adds a batch: row-major logits `[images, outputs]` and their labels.
    pub fn add(&mut self, logits: &[f32], labels: &Labels) {
        let Labels::Classes(classes) = labels else {
            return;
        };
        let width = logits.len() / classes.len().max(1);
        for (row, &label) in logits.chunks(width.max(1)).zip(classes) {
            let index = self.seen;
            self.seen += 1;
            let (probs, predicted) = match self.task {
                Task::Binary => {
                    let p1 = 1.0 / (1.0 + (-(row[0] as f64)).exp());
                    (vec![1.0 - p1, p1], usize::from(row[0] > 0.0))
                }
                // the class the metrics count as predicted
                _ => (softmax(row), argmax(row)),
            };
            if predicted == label || label >= probs.len() {
                continue;
            }
            self.kept.push(TopLoss {
                index,
                name: None,
                label,
                predicted,
                confidence: probs[predicted],
                loss: -probs[label].max(f64::MIN_POSITIVE).ln(),
            });
        }
        self.kept
            .sort_by(|a, b| b.loss.total_cmp(&a.loss).then(a.index.cmp(&b.index)));
        self.kept.truncate(self.n);
    }

    /// The kept images, highest loss first.
    pub fn finish(self) -> Vec<TopLoss> {
        self.kept
    }
}

fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_confident_mistakes_in_order_of_loss() {
        let mut top = TopLosses::new(Task::SingleLabel, 2).unwrap();
        // image 0 right; 1 wrong (mildly); 2 wrong (badly); 3 wrong (worst), in two batches
        top.add(
            &[3.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            &Labels::Classes(vec![0, 0]),
        );
        top.add(
            &[0.0, 0.0, 4.0, 0.0, 9.0, 0.0],
            &Labels::Classes(vec![0, 2]),
        );
        let kept = top.finish();
        assert_eq!(kept.iter().map(|t| t.index).collect::<Vec<_>>(), vec![3, 2]);
        let worst = &kept[0];
        assert_eq!((worst.label, worst.predicted), (2, 1));
        let z = 1.0 + 9f64.exp() + 1.0;
        assert!((worst.confidence - 9f64.exp() / z).abs() < 1e-12);
        assert!((worst.loss - (z.ln())).abs() < 1e-9, "{}", worst.loss);
    }

    #[test]
    fn binary_tasks_read_the_single_logit_as_the_positive_class() {
        let mut top = TopLosses::new(Task::Binary, 5).unwrap();
        top.add(&[2.0, -1.0, 0.5], &Labels::Classes(vec![0, 0, 1]));
        let kept = top.finish();
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].index, kept[0].label, kept[0].predicted), (0, 0, 1));
        let p1 = 1.0 / (1.0 + (-2f64).exp());
        assert!((kept[0].loss + (1.0 - p1).ln()).abs() < 1e-12);
        assert!(TopLosses::new(Task::MultiLabel, 5).is_none());
    }
}
