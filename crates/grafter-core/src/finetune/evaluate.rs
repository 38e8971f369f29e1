//! One evaluation pass: no gradients, BatchNorm and dropout in inference mode.

use burn::tensor::{Device, Tensor, TensorData};

use crate::metrics::{MetricsAccumulator, TopLoss, TopLosses};
use crate::progress::PassProgress;
use crate::source::{DataSource, EpochRequest};
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
    evaluate_with_mistakes(model, data, task, batch_size, device, progress, None)
        .map(|(metrics, _)| metrics)
}

/// The `n` images of `data` that `model` gets most confidently wrong, highest loss first,
/// named by [`DataSource::sample_name`] (single-label and binary tasks; empty for
/// multi-label ones). fastai's `top_losses`, keeping only mistakes.
///
/// ```
/// # use burn::tensor::Device;
/// # use grafter_core::{Backbone, Classifier, Head, Task, top_losses};
/// # use grafter_core::source::InMemoryDataset;
/// # fn demo<B: Backbone, H: Head>(model: &Classifier<B, H>, valid: &InMemoryDataset) -> grafter_core::Result<()> {
/// for wrong in top_losses(model, valid, Task::SingleLabel, 32, 9, &Device::flex())? {
///     println!("{:?}: {} taken for {} ({:.0}%)", wrong.name, wrong.label, wrong.predicted, 100.0 * wrong.confidence);
/// }
/// # Ok(()) }
/// ```
pub fn top_losses<B: Backbone, H: Head>(
    model: &Classifier<B, H>,
    data: &dyn DataSource,
    task: Task,
    batch_size: usize,
    n: usize,
    device: &Device,
) -> Result<Vec<TopLoss>> {
    evaluate_with_mistakes(model, data, task, batch_size, device, false, Some(n))
        .map(|(_, mistakes)| mistakes)
}

/// [`evaluate`], also keeping the `keep` most confident mistakes when asked.
pub(crate) fn evaluate_with_mistakes<B: Backbone, H: Head>(
    model: &Classifier<B, H>,
    data: &dyn DataSource,
    task: Task,
    batch_size: usize,
    device: &Device,
    progress: bool,
    keep: Option<usize>,
) -> Result<(Metrics, Vec<TopLoss>)> {
    if data.is_empty() {
        return Err(GrafterError::EmptyDataset { role: "validation" });
    }
    let k = model.num_outputs();
    let mut acc = MetricsAccumulator::new(task, data.num_classes());
    let mut mistakes = keep.and_then(|n| TopLosses::new(task, n));
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
        if let Some(top) = mistakes.as_mut() {
            top.add(&host, &batch.labels);
        }
        bar.advance(n, format!("loss {loss:.4}"));
    }
    bar.finish();
    let mut mistakes = mistakes.map(TopLosses::finish).unwrap_or_default();
    for m in &mut mistakes {
        m.name = data.sample_name(m.index);
    }
    Ok((acc.finish(), mistakes))
}
