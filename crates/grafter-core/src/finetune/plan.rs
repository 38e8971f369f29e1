//! The freeze policy's plans as the loop applies them: which stages train, at which rates,
//! and where in its phase the learning-rate schedule stands.

use burn::module::{Module, ParamGroup};
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};

use super::config::{FineTuneConfig, MAX_EPOCHS};
use crate::policy::{EpochPlan, FreezePolicy};
use crate::{Backbone, Classifier, GrafterError, Head, Result, Stage};

/// The plans of every epoch of a run, checked against the backbone's stage count.
pub(crate) fn plans_of(
    policy: &dyn FreezePolicy,
    epochs: usize,
    num_stages: usize,
) -> Result<Vec<EpochPlan>> {
    if epochs > MAX_EPOCHS {
        return Err(GrafterError::Config(format!(
            "{epochs} epochs: at most {MAX_EPOCHS} can be planned"
        )));
    }
    let plans: Vec<EpochPlan> = (0..epochs).map(|e| policy.plan(e, num_stages)).collect();
    check_plans(&plans, num_stages)?;
    Ok(plans)
}

/// Errors when a plan names another number of stages than the backbone has, or gives a
/// trainable part a learning-rate multiplier that is negative or not a number.
fn check_plans(plans: &[EpochPlan], num_stages: usize) -> Result<()> {
    for (e, plan) in plans.iter().enumerate() {
        if plan.stages.len() != num_stages {
            return Err(GrafterError::Config(format!(
                "the policy planned {} stages for epoch {e} but the backbone has {num_stages}",
                plan.stages.len()
            )));
        }
        let all = plan.stages.iter().chain(std::iter::once(&plan.head));
        if let Some(bad) = all
            .filter(|s| s.trainable)
            .find(|s| !(s.lr_mult.is_finite() && s.lr_mult >= 0.0))
        {
            return Err(GrafterError::Config(format!(
                "the policy gave epoch {e} a learning-rate multiplier of {}",
                bad.lr_mult
            )));
        }
    }
    Ok(())
}

/// First epoch and length (in epochs) of the phase containing `epoch`.
fn phase_span(plans: &[EpochPlan], epoch: usize) -> (usize, usize) {
    let phase = plans[epoch].phase;
    let start = (0..=epoch)
        .rev()
        .take_while(|&e| plans[e].phase == phase)
        .last()
        .unwrap_or(epoch);
    let len = plans[start..]
        .iter()
        .take_while(|p| p.phase == phase)
        .count();
    (start, len)
}

/// The base learning rate of global step `step` in `epoch`: the schedule restarts at each
/// phase of the policy and is a pure function of the step, so a resumed run recomputes it.
pub(crate) fn base_lr(
    cfg: &FineTuneConfig,
    plans: &[EpochPlan],
    epoch: usize,
    step: usize,
    steps_per_epoch: usize,
) -> f64 {
    let (phase_start, phase_len) = phase_span(plans, epoch);
    let step_in_phase = step - phase_start * steps_per_epoch;
    cfg.lr
        * cfg
            .schedule
            .factor(step_in_phase, phase_len * steps_per_epoch)
}

/// Unfreezes everything, then freezes what the plan says: no gradient and BatchNorm in
/// inference mode for each frozen stage (Burn's `freeze_group` clears both).
pub(crate) fn apply_plan<B: Backbone, H: Head>(
    model: Classifier<B, H>,
    plan: &EpochPlan,
    stages: &[Stage],
) -> Classifier<B, H> {
    let mut model = model.unfreeze();
    for group in frozen_groups(&model, plan, stages) {
        model = model.freeze_group(group);
    }
    model
}

/// The parameter groups `plan` keeps frozen: the frozen stages in order, then the head when
/// it is frozen too.
pub(crate) fn frozen_groups<B: Backbone, H: Head>(
    model: &Classifier<B, H>,
    plan: &EpochPlan,
    stages: &[Stage],
) -> Vec<ParamGroup> {
    let mut groups: Vec<ParamGroup> = stages
        .iter()
        .zip(&plan.stages)
        .filter(|(_, setting)| !setting.trainable)
        .map(|(stage, _)| stage.params.clone())
        .collect();
    if !plan.head.trainable {
        groups.push(model.head_params());
    }
    groups
}

/// One learning rate per stage: the head (and anything outside the stages) at
/// `lr × head multiplier`, each trainable stage at `lr × its multiplier`.
pub(crate) fn stage_lrs(lr: f64, plan: &EpochPlan, stages: &[Stage]) -> ModuleLearningRate {
    let mut scheduler = ModuleLrScheduler::new(lr * plan.head.lr_mult);
    for (stage, setting) in stages.iter().zip(&plan.stages) {
        if setting.trainable {
            scheduler = scheduler.with_group(stage.params.clone(), lr * setting.lr_mult);
        }
    }
    scheduler.step()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LrSchedule;
    use crate::policy::{StageSetting, TwoPhase};

    #[test]
    fn phase_spans_follow_the_policy() {
        let plans: Vec<EpochPlan> = (0..5).map(|e| TwoPhase::new(2, 10.0).plan(e, 3)).collect();
        assert_eq!(phase_span(&plans, 0), (0, 2));
        assert_eq!(phase_span(&plans, 1), (0, 2));
        assert_eq!(phase_span(&plans, 2), (2, 3));
        assert_eq!(phase_span(&plans, 4), (2, 3));
    }

    #[test]
    fn bad_multiplier_is_rejected() {
        let mut plan = EpochPlan::uniform(2, StageSetting::train(1.0));
        plan.stages[1].lr_mult = f64::NAN;
        assert!(check_plans(&[plan], 2).is_err());
        assert!(check_plans(&[EpochPlan::uniform(3, StageSetting::frozen())], 2).is_err());
        assert!(plans_of(&TwoPhase::new(1, 10.0), 3, 4).is_ok());
    }

    #[test]
    fn the_schedule_restarts_with_each_phase() {
        let cfg = FineTuneConfig::new()
            .with_lr(0.1)
            .with_schedule(LrSchedule::one_cycle());
        let plans: Vec<EpochPlan> = (0..3).map(|e| TwoPhase::new(1, 10.0).plan(e, 2)).collect();
        // 4 steps per epoch: phase 1 is steps 0..4, phase 2 steps 4..12
        let first = base_lr(&cfg, &plans, 0, 0, 4);
        let restart = base_lr(&cfg, &plans, 1, 4, 4);
        assert_eq!(
            first, restart,
            "step 0 of each phase starts the cycle again"
        );
        assert_ne!(base_lr(&cfg, &plans, 0, 1, 4), first);
        assert_eq!(
            base_lr(&cfg, &plans, 2, 9, 4),
            0.1 * cfg.schedule.factor(5, 8)
        );
    }
}
