//! Whether the fine-tune loop may train the head from cached features: only when that is
//! exact.
//!
//! Exact by construction: a frozen stage gets no gradient and runs in inference mode
//! (`freeze_group` disables its training flags, so BatchNorm uses its running statistics and
//! dropout is off), which is what `backbone.valid()` computes; the cached training pass then
//! feeds the head the features of exactly the samples the source would have yielded, in the
//! same order and the same batches.

use burn::module::{ModuleVisitor, Param};
use burn::tensor::{Bool, Int, Tensor};

use crate::policy::EpochPlan;
use crate::source::DataSource;
use crate::{Backbone, Stage};

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
    if train.cacheable().is_none() {
        return Some("the training data is not cacheable (augmented, or random)".into());
    }
    if valid.cacheable().is_none() {
        return Some("the validation data is not cacheable".into());
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
