//! The policy of a resumed run when none is passed: the per-epoch plans its checkpoint saved
//! (every epoch's, written when the run started), replayed as they were. A run made with a
//! custom policy therefore resumes without that policy's code.

use crate::policy::{EpochPlan, FreezePolicy};

/// Replays saved plans under the saved policy's name.
#[derive(Debug, Clone)]
pub(crate) struct SavedPlans {
    pub name: String,
    pub plans: Vec<EpochPlan>,
}

impl FreezePolicy for SavedPlans {
    /// The saved plan of `epoch` (the resume checks that the plans cover every epoch and that
    /// each names `num_stages` stages).
    fn plan(&self, epoch: usize, num_stages: usize) -> EpochPlan {
        self.plans.get(epoch).cloned().unwrap_or_else(|| {
            EpochPlan::uniform(num_stages, crate::policy::StageSetting::frozen())
        })
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}
