//! The fine-tune loop's feature cache: when the backbone stays frozen for the whole run, its
//! features are computed once, kept in memory, and the head trains from them.
//!
//! Exact by construction: a frozen stage gets no gradient and runs in inference mode
//! (`freeze_group` disables its training flags, so BatchNorm uses its running statistics and
//! dropout is off), which is what `backbone.valid()` computes; the cached training pass then
//! feeds the head the features of exactly the samples the source would have yielded, in the
//! same order and the same batches.

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bool, Device, Int, Tensor};

use super::cached_source::Features;
use super::reporter::Reporter;
use crate::policy::EpochPlan;
use crate::progress::PassProgress;
use crate::source::{DataSource, EpochRequest};
use crate::{Backbone, Preprocess, Result, Stage};

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

/// Whether the loop uses the cache: `on` (the user's switch) and nothing in the way.
pub(crate) fn decide<B: Backbone>(
    on: bool,
    backbone: &B,
    stages: &[Stage],
    plans: &[EpochPlan],
    train: &dyn DataSource,
    valid: &dyn DataSource,
) -> FeatureCacheUse {
    if !on {
        return FeatureCacheUse::Off("turned off with FineTune::feature_cache(false)".into());
    }
    match blocker(backbone, stages, plans, train, valid) {
        Some(why) => FeatureCacheUse::Off(why),
        None => FeatureCacheUse::On,
    }
}

/// The features of the training and validation data, or why they cannot stand in for the
/// backbone.
pub(crate) type CachedOrWhyNot = std::result::Result<(Features, Features), String>;

/// One inference pass of `backbone` over both sources, the features taking at most
/// `budget` bytes. The inner `Err` says why the features cannot be used (the loop then
/// trains live).
pub(crate) fn compute<B: Backbone>(
    backbone: &B,
    [train, valid]: [&dyn DataSource; 2],
    batch_size: usize,
    budget: u64,
    device: &Device,
    reporter: &Reporter,
) -> Result<CachedOrWhyNot> {
    reporter.say(&format!(
        "feature cache: backbone frozen for every epoch; computing features of {} + {} images once",
        train.len(),
        valid.len()
    ));
    let started = Instant::now();
    let backbone = backbone.valid().to_device(device);
    let bar = PassProgress::new(
        "features".into(),
        train.len() + valid.len(),
        reporter.progress(),
    );
    let result = (|| {
        let mut left = budget;
        let mut over = None;
        let mut computed = Vec::with_capacity(2);
        for (source, role) in [(train, "training"), (valid, "validation")] {
            let features = Features::compute(
                &backbone, source, batch_size, device, &bar, &mut left, &mut over,
            )?;
            match features {
                Some(features) => computed.push(features),
                // over budget: what the earlier sources took, plus what this one would
                None => {
                    return Ok(Err(match over {
                        Some(needed) => too_big(needed + (budget - left), budget),
                        None => format!(
                            "the feature pass did not yield every {role} image (files failed to load)"
                        ),
                    }));
                }
            }
        }
        let cvalid = computed.pop().expect("two sources");
        let ctrain = computed.pop().expect("two sources");
        Ok(Ok((ctrain, cvalid)))
    })();
    bar.finish();
    if let Ok(Ok((t, v))) = &result {
        reporter.say(&format!(
            "feature cache: {:.1} MB of features in {:.1}s; training the head from them",
            t.megabytes() + v.megabytes(),
            started.elapsed().as_secs_f64()
        ));
    }
    result
}

fn too_big(needed: u64, budget: u64) -> String {
    format!(
        "the features would take {:.1} GB, more than the {:.1} GB budget \
         (FineTune::feature_cache_budget; grafter_data::FeatureCache can keep them \
         in an f16 file instead)",
        needed as f64 / 1e9,
        budget as f64 / 1e9
    )
}

/// Why the cache cannot stand in for the live backbone, or `None` when it can.
fn blocker<B: Backbone>(
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
