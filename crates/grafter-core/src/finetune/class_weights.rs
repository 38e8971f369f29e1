//! Class-weighted cross-entropy for imbalanced data: the setting ([`ClassWeights`]), the
//! weights it resolves to, and the loss the loop optimises with them.
//!
//! The loss is PyTorch's `CrossEntropyLoss(weight=w)` with mean reduction: each image's
//! cross-entropy is weighted by the weight of its class and the sum is divided by the sum of
//! those weights (not by the number of images), so the loss stays on the scale of the
//! unweighted one. With label smoothing each class term of the smoothed target carries its
//! own class's weight, as in PyTorch.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::source::{DataSource, Labels};
use crate::{GrafterError, Result, Task};

/// How the classes of a single-label task are weighted in the training loss.
///
/// In `config.json` it is the string `"balanced"` or an array of weights, one per class.
///
/// ```
/// use grafter_core::finetune::ClassWeights;
///
/// // 3 images of class 0, 1 of class 1: n / (k · count), as scikit-learn's "balanced"
/// let w = ClassWeights::Balanced.resolve_counts(&[3, 1]).unwrap();
/// assert_eq!(w, vec![4.0 / 6.0, 2.0]);
/// let json = serde_json::to_string(&ClassWeights::Balanced).unwrap();
/// assert_eq!(json, "\"balanced\"");
/// let given: ClassWeights = serde_json::from_str("[1.0, 5.0]").unwrap();
/// assert_eq!(given, ClassWeights::Given(vec![1.0, 5.0]));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum ClassWeights {
    /// `n_samples / (n_classes · count_c)` from the training data's class counts
    /// (scikit-learn's `compute_class_weight("balanced")`): rare classes weigh more.
    Balanced,
    /// One weight per class, as given.
    Given(Vec<f64>),
}

impl ClassWeights {
    /// Checks given weights: finite, not negative, not all zero.
    pub fn validate(&self) -> Result<()> {
        if let ClassWeights::Given(w) = self {
            if let Some(bad) = w.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(GrafterError::Config(format!(
                    "class_weights must be finite and not negative, got {bad}"
                )));
            }
            if !w.iter().any(|&v| v > 0.0) {
                return Err(GrafterError::Config(
                    "class_weights are all zero (or empty)".into(),
                ));
            }
        }
        Ok(())
    }

    /// The weight of each class, given the number of training images of each class.
    pub fn resolve_counts(&self, counts: &[usize]) -> Result<Vec<f64>> {
        match self {
            ClassWeights::Balanced => {
                let n: usize = counts.iter().sum();
                let k = counts.len();
                if let Some(c) = counts.iter().position(|&c| c == 0) {
                    return Err(GrafterError::Config(format!(
                        "class_weights \"balanced\": class {c} has no training image"
                    )));
                }
                Ok(counts
                    .iter()
                    .map(|&c| n as f64 / (k as f64 * c as f64))
                    .collect())
            }
            ClassWeights::Given(w) => {
                if w.len() != counts.len() {
                    return Err(GrafterError::Config(format!(
                        "{} class_weights given for {} classes",
                        w.len(),
                        counts.len()
                    )));
                }
                Ok(w.clone())
            }
        }
    }

    /// The weight of each class of `train`: for `Balanced`, from the source's
    /// [`class_counts`](DataSource::class_counts).
    pub fn resolve(&self, train: &dyn DataSource) -> Result<Vec<f64>> {
        let k = train.num_classes();
        match self {
            ClassWeights::Given(_) => self.resolve_counts(&vec![1; k]),
            ClassWeights::Balanced => {
                let counts = train.class_counts().ok_or_else(|| {
                    GrafterError::Config(
                        "class_weights \"balanced\" needs the training data's class counts, \
                         which this data source does not give: pass the weights instead"
                            .into(),
                    )
                })?;
                if counts.len() != k {
                    return Err(GrafterError::Data(format!(
                        "the training data counts {} classes but has {k}",
                        counts.len()
                    )));
                }
                self.resolve_counts(&counts)
            }
        }
    }
}

impl Serialize for ClassWeights {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ClassWeights::Balanced => s.serialize_str("balanced"),
            ClassWeights::Given(w) => w.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ClassWeights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Name(String),
            Weights(Vec<f64>),
        }
        match Repr::deserialize(d)? {
            Repr::Name(n) if n == "balanced" => Ok(ClassWeights::Balanced),
            Repr::Name(n) => Err(serde::de::Error::custom(format!(
                "class_weights must be \"balanced\" or an array of weights, got \"{n}\""
            ))),
            Repr::Weights(w) => Ok(ClassWeights::Given(w)),
        }
    }
}

/// The loss the training pass optimises: the task's loss, class-weighted when asked.
#[derive(Clone, Debug)]
pub(crate) struct TrainLoss {
    pub task: Task,
    /// One weight per class (single-label only).
    pub weights: Option<Vec<f32>>,
}

