//! Data parallelism: one model replica per device, each batch split across them, the
//! replicas' gradients summed on the main device before the one optimiser step.
//!
//! Burn 0.22.1's collective `all_reduce` is implemented by its CUDA runtime only (flex and
//! wgpu leave `DistributedOps::all_reduce` unimplemented), so grafter syncs the way burn-train's
//! multi-device strategy does on every backend: each replica's gradients move to the main
//! device ([`GradientsParams::to_device`]) and are summed there in replica order, the main
//! model takes the step, and every replica is forked from it again for the next batch — the
//! replicas hold identical parameters at every step by construction.
//!
//! A batch of `n` images splits into contiguous shards, one per replica, of sizes differing by
//! at most one; each shard's loss is weighted by its normaliser (its image count, or the sum of
//! its class weights) exactly as [gradient accumulation](super#gradient-accumulation) weights
//! micro-batches, so a step equals the single-device step on the whole batch up to rounding,
//! except that BatchNorm normalises each shard with its own statistics (as PyTorch's DDP
//! without SyncBN). The running statistics are Burn's [`RunningState`]s, shared by the
//! replicas: each replica's thread records its update, and the updates of one step are
//! averaged into the main model's when the step ends.
//!
//! Replicas on distinct devices run at the same time, one thread each; replicas that share a
//! device (`cpu:2`, or a GPU listed twice) take turns in list order, so the device's random
//! generator (dropout, drop path) is drawn in the same order in every run.
//!
//! [`RunningState`]: burn::module::RunningState

use std::ops::Range;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use super::class_weights::TrainLoss;
use super::precision::PrecisionPass;
use crate::source::Labels;
use crate::{Backbone, Classifier, GrafterError, Head, Result, panic_text};

/// The devices of a data-parallel run and the order their replicas run in.
#[derive(Debug, Clone)]
pub(super) struct Replicas {
    /// One autodiff device per replica.
    devices: Vec<Device>,
    /// Groups of replicas that run at the same time: the first replica of every distinct
    /// device, then the second, and so on.
    waves: Vec<Vec<usize>>,
}

/// One replica's share of a step (or, on one device, the whole batch).
pub(super) struct Shard {
    /// The gradients of its loss × `weight` (× the loss scale), on the main device.
    pub grads: GradientsParams,
    /// What the loss was multiplied by: `norm`, or 1 for a step of one batch on one device
    /// (whose loss is already the step's).
    pub weight: f64,
    /// The shard's loss normaliser: its image count, or the sum of its class weights.
    pub norm: f64,
    /// Images in the shard.
    pub images: usize,
    /// The shard's loss (NaN or infinite when it diverged: then `grads` is empty).
    pub loss: f64,
    /// The shard's logits, row-major `[images, outputs]`.
    pub logits: Vec<f32>,
    /// The shard's labels.
    pub labels: Labels,
}

/// Why a data-parallel step failed.
pub(super) enum Failure {
    /// A replica's thread panicked (the backend's way of reporting a lost device, an
    /// allocation failure or a kernel error).
    Panicked {
        replica: usize,
        device: String,
        message: String,
    },
    /// A replica returned an error (a malformed batch).
    Error(GrafterError),
}

impl Replicas {
    /// Replicas on `devices` (at least two; a device may be listed more than once).
    pub(super) fn new(devices: &[Device]) -> Self {
        let mut waves: Vec<Vec<usize>> = Vec::new();
        for (r, device) in devices.iter().enumerate() {
            let earlier = devices[..r].iter().filter(|d| *d == device).count();
            if waves.len() <= earlier {
                waves.push(Vec::new());
            }
            waves[earlier].push(r);
        }
        Self {
            devices: devices.iter().map(|d| d.clone().autodiff()).collect(),
            waves,
        }
    }

    /// How many replicas there are.
    pub(super) fn len(&self) -> usize {
        self.devices.len()
    }

    /// Seeds the random generator of every replica device other than `main` with `seed`
    /// mixed with the device's first position in the list (`main`'s own is seeded by the
    /// loop).
    pub(super) fn seed(&self, main: &Device, seed: impl Fn(u64) -> u64) {
        for (r, device) in self.devices.iter().enumerate() {
            let first = self.devices.iter().position(|d| d == device) == Some(r);
            if first && device != main {
                device.seed(seed(r as u64));
            }
        }
    }

