//! The loop's precision component: the training forward in the run's [`Precision`], the
//! backward through the dynamic [`LossScale`], and the f32 master weights put back at the end
//! of every epoch (see [`mixed_precision`](super::mixed_precision) for the method). In f32 it
//! is a plain forward and backward.

use std::any::Any;
use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, FloatDType, Tensor};

use super::mixed_precision::{LossScale, Precision, autocast, cast_input};
use super::plan::frozen_groups;
use crate::optimizer::scale_grads;
use crate::policy::EpochPlan;
use crate::{Backbone, Classifier, Head, Result, Stage};

/// Forward and backward of one training step in the run's precision.
pub(crate) struct PrecisionStep {
    precision: Precision,
    scale: LossScale,
    frozen: Option<FrozenTensors>,
}

impl PrecisionStep {
    /// Continues from `saved` (a resumed mixed-precision run), else starts at `initial`.
    pub(crate) fn new(precision: Precision, saved: Option<LossScale>, initial: f64) -> Self {
        Self {
            precision,
            scale: saved.unwrap_or_else(|| LossScale::new(precision, initial)),
            frozen: None,
        }
    }

    /// The line the loop prints before training in half precision (`None` in f32).
    pub(crate) fn describe(&self) -> Option<String> {
        let p = self.precision;
        p.is_mixed().then(|| {
            let scaling = if p.needs_loss_scaling() {
                format!(", dynamic loss scale from {}", self.scale.scale)
            } else {
                String::new()
            };
            format!("mixed precision: {p} forward and backward, f32 master weights{scaling}")
        })
    }

    /// Keeps the f32 tensors of the parts `plan` freezes, which the epoch's casts overwrite.
    pub(crate) fn begin_epoch<B: Backbone, H: Head>(
        &mut self,
        model: &Classifier<B, H>,
        plan: &EpochPlan,
        stages: &[Stage],
    ) {
        if self.precision.is_mixed() {
            self.frozen = Some(FrozenTensors::of(
                model,
                &frozen_groups(model, plan, stages),
            ));
        }
    }

    /// The forward and the scaled backward of this step in the run's precision: a copy that
    /// the loop, and each data-parallel replica's thread, runs.
    pub(crate) fn pass(&self) -> PrecisionPass {
        PrecisionPass {
            precision: self.precision,
            scale: if self.precision.is_mixed() {
                self.scale.scale
            } else {
                1.0
            },
        }
    }

    /// The gradients of `loss` on `model`'s f32 parameters, or `None` when the step must be
    /// skipped (f16 gradients that overflowed: the scale has been halved).
    #[cfg(test)]
    pub(crate) fn backward<M: Module>(
        &mut self,
        loss: Tensor<1>,
        model: &M,
    ) -> Result<Option<GradientsParams>> {
        let grads = self.pass().backward_part(loss, 1.0, model);
        self.finish_step(grads, 1.0, model)
    }

    /// The step's gradients from the summed parts: divided by the loss scale and by
    /// `divisor` (the sum of the parts' weights), or `None` when the step must be skipped
    /// (f16 gradients that overflowed: the scale has been halved). The loss scale is checked
    /// and adjusted once per step, as PyTorch's `GradScaler` does under accumulation.
    pub(crate) fn finish_step<M: Module>(
        &mut self,
        mut grads: GradientsParams,
        divisor: f64,
        model: &M,
    ) -> Result<Option<GradientsParams>> {
        if !self.precision.is_mixed() {
            if divisor != 1.0 {
                scale_grads(model, &mut grads, 1.0 / divisor);
            }
            return Ok(Some(grads));
        }
        let ok = self
            .scale
            .unscale(self.precision, model, &mut grads, divisor)?;
        Ok(ok.then_some(grads))
    }

    /// Puts `model`'s tensors back into f32 after an epoch in half precision.
    pub(crate) fn end_epoch<M: Module>(&mut self, model: M) -> M {
        match self.frozen.take() {
            Some(frozen) => frozen.restore_f32(model),
            None => model,
        }
    }

    /// The loss scale in force: `Some` in the half-precision modes, for the checkpoint's
    /// state and the observers.
    pub(crate) fn loss_scale(&self) -> Option<LossScale> {
        self.precision.is_mixed().then_some(self.scale)
    }
}

/// The forward and the scaled backward of one step in the run's precision: a copy of what
/// [`PrecisionStep`] decides for the step, for the threads of data-parallel replicas.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PrecisionPass {
    precision: Precision,
    /// The loss scale (1 in f32).
    scale: f64,
}

impl PrecisionPass {
    /// f32 logits of `images`, computed in the run's precision.
    pub(crate) fn forward<B: Backbone, H: Head>(
        &self,
        model: &Classifier<B, H>,
        images: Tensor<4>,
    ) -> Tensor<2> {
        let p = self.precision;
        if p.is_mixed() {
            autocast(model, p)
                .forward(cast_input(images, p))
                .cast(FloatDType::F32)
        } else {
            model.forward(images)
        }
    }

    /// The gradients of `loss × weight × scale` on `model`'s f32 parameters.
    pub(crate) fn backward_part<M: Module>(
        &self,
        loss: Tensor<1>,
        weight: f64,
        model: &M,
    ) -> GradientsParams {
        let factor = weight * self.scale;
        let loss = if factor == 1.0 {
            loss
        } else {
            loss.mul_scalar(factor)
        };
        GradientsParams::from_grads(loss.backward(), model)
    }
}

