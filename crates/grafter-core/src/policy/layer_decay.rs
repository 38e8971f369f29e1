//! Layer-wise learning-rate decay (BEiT, timm `layer_decay`): every stage trains, each one
//! closer to the input at `decay` times the rate of the next.

use super::{EpochPlan, FreezePolicy, StageSetting};

/// Stage `i` of `S` trains at `decay^(S - i)` times the base rate; the head at the base rate.
#[derive(Clone, Copy, Debug)]
pub struct LayerwiseLrDecay {
    /// Per-stage decay factor in (0, 1].
    pub decay: f64,
}

impl LayerwiseLrDecay {
    /// Decay factor per stage.
    pub fn new(decay: f64) -> Self {
        Self { decay }
    }
}

impl FreezePolicy for LayerwiseLrDecay {
    fn plan(&self, _epoch: usize, num_stages: usize) -> EpochPlan {
        let stages = (0..num_stages)
            .map(|i| StageSetting::train(self.decay.powi((num_stages - i) as i32)))
            .collect();
        EpochPlan {
            stages,
            head: StageSetting::train(1.0),
            phase: 0,
        }
    }

    fn name(&self) -> String {
        format!("layerwise-lr-decay-{}", self.decay)
    }
}