    /// Forward and backward of one batch across the replicas: the shards in replica order,
    /// their gradients moved to `main`. Replicas left without images (a batch smaller than
    /// the replica count) are skipped.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step<BB: Backbone, H: Head>(
        &self,
        model: &Classifier<BB, H>,
        images: Tensor<4>,
        targets: Tensor<2>,
        labels: &Labels,
        pass: PrecisionPass,
        loss: &TrainLoss,
        main: &Device,
    ) -> std::result::Result<Vec<Shard>, Failure> {
        let n = images.dims()[0];
        let ranges = shard_ranges(n, self.len());
        let mut shards: Vec<Option<Shard>> = (0..self.len()).map(|_| None).collect();
        for wave in &self.waves {
            // inputs and replicas are prepared on this thread: forking a replica moves the
            // shared running statistics, which must not race
            let jobs: Vec<_> = wave
                .iter()
                .filter(|&&r| !ranges[r].is_empty())
                .map(|&r| {
                    let device = &self.devices[r];
                    let range = ranges[r].clone();
                    let x = images
                        .clone()
                        .narrow(0, range.start, range.len())
                        .to_device(device);
                    let t = targets
                        .clone()
                        .narrow(0, range.start, range.len())
                        .to_device(device);
                    (
                        r,
                        model.clone().fork(device),
                        x,
                        t,
                        labels_in(labels, range),
                    )
                })
                .collect();
            let results: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = jobs
                    .into_iter()
                    .map(|(r, replica, x, t, shard_labels)| {
                        let device = &self.devices[r];
                        let handle = std::thread::Builder::new()
                            .name(format!("grafter-replica-{r}"))
                            .spawn_scoped(scope, move || {
                                let shard = shard_pass(
                                    &replica,
                                    x,
                                    t,
                                    shard_labels,
                                    pass,
                                    loss,
                                    device,
                                    false,
                                );
                                shard.map(|s| (s, replica))
                            });
                        (r, handle)
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|(r, handle)| {
                        let joined = match handle {
                            Ok(h) => h.join().map_err(|payload| panic_text(payload.as_ref())),
                            Err(e) => Err(format!("cannot start its thread: {e}")),
                        };
                        (r, joined)
                    })
                    .collect()
            });
            for (r, joined) in results {
                let device = &self.devices[r];
                let (mut shard, replica) = match joined {
                    Ok(Ok(done)) => done,
                    Ok(Err(e)) => return Err(Failure::Error(e)),
                    Err(message) => {
                        return Err(Failure::Panicked {
                            replica: r,
                            device: format!("{device:?}"),
                            message,
                        });
                    }
                };
                shard.grads = shard.grads.to_device(main, &replica);
                shards[r] = Some(shard);
            }
        }
        // the replicas' BatchNorm updates of this step, averaged into the shared statistics
        // (`valid` folds pending updates in; the snapshot it returns is not needed)
        let _ = model.valid();
        Ok(shards.into_iter().flatten().collect())
    }
}

/// Forward, loss and (when the loss is finite) backward of one shard on its replica: the
/// loss weighted by its normaliser, or by 1 when `unit_weight` (one device, no accumulation).
#[allow(clippy::too_many_arguments)]
pub(super) fn shard_pass<BB: Backbone, H: Head>(
    replica: &Classifier<BB, H>,
    images: Tensor<4>,
    targets: Tensor<2>,
    labels: Labels,
    pass: PrecisionPass,
    loss: &TrainLoss,
    device: &Device,
    unit_weight: bool,
) -> Result<Shard> {
    let images_in = images.dims()[0];
    let logits = pass.forward(replica, images);
    let (value, norm) = loss.loss(logits.clone(), targets, &labels, device)?;
    let loss_value: f64 = value.clone().into_scalar::<f64>();
    let weight = if unit_weight { 1.0 } else { norm };
    let grads = if loss_value.is_finite() {
        pass.backward_part(value, weight, replica)
    } else {
        GradientsParams::new()
    };
    let logits = logits
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| GrafterError::Data(format!("cannot read logits: {e:?}")))?;
    Ok(Shard {
        grads,
        weight,
        norm,
        images: images_in,
        loss: loss_value,
        logits,
        labels,
    })
}

/// Contiguous ranges of `n` items over `parts` replicas, sizes differing by at most one (the
/// first ones larger); some are empty when `n < parts`.
pub(crate) fn shard_ranges(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let (base, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

/// The labels of the images in `range`.
fn labels_in(labels: &Labels, range: Range<usize>) -> Labels {
    match labels {
        Labels::Classes(classes) => Labels::Classes(classes[range].to_vec()),
        Labels::MultiHot {
            values,
            num_classes,
        } => Labels::MultiHot {
            values: values[range.start * num_classes..range.end * num_classes].to_vec(),
            num_classes: *num_classes,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order_with_sizes_differing_by_at_most_one() {
        assert_eq!(shard_ranges(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(shard_ranges(8, 2), vec![0..4, 4..8]);
        assert_eq!(shard_ranges(1, 3), vec![0..1, 1..1, 1..1]);
        for n in 0..40 {
            for parts in 1..6 {
                let r = shard_ranges(n, parts);
                assert_eq!(r.len(), parts);
                assert_eq!(r.first().unwrap().start, 0);
                assert_eq!(r.last().unwrap().end, n);
                assert!(r.windows(2).all(|w| w[0].end == w[1].start));
                let (min, max) = r
                    .iter()
                    .map(|x| x.len())
                    .fold((n, 0), |(a, b), l| (a.min(l), b.max(l)));
                assert!(max - min <= 1);
            }
        }
    }

    #[test]
    fn replicas_sharing_a_device_take_turns_and_distinct_devices_run_together() {
        let cpu = Device::flex();
        let r = Replicas::new(&[cpu.clone(), cpu.clone(), cpu]);
        assert_eq!(r.waves, vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn labels_are_split_with_their_images() {
        let l = Labels::MultiHot {
            values: vec![1., 0., 0., 1., 1., 1.],
            num_classes: 2,
        };
        match labels_in(&l, 1..3) {
            Labels::MultiHot {
                values,
                num_classes,
            } => {
                assert_eq!(values, vec![0., 1., 1., 1.]);
                assert_eq!(num_classes, 2);
            }
            other => panic!("{other:?}"),
        }
        match labels_in(&Labels::Classes(vec![3, 1, 2]), 0..2) {
            Labels::Classes(c) => assert_eq!(c, vec![3, 1]),
            other => panic!("{other:?}"),
        }
    }
}