/// The f32 tensors of a model's frozen parts, taken before an epoch casts them in place.
pub(crate) struct FrozenTensors(HashMap<ParamId, Box<dyn Any>>);

impl FrozenTensors {
    /// Keeps (handles to) every f32 tensor of `model` in one of the `frozen` groups.
    pub(crate) fn of<M: Module>(model: &M, frozen: &[ParamGroup]) -> Self {
        struct Keep<'a>(&'a [ParamGroup], HashMap<ParamId, Box<dyn Any>>);
        impl ModuleVisitor for Keep<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let t = param.val();
                if t.dtype() == DType::F32 && self.0.iter().any(|g| g.matches(&param.id, None)) {
                    self.1.insert(param.id, Box::new(t));
                }
            }
        }
        let mut keep = Keep(frozen, HashMap::new());
        model.visit(&mut keep);
        Self(keep.1)
    }

    /// Puts every float tensor of `model` that is no longer f32 back into f32: the kept ones
    /// exactly, the others (statistics a trainable BatchNorm updated) by a cast. `train()`
    /// first folds the running statistics' pending updates in, which a mapper alone would
    /// not see.
    pub(crate) fn restore_f32<M: Module>(&self, model: M) -> M {
        struct Restore<'a>(&'a HashMap<ParamId, Box<dyn Any>>);
        impl ModuleMapper for Restore<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                if param.val().dtype() == DType::F32 {
                    return param;
                }
                match self
                    .0
                    .get(&param.id)
                    .and_then(|t| t.downcast_ref::<Tensor<D>>())
                {
                    Some(kept) => {
                        let kept = kept.clone();
                        param.map(|_| kept)
                    }
                    None => param.map(|t| t.cast(FloatDType::F32)),
                }
            }
        }
        model.train().map(&mut Restore(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_cache::CachedFeatures;
    use crate::{LinearHeadConfig, Preprocess};
    use burn::tensor::Device;

    fn head_only(device: &Device) -> Classifier<CachedFeatures, crate::LinearHead> {
        let head = LinearHeadConfig::new(2, 2).try_init(device).unwrap();
        Classifier::new(CachedFeatures::new(2, Preprocess::imagenet()), head)
            .unwrap()
            .for_training(device)
    }

    #[test]
    fn f32_is_a_plain_step_and_records_no_scale() {
        let device = Device::flex();
        let model = head_only(&device);
        let mut step = PrecisionStep::new(Precision::F32, None, 1024.0);
        assert!(step.describe().is_none() && step.loss_scale().is_none());
        let x = Tensor::<4>::ones([1, 2, 1, 1], &device.clone().autodiff());
        let logits = step.pass().forward(&model, x.clone());
        assert_eq!(logits.dtype(), DType::F32);
        let grads = step.backward(logits.sum(), &model).unwrap().unwrap();
        let direct = GradientsParams::from_grads(model.forward(x).sum().backward(), &model);
        let id = model.head.linear.weight.id;
        let host = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        let (a, b) = (grads.get::<2>(id).unwrap(), direct.get::<2>(id).unwrap());
        assert_eq!(host(a), host(b));
    }

    #[test]
    fn f16_overflow_skips_the_step_and_halves_the_scale() {
        let device = Device::flex();
        let model = head_only(&device);
        let mut step = PrecisionStep::new(Precision::F16, None, 1024.0);
        assert!(step.describe().unwrap().contains("from 1024"));
        let ad = device.clone().autodiff();
        let logits = step
            .pass()
            .forward(&model, Tensor::<4>::ones([1, 2, 1, 1], &ad));
        assert_eq!(logits.dtype(), DType::F32, "the loss is computed in f32");
        let big = Tensor::<4>::full([1, 2, 1, 1], f32::INFINITY, &ad);
        let loss = step.pass().forward(&model, big).sum();
        assert!(step.backward(loss, &model).unwrap().is_none());
        let scale = step.loss_scale().unwrap();
        assert_eq!((scale.scale, scale.skipped_steps), (512.0, 1));
        // a resumed run continues from the saved scale
        let resumed = PrecisionStep::new(Precision::F16, Some(scale), 1024.0);
        assert_eq!(resumed.loss_scale(), Some(scale));
    }

    #[test]
    fn running_statistics_come_back_exactly_when_frozen_and_cast_when_trained() {
        use burn::nn::{BatchNorm, BatchNormConfig};
        let device = Device::flex().autodiff();
        let host = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let stats = [0.1234567f32, 3.3333333];
        let make = || {
            let bn: BatchNorm = BatchNormConfig::new(2).init(&device);
            bn.running_mean
                .update(Tensor::<1>::from_floats(stats, &device));
            bn.train()
        };
        for frozen in [true, false] {
            let bn = make();
            let groups = if frozen {
                vec![ParamGroup::ids_from_module(bn.clone())]
            } else {
                vec![]
            };
            let kept = FrozenTensors::of(&bn, &groups);
            let half = autocast(&bn, Precision::F16);
            // the cast went through to the shared statistics
            assert_eq!(bn.running_mean.value().dtype(), DType::F16);
            drop(half);
            let back = kept.restore_f32(bn);
            let mean = back.running_mean.value();
            assert_eq!(mean.dtype(), DType::F32);
            let got = host(mean);
            if frozen {
                assert_eq!(got, stats, "a frozen statistic must come back bit for bit");
            } else {
                assert_ne!(got, stats, "an f16 round trip rounds");
                assert!((got[0] - stats[0]).abs() < 1e-3 && (got[1] - stats[1]).abs() < 1e-2);
            }
        }
    }
}
