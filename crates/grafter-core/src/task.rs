//! What the logits mean — and therefore which loss and which metrics apply.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::source::Labels;
use crate::{GrafterError, Result};

/// The kind of classification problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Task {
    /// One class per image, softmax cross-entropy over `K` logits.
    #[default]
    SingleLabel,
    /// Two classes with a single logit, sigmoid binary cross-entropy.
    Binary,
    /// Any subset of `K` labels per image, per-label sigmoid binary cross-entropy.
    MultiLabel,
}

impl Task {
    /// Number of logits the head must produce for `num_classes` classes.
    pub fn num_outputs(&self, num_classes: usize) -> usize {
        match self {
            Task::Binary => 1,
            _ => num_classes,
        }
    }

    /// Builds the `[N, K]` float target tensor, with label smoothing `eps` applied.
    ///
    /// Single-label targets become `(1 - eps) * onehot + eps / K`; sigmoid targets become
    /// `y (1 - eps) + eps / 2`.
    pub fn targets(
        &self,
        labels: &Labels,
        num_outputs: usize,
        eps: f64,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let eps = eps as f32;
        let k = num_outputs;
        let (n, values) = match (self, labels) {
            (Task::SingleLabel, Labels::Classes(classes)) => {
                let mut v = vec![eps / k as f32; classes.len() * k];
                for (i, &c) in classes.iter().enumerate() {
                    check_class(c, k, i)?;
                    v[i * k + c] += 1.0 - eps;
                }
                (classes.len(), v)
            }
            (Task::Binary, Labels::Classes(classes)) => {
                let mut v = Vec::with_capacity(classes.len());
                for (i, &c) in classes.iter().enumerate() {
                    check_class(c, 2, i)?;
                    v.push(c as f32 * (1.0 - eps) + eps / 2.0);
                }
                (classes.len(), v)
            }
            (
                Task::MultiLabel,
                Labels::MultiHot {
                    values,
                    num_classes,
                },
            ) => {
                if *num_classes != k {
                    return Err(GrafterError::Data(format!(
                        "multi-hot labels have {num_classes} classes but the head has {k} outputs"
                    )));
                }
                let v = values
                    .iter()
                    .map(|&y| y * (1.0 - eps) + eps / 2.0)
                    .collect();
                (values.len() / k, v)
            }
            (task, _) => {
                return Err(GrafterError::Data(format!(
                    "labels of this batch do not fit the task {task:?} (class indices are needed for single-label and binary, multi-hot vectors for multi-label)"
                )));
            }
        };
        Ok(Tensor::from_data(TensorData::new(values, [n, k]), device))
    }

    /// Mean loss of `logits [N, K]` against `targets [N, K]` (from [`targets`](Self::targets)).
    pub fn loss(&self, logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
        match self {
            Task::SingleLabel => {
                let n = logits.dims()[0];
                (log_softmax(logits, 1) * targets)
                    .sum()
                    .mul_scalar(-1.0 / n as f64)
            }
            Task::Binary | Task::MultiLabel => {
                // Numerically stable BCE with logits: max(x,0) - x*y + log(1 + exp(-|x|)).
                let pos = logits.clone().clamp_min(0.0);
                let soft = logits.clone().abs().neg().exp().log1p();
                (pos - logits * targets + soft).mean()
            }
        }
    }
}

fn check_class(class: usize, num_classes: usize, index: usize) -> Result<()> {
    if class >= num_classes {
        return Err(GrafterError::Data(format!(
            "label {class} of sample {index} in the batch is out of range for {num_classes} classes"
        )));
    }
    Ok(())
}