impl TrainLoss {
    /// The batch's loss, and its normaliser: the number of images, or the sum of the weights
    /// of their classes. A gradient-accumulation step weights each micro-batch's loss by its
    /// normaliser and divides the sum by theirs, which gives the loss of the whole batch.
    pub(crate) fn loss(
        &self,
        logits: Tensor<2>,
        targets: Tensor<2>,
        labels: &Labels,
        device: &Device,
    ) -> Result<(Tensor<1>, f64)> {
        let n = labels.len();
        match (&self.weights, labels) {
            (None, _) => Ok((self.task.loss(logits, targets), n as f64)),
            (Some(w), Labels::Classes(classes)) => {
                let (loss, norm) = weighted_cross_entropy(logits, targets, w, classes, device)?;
                Ok((loss, norm))
            }
            (Some(_), _) => Err(GrafterError::Data(
                "class weights need class-index labels".into(),
            )),
        }
    }
}

/// Class-weighted cross-entropy of `logits [N, K]` against (possibly smoothed) `targets
/// [N, K]`: `−Σ_i Σ_c w_c q_ic log p_ic / Σ_i w_{y_i}`, with the normaliser `Σ_i w_{y_i}`.
pub fn weighted_cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<2>,
    weights: &[f32],
    labels: &[usize],
    device: &Device,
) -> Result<(Tensor<1>, f64)> {
    let [n, k] = logits.dims();
    if weights.len() != k {
        return Err(GrafterError::Config(format!(
            "{} class weights for {k} logits",
            weights.len()
        )));
    }
    let mut denom = 0f64;
    for (i, &y) in labels.iter().enumerate() {
        let w = weights.get(y).ok_or_else(|| {
            GrafterError::Data(format!(
                "label {y} of sample {i} in the batch is out of range for {k} classes"
            ))
        })?;
        denom += f64::from(*w);
    }
    if denom <= 0.0 {
        // every image of the batch is of a class weighted zero: nothing to learn from it
        return Ok((logits.sum().mul_scalar(0.0), 0.0));
    }
    let rows: Vec<f32> = (0..n).flat_map(|_| weights.iter().copied()).collect();
    let w = Tensor::<2>::from_data(TensorData::new(rows, [n, k]), device);
    let loss = (log_softmax(logits, 1) * targets * w)
        .sum()
        .mul_scalar(-1.0 / denom);
    Ok((loss, denom))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_weights_are_sklearns() {
        // sklearn: compute_class_weight("balanced", classes=[0,1,2], y=[0]*5+[1]*3+[2]*2)
        let w = ClassWeights::Balanced.resolve_counts(&[5, 3, 2]).unwrap();
        let want = [10.0 / 15.0, 10.0 / 9.0, 10.0 / 6.0];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{w:?}");
        }
        let err = ClassWeights::Balanced.resolve_counts(&[2, 0]).unwrap_err();
        assert!(err.to_string().contains("class 1"), "{err}");
        assert!(
            ClassWeights::Given(vec![1.0])
                .resolve_counts(&[1, 1])
                .is_err()
        );
        assert!(ClassWeights::Given(vec![1.0, -1.0]).validate().is_err());
        assert!(ClassWeights::Given(vec![0.0, 0.0]).validate().is_err());
        assert!(serde_json::from_str::<ClassWeights>("\"balance\"").is_err());
    }

    #[test]
    fn weighted_loss_matches_a_hand_computation() {
        let device = Device::flex();
        let logits = [[2.0f32, 0.5, -1.0], [0.0, 1.0, 3.0], [1.0, 1.0, 0.0]];
        let labels = [0usize, 2, 1];
        let weights = [0.5f32, 2.0, 1.5];
        for eps in [0.0f64, 0.1] {
            let task = Task::SingleLabel;
            let targets = task
                .targets(&Labels::Classes(labels.to_vec()), 3, eps, &device)
                .unwrap();
            let t = Tensor::<2>::from_floats(logits, &device);
            let (loss, norm) =
                weighted_cross_entropy(t, targets, &weights, &labels, &device).unwrap();
            let got: f64 = loss.into_scalar::<f64>();

            // by hand, in f64
            let mut num = 0.0;
            let mut den = 0.0;
            for (row, &y) in logits.iter().zip(&labels) {
                let max = row.iter().fold(f64::MIN, |m, &v| m.max(f64::from(v)));
                let lse = max
                    + row
                        .iter()
                        .map(|&v| (f64::from(v) - max).exp())
                        .sum::<f64>()
                        .ln();
                for c in 0..3 {
                    let q = if c == y { 1.0 - eps } else { 0.0 } + eps / 3.0;
                    num += f64::from(weights[c]) * q * (lse - f64::from(row[c]));
                }
                den += f64::from(weights[y]);
            }
            assert!((norm - den).abs() < 1e-9, "normaliser {norm} vs {den}");
            let want = num / den;
            assert!((got - want).abs() < 1e-5, "eps {eps}: {got} vs {want}");
        }
    }

    #[test]
    fn unit_weights_give_the_plain_loss() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[1.0, -2.0], [0.3, 0.7]], &device);
        let labels = Labels::Classes(vec![1, 0]);
        let targets = Task::SingleLabel.targets(&labels, 2, 0.0, &device).unwrap();
        let plain: f64 = Task::SingleLabel
            .loss(logits.clone(), targets.clone())
            .into_scalar::<f64>();
        let weighted = TrainLoss {
            task: Task::SingleLabel,
            weights: Some(vec![1.0, 1.0]),
        };
        let (loss, norm) = weighted.loss(logits, targets, &labels, &device).unwrap();
        assert_eq!(norm, 2.0);
        assert!((loss.into_scalar::<f64>() - plain).abs() < 1e-6);
    }
}
