//! Policies whose plan is the same every epoch.

use super::{EpochPlan, FreezePolicy, StageSetting};

/// Feature extraction: the whole backbone is frozen, only the head trains.
#[derive(Clone, Copy, Debug, Default)]
pub struct Frozen;

impl FreezePolicy for Frozen {
    fn plan(&self, _epoch: usize, num_stages: usize) -> EpochPlan {
        EpochPlan::uniform(num_stages, StageSetting::frozen())
    }

    fn name(&self) -> String {
        "frozen".into()
    }
}

/// Everything trains at the base learning rate.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrainAll;

impl FreezePolicy for TrainAll {
    fn plan(&self, _epoch: usize, num_stages: usize) -> EpochPlan {
        EpochPlan::uniform(num_stages, StageSetting::train(1.0))
    }

    fn name(&self) -> String {
        "train-all".into()
    }
}

/// The first `k` stages (input side) stay frozen; the rest trains at the base learning rate.
#[derive(Clone, Copy, Debug)]
pub struct FreezeFirst(pub usize);

impl FreezePolicy for FreezeFirst {
    fn plan(&self, _epoch: usize, num_stages: usize) -> EpochPlan {
        let mut plan = EpochPlan::uniform(num_stages, StageSetting::train(1.0));
        for s in plan.stages.iter_mut().take(self.0) {
            *s = StageSetting::frozen();
        }
        plan
    }

    fn name(&self) -> String {
        format!("freeze-first-{}", self.0)
    }
}
