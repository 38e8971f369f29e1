//! Gradual unfreezing (ULMFiT): start with the head alone, thaw one more stage from the top
//! every `every` epochs.

use super::{EpochPlan, FreezePolicy, StageSetting};

/// Unfreezes one more backbone stage, starting from the output side, every `every` epochs.
#[derive(Clone, Copy, Debug)]
pub struct GradualUnfreeze {
    /// Epochs between two unfreezings (at least 1).
    pub every: usize,
}

impl GradualUnfreeze {
    /// One more stage every `every` epochs (0 is treated as 1).
    pub fn new(every: usize) -> Self {
        Self {
            every: every.max(1),
        }
    }
}

impl FreezePolicy for GradualUnfreeze {
    fn plan(&self, epoch: usize, num_stages: usize) -> EpochPlan {
        let thawed = (epoch / self.every.max(1)).min(num_stages);
        let mut plan = EpochPlan::uniform(num_stages, StageSetting::frozen());
        for s in plan.stages.iter_mut().skip(num_stages - thawed) {
            *s = StageSetting::train(1.0);
        }
        plan
    }

    fn name(&self) -> String {
        format!("gradual-unfreeze-every-{}", self.every)
    }
}
