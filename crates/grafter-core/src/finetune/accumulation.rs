//! Gradient accumulation: the weighted gradients of a step's micro-batches, summed until the
//! step is taken (the scheme is described in the module's documentation).

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};

/// Optimiser steps in an epoch of `len` images: batches of `batch_size`, `accumulate` of
/// them per step, the last step taking what is left.
pub(crate) fn steps_per_epoch(len: usize, batch_size: usize, accumulate: usize) -> usize {
    len.div_ceil(batch_size.max(1)).div_ceil(accumulate.max(1))
}

/// The gradients of the micro-batches of the step being accumulated.
#[derive(Default)]
pub(super) struct Pending {
    grads: Option<GradientsParams>,
    /// Batches in the step so far (each one part, or one per replica).
    pub(super) batches: usize,
    weights: f64,
    images: usize,
    loss_sum: f64,
}

impl Pending {
    /// Adds one micro-batch's (weighted) gradients.
    pub(super) fn add<M: Module>(
        &mut self,
        model: &M,
        grads: GradientsParams,
        weight: f64,
        images: usize,
        loss: f64,
    ) {
        self.grads = Some(match self.grads.take() {
            None => grads,
            Some(sum) => {
                let mut acc = GradientsAccumulator::<M>::new();
                acc.accumulate(model, sum);
                acc.accumulate(model, grads);
                acc.grads()
            }
        });
        self.weights += weight;
        self.images += images;
        self.loss_sum += loss * images as f64;
    }

    /// The summed gradients, the sum of the weights, the images and their mean loss; empties
    /// the accumulation.
    pub(super) fn take(&mut self) -> (GradientsParams, f64, usize, f64) {
        let p = std::mem::take(self);
        let loss = p.loss_sum / p.images.max(1) as f64;
        (p.grads.unwrap_or_default(), p.weights, p.images, loss)
    }
}
