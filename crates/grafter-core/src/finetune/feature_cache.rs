//! The fine-tune loop's feature cache: when the backbone stays frozen for the whole run, its
//! features are computed once, kept in memory, and the head trains from them.
//!
//! Exact by construction: a frozen stage gets no gradient and runs in inference mode
//! (`freeze_group` disables its training flags, so BatchNorm uses its running statistics and
//! dropout is off), which is what `backbone.valid()` computes; the cached training pass then
//! feeds the head the features of exactly the samples the source would have yielded, in the
//! same order and the same batches.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::data::{DataSource, EpochRequest, HostBatch, Labels};
use crate::policy::EpochPlan;
use crate::progress::PassProgress;
use crate::{Backbone, GrafterError, Preprocess, Result, Stage};

/// Whether [`FineTune::fit`](crate::FineTune::fit) trains the head from cached backbone
/// features, as decided by [`FineTune::feature_cache_use`](crate::FineTune::feature_cache_use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeatureCacheUse {
    /// The backbone's features are computed once; the head trains from them.
    On,
    /// The loop runs the backbone every step, for the reason given.
    Off(String),
}

impl FeatureCacheUse {
    /// True for [`On`](Self::On).
    pub fn is_on(&self) -> bool {
        matches!(self, Self::On)
    }
}

/// Why the cache cannot stand in for the live backbone, or `None` when it can.
pub(crate) fn blocker<B: Backbone>(
    backbone: &B,
    stages: &[Stage],
    plans: &[EpochPlan],
    train: &dyn DataSource,
    valid: &dyn DataSource,
) -> Option<String> {
    for (epoch, plan) in plans.iter().enumerate() {
        if let Some(i) = plan.trainable_stages().first() {
            let name = stages.get(*i).map(|s| s.name.as_str()).unwrap_or("?");
            return Some(format!("epoch {} trains stage '{name}'", epoch + 1));
        }
    }
    if let Some(path) = outside_stages(backbone, stages) {
        return Some(format!(
            "backbone parameter or flag '{path}' belongs to no stage, so it would train"
        ));
    }
    if !train.cacheable() {
        return Some("the training data is not cacheable (augmented, or random)".into());
    }
    if !valid.cacheable() {
        return Some("the validation data is not cacheable".into());
    }
    let probe = EpochRequest {
        epoch: 0,
        seed: 0,
        batch_size: 1,
        train: true,
    };
    if train.sample_order(probe).is_none() {
        return Some("the training data does not tell its sample order".into());
    }
    None
}

/// The path of the first parameter or training flag of `backbone` that no stage covers: a
/// frozen-everything plan would leave it trainable (or its BatchNorm in training mode).
fn outside_stages<B: Backbone>(backbone: &B, stages: &[Stage]) -> Option<String> {
    struct Find<'a> {
        stages: &'a [Stage],
        path: Vec<String>,
        found: Option<String>,
    }
    impl Find<'_> {
        fn check(&mut self, id: &burn::module::ParamId) {
            if self.found.is_none() && !self.stages.iter().any(|s| s.params.matches(id, None)) {
                self.found = Some(self.path.join("."));
            }
        }
    }
    impl ModuleVisitor for Find<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.check(&p.id);
        }
        fn visit_int<const D: usize>(&mut self, p: &Param<Tensor<D, Int>>) {
            self.check(&p.id);
        }
        fn visit_bool<const D: usize>(&mut self, p: &Param<Tensor<D, Bool>>) {
            self.check(&p.id);
        }
        fn visit_flag(&mut self, p: &Param<burn::module::Flag>) {
            self.check(&p.id);
        }
    }
    let mut find = Find {
        stages,
        path: Vec::new(),
        found: None,
    };
    backbone.visit(&mut find);
    find.found
}

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

/// The identity "backbone" of a feature cache: its input *is* the cached feature map. No
/// parameters and no stages, so `FineTune` with any policy trains the head alone. Used by the
/// loop's automatic cache and by grafter-data's file-backed `FeatureCache`.
#[derive(Module, Debug)]
pub struct CachedFeatures {
    channels: usize,
    #[module(skip)]
    preprocess: Preprocess,
}

impl CachedFeatures {
    /// Stands in for a backbone whose feature maps have `channels` channels and whose inputs
    /// were prepared with `preprocess`.
    pub fn new(channels: usize, preprocess: Preprocess) -> Self {
        Self {
            channels,
            preprocess,
        }
    }

    /// Stands in for `backbone`.
    pub fn of<B: Backbone>(backbone: &B) -> Self {
        Self::new(backbone.feature_channels(), backbone.preprocess())
    }
}

impl Backbone for CachedFeatures {
    fn forward_features(&self, features: Tensor<4>) -> Tensor<4> {
        features
    }

    fn feature_channels(&self) -> usize {
        self.channels
    }

    fn stages(&self) -> Vec<Stage> {
        Vec::new()
    }

    fn preprocess(&self) -> Preprocess {
        self.preprocess.clone()
    }
}
