//! Per-class precision, recall and F1 with scikit-learn's averages, from a confusion matrix.

use serde::{Deserialize, Serialize};

/// The scores of one class.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// Of the images predicted as this class, the fraction that are (0 when none is).
    pub precision: f64,
    /// Of the images of this class, the fraction predicted as it (0 when there are none).
    pub recall: f64,
    /// Harmonic mean of precision and recall, `2·tp / (2·tp + fp + fn)` (0 when undefined).
    pub f1: f64,
    /// Images of this class.
    pub support: u64,
    /// Images predicted as this class.
    pub predicted: u64,
}

/// scikit-learn's `classification_report` and friends for a single-label (or binary) pass.
///
/// The averages run over the classes that occur in the truth or the predictions, as
/// scikit-learn's do when `labels` is not given (its `unique_labels(y_true, y_pred)`), with
/// undefined precisions and recalls counted as 0 (its `zero_division` default); balanced
/// accuracy is the mean recall over the classes that occur in the truth
/// (`balanced_accuracy_score`).
///
/// ```
/// use grafter_core::metrics::ClassReport;
///
/// // truth 0,0,1,2 predicted 0,1,1,1: confusion[true][predicted]
/// let report = ClassReport::from_confusion(&[vec![1, 1, 0], vec![0, 1, 0], vec![0, 1, 0]]).unwrap();
/// assert_eq!(report.accuracy, 0.5);
/// assert_eq!(report.classes[1].precision, 1.0 / 3.0);
/// assert_eq!(report.balanced_accuracy, (0.5 + 1.0 + 0.0) / 3.0);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    /// The scores of every class, by class index.
    pub classes: Vec<ClassScores>,
    /// Fraction of images predicted right (equal to micro-averaged F1, precision and recall).
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 scores.
    pub macro_f1: f64,
    /// F1 of the pooled counts of all classes.
    pub micro_f1: f64,
    /// Mean of the per-class F1 scores weighted by support.
    pub weighted_f1: f64,
    /// Unweighted mean of the per-class precisions.
    pub macro_precision: f64,
    /// Unweighted mean of the per-class recalls.
    pub macro_recall: f64,
    /// Mean recall over the classes present in the truth.
    pub balanced_accuracy: f64,
    /// Images counted.
    pub samples: u64,
}

impl ClassReport {
    /// The report of `confusion[true][predicted]` (a square matrix); `None` when it is empty
    /// or counts no image.
    pub fn from_confusion(confusion: &[Vec<u64>]) -> Option<Self> {
        let k = confusion.len();
        if k == 0 || confusion.iter().any(|row| row.len() != k) {
            return None;
        }
        // a total that overflows cannot come from counting images (a corrupted history)
        let samples = confusion
            .iter()
            .flatten()
            .try_fold(0u64, |n, &c| n.checked_add(c))?;
        if samples == 0 {
            return None;
        }
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let classes: Vec<ClassScores> = (0..k)
            .map(|c| {
                let tp = confusion[c][c];
                let support: u64 = confusion[c].iter().sum();
                let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
                ClassScores {
                    precision: ratio(tp, predicted),
                    recall: ratio(tp, support),
                    // in f64: each count fits in u64 (they sum to `samples`), twice one may not
                    f1: if support == 0 && predicted == 0 {
                        0.0
                    } else {
                        2.0 * tp as f64 / (support as f64 + predicted as f64)
                    },
                    support,
                    predicted,
                }
            })
            .collect();
        let present: Vec<&ClassScores> = classes
            .iter()
            .filter(|s| s.support > 0 || s.predicted > 0)
            .collect();
        let mean = |f: fn(&ClassScores) -> f64, of: &[&ClassScores]| {
            of.iter().map(|s| f(s)).sum::<f64>() / of.len().max(1) as f64
        };
        let in_truth: Vec<&ClassScores> = classes.iter().filter(|s| s.support > 0).collect();
        let hits: u64 = (0..k).map(|c| confusion[c][c]).sum();
        let accuracy = ratio(hits, samples);
        Some(Self {
            accuracy,
            macro_f1: mean(|s| s.f1, &present),
            micro_f1: accuracy,
            weighted_f1: classes.iter().map(|s| s.f1 * s.support as f64).sum::<f64>()
                / samples as f64,
            macro_precision: mean(|s| s.precision, &present),
            macro_recall: mean(|s| s.recall, &present),
            balanced_accuracy: mean(|s| s.recall, &in_truth),
            samples,
            classes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts no run produces (a corrupted `state.json`): no report past 2^64 images, and no
    /// overflow below it.
    #[test]
    fn counts_at_the_edge_of_u64_give_no_overflow() {
        assert!(ClassReport::from_confusion(&[vec![u64::MAX, 1], vec![0, 0]]).is_none());
        let r = ClassReport::from_confusion(&[vec![u64::MAX - 1, 0], vec![0, 1]]).unwrap();
        assert_eq!(r.samples, u64::MAX);
        assert!((r.classes[0].f1 - 1.0).abs() < 1e-12);
        assert_eq!(r.classes[1].f1, 1.0);
    }
}
