//! The feature cache's data: the backbone's features of every sample of a source, served
//! back as a [`DataSource`] in exactly the batches and order the source would have yielded.

use burn::tensor::{Device, Tensor, TensorData};

use crate::progress::PassProgress;
use crate::source::{DataSource, EpochRequest, HostBatch, Labels, check_order};
use crate::{Backbone, GrafterError, Result};

/// Features of every sample of one source, in evaluation order, with their labels.
pub(crate) struct Features {
    values: Vec<f32>,
    shape: [usize; 3],
    classes: Vec<usize>,
    multi_hot: Vec<f32>,
    num_classes: usize,
    multi: bool,
    len: usize,
}

impl Features {
    /// One evaluation pass of `source` through `backbone` (already in inference mode on
    /// `device`). `Ok(None)` when the pass did not yield every sample (files failed to load),
    /// since the samples can then no longer be told apart.
    /// `budget` is the number of bytes the features may still take; it is checked after the
    /// first batch (the feature size is known then) and the pass stops with `Ok(None)` and
    /// `*over_budget` set when the whole source would exceed it.
    pub(crate) fn compute<B: Backbone>(
        backbone: &B,
        source: &dyn DataSource,
        batch_size: usize,
        device: &Device,
        bar: &PassProgress,
        budget: &mut u64,
        over_budget: &mut Option<u64>,
    ) -> Result<Option<Self>> {
        let request = EpochRequest {
            epoch: 0,
            seed: 0,
            batch_size,
            train: false,
        };
        let mut out = Self {
            values: Vec::new(),
            shape: [0; 3],
            classes: Vec::new(),
            multi_hot: Vec::new(),
            num_classes: source.num_classes(),
            multi: false,
            len: 0,
        };
        for batch in source.batches(request) {
            let batch = batch?;
            batch.validate()?;
            let images = Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), device);
            let features = backbone.forward_features(images);
            let [n, c, h, w] = features.dims();
            if out.len == 0 {
                out.shape = [c, h, w];
                let needed = (source.len() * c * h * w * 4) as u64;
                if needed > *budget {
                    *over_budget = Some(needed);
                    return Ok(None);
                }
                *budget -= needed;
            } else if out.shape != [c, h, w] {
                return Err(GrafterError::Data(format!(
                    "the backbone gave features {:?} then {:?}: the feature cache needs equally sized inputs",
                    out.shape,
                    [c, h, w]
                )));
            }
            let values = features
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| GrafterError::Data(format!("cannot read features: {e:?}")))?;
            out.values.extend_from_slice(&values);
            match batch.labels {
                Labels::Classes(c) => out.classes.extend(c),
                Labels::MultiHot {
                    values,
                    num_classes,
                } => {
                    out.multi = true;
                    out.num_classes = num_classes;
                    out.multi_hot.extend(values);
                }
            }
            out.len += n;
            bar.advance(n, String::new());
        }
        if out.len != source.len() || (out.multi && !out.classes.is_empty()) {
            return Ok(None);
        }
        Ok(Some(out))
    }

    /// Megabytes held.
    pub(crate) fn megabytes(&self) -> f64 {
        (self.values.len() * 4) as f64 / 1e6
    }

    fn labels(&self, idx: &[usize]) -> Labels {
        if self.multi {
            let k = self.num_classes;
            Labels::MultiHot {
                values: idx
                    .iter()
                    .flat_map(|&i| self.multi_hot[i * k..(i + 1) * k].iter().copied())
                    .collect(),
                num_classes: k,
            }
        } else {
            Labels::Classes(idx.iter().map(|&i| self.classes[i]).collect())
        }
    }
}

/// Cached features served as a [`DataSource`]: training passes follow the original source's
/// [`sample_order`](DataSource::sample_order), evaluation passes the dataset order, both cut
/// into batches of the requested size exactly as the original source cuts them.
pub(crate) struct CachedSource<'a> {
    pub(crate) features: Features,
    pub(crate) original: &'a dyn DataSource,
}

impl DataSource for CachedSource<'_> {
    fn len(&self) -> usize {
        self.features.len
    }

    fn num_classes(&self) -> usize {
        self.original.num_classes()
    }

    fn class_counts(&self) -> Option<Vec<usize>> {
        self.original.class_counts()
    }

    fn sample_labels(&self) -> Option<Vec<usize>> {
        self.original.sample_labels()
    }

    fn sample_name(&self, index: usize) -> Option<String> {
        self.original.sample_name(index)
    }

    /// The cached features of `order`: a sampled pass, as the original source would serve it.
    fn batches_of<'b>(
        &'b self,
        order: Vec<usize>,
        request: EpochRequest,
    ) -> Option<Box<dyn Iterator<Item = Result<HostBatch>> + Send + 'b>> {
        if let Err(e) = check_order(&order, self.features.len) {
            return Some(Box::new(std::iter::once(Err(e))));
        }
        Some(self.serve(order, request))
    }

    fn batches<'b>(
        &'b self,
        request: EpochRequest,
    ) -> Box<dyn Iterator<Item = Result<HostBatch>> + Send + 'b> {
        let order = if request.train {
            match self.original.sample_order(request) {
                Some(order) => order,
                None => {
                    return Box::new(std::iter::once(Err(GrafterError::Data(
                        "the training data no longer tells its sample order".into(),
                    ))));
                }
            }
        } else {
            (0..self.features.len).collect()
        };
        if let Some(&bad) = order.iter().find(|&&i| i >= self.features.len) {
            return Box::new(std::iter::once(Err(GrafterError::Data(format!(
                "the training data's sample order names sample {bad} of {}",
                self.features.len
            )))));
        }
        self.serve(order, request)
    }
}

impl CachedSource<'_> {
    /// The features of `order` (checked to be in range), in batches of `request.batch_size`.
    fn serve(
        &self,
        order: Vec<usize>,
        request: EpochRequest,
    ) -> Box<dyn Iterator<Item = Result<HostBatch>> + Send + '_> {
        let [c, h, w] = self.features.shape;
        let per = c * h * w;
        let chunks: Vec<Vec<usize>> = order
            .chunks(request.batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        Box::new(chunks.into_iter().map(move |idx| {
            let mut images = Vec::with_capacity(idx.len() * per);
            for &i in &idx {
                images.extend_from_slice(&self.features.values[i * per..(i + 1) * per]);
            }
            Ok(HostBatch {
                images,
                shape: [idx.len(), c, h, w],
                labels: self.features.labels(&idx),
            })
        }))
    }
}
