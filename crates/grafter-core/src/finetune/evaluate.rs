//! One evaluation pass: no gradients, BatchNorm and dropout in inference mode.

use burn::tensor::{Device, Tensor, TensorData};

use crate::data::{DataSource, EpochRequest};
use crate::metrics::MetricsAccumulator;
use crate::progress::PassProgress;
use crate::{Backbone, Classifier, GrafterError, Head, Metrics, Result, Task};

/// Evaluates `model` on every sample of `data`.
///
/// `model` should be in inference mode (`model.valid()`) on `device`.
pub fn evaluate<B: Backbone, H: Head>(
    model: &Classifier<B, H>,
    data: &dyn DataSource,
    task: Task,
    batch_size: usize,
    device: &Device,
    progress: bool,
) -> Result<Metrics> {
    if data.is_empty() {
        return Err(GrafterError::EmptyDataset { role: "validation" });
    }
    let k = model.num_outputs();
    let mut acc = MetricsAccumulator::new(task, data.num_classes());
    let bar = PassProgress::new("evaluating".into(), data.len(), progress);
    let request = EpochRequest {
        epoch: 0,
        seed: 0,
        batch_size,
        train: false,
    };
    for batch in data.batches(request) {
        let batch = batch?;
        batch.validate()?;
        let n = batch.shape[0];
        let targets = task.targets(&batch.labels, k, 0.0, device)?;
        let images = Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), device);
        let logits = model.forward(images);
        let loss: f64 = task.loss(logits.clone(), targets).into_scalar::<f64>();
        let host = logits
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| GrafterError::Data(format!("cannot read logits: {e:?}")))?;
        acc.add(loss, &host, &batch.labels);
        bar.advance(n, format!("loss {loss:.4}"));
    }
    bar.finish();
    Ok(acc.finish())
}
