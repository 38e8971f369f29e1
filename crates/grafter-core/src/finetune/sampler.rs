//! Which samples a training pass visits: every sample once in a shuffled order (the
//! default), or a class-balanced draw with replacement (PyTorch's `WeightedRandomSampler`
//! with weights `1 / count(class)`), for imbalanced data.

use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::source::DataSource;
use crate::{GrafterError, Result};

/// RNG stream of the class-balanced draw (the shuffle is stream 0, augmentation its own).
pub(crate) const SAMPLER_STREAM: u64 = 3;

/// How a training pass chooses its samples.
///
/// A pass always has as many samples as the data, so epochs and the schedule keep their
/// length. The draw comes from a generator seeded by `(seed, epoch)`, so a resumed run draws
/// exactly what the uninterrupted one drew.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// Every sample once per pass, shuffled.
    #[default]
    Shuffle,
    /// `len` samples drawn with replacement, each with probability proportional to
    /// `1 / count(its class)`: every class is drawn equally often on average, the rare ones'
    /// images repeated. Needs single-label or binary data whose source knows its labels
    /// ([`DataSource::sample_labels`](crate::source::DataSource::sample_labels)).
    ClassBalanced,
}

/// `labels.len()` positions drawn with replacement, sample `i` with probability
/// `∝ 1 / count(labels[i])`.
///
/// ```
/// use rand::SeedableRng;
/// use grafter_core::finetune::class_balanced_order;
///
/// let labels = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]; // 9 to 1
/// let order = class_balanced_order(&labels, 2, &mut rand::rngs::StdRng::seed_from_u64(1)).unwrap();
/// assert_eq!(order.len(), 10);
/// assert!(order.iter().all(|&i| i < 10));
/// ```
pub fn class_balanced_order(
    labels: &[usize],
    num_classes: usize,
    rng: &mut StdRng,
) -> Result<Vec<usize>> {
    let mut counts = vec![0usize; num_classes];
    for (i, &y) in labels.iter().enumerate() {
        *counts.get_mut(y).ok_or_else(|| {
            GrafterError::Data(format!(
                "label {y} of sample {i} is out of range for {num_classes} classes"
            ))
        })? += 1;
    }
    let mut cumulative = Vec::with_capacity(labels.len());
    let mut total = 0.0f64;
    for &y in labels {
        total += 1.0 / counts[y] as f64;
        cumulative.push(total);
    }
    let n = labels.len();
    Ok((0..n)
        .map(|_| {
            let u = rng.random::<f64>() * total;
            cumulative.partition_point(|&c| c <= u).min(n - 1)
        })
        .collect())
}

/// The labels the class-balanced sampler draws from: one per sample of `train`, each a class.
pub(super) fn balanced_labels(train: &dyn DataSource) -> Result<Vec<usize>> {
    let labels = train.sample_labels().ok_or_else(|| {
        GrafterError::Config(
            "the class-balanced sampler needs the training data's labels, which this data \
             source does not give (DataSource::sample_labels)"
                .into(),
        )
    })?;
    if labels.len() != train.len() {
        return Err(GrafterError::Data(format!(
            "the training data gives {} labels for {} samples",
            labels.len(),
            train.len()
        )));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn draws_classes_equally_often_and_repeats_with_the_seed() {
        // 90 / 9 / 1 images
        let labels: Vec<usize> = (0..100)
            .map(|i| match i {
                0..90 => 0,
                90..99 => 1,
                _ => 2,
            })
            .collect();
        let mut drawn = [0usize; 3];
        for epoch in 0..100 {
            let mut rng = StdRng::seed_from_u64(epoch);
            for i in class_balanced_order(&labels, 3, &mut rng).unwrap() {
                drawn[labels[i]] += 1;
            }
        }
        // 10 000 draws, a third each: the binomial spread is about 47
        for (c, &k) in drawn.iter().enumerate() {
            assert!(
                (3333i64 - k as i64).abs() < 250,
                "class {c} drawn {k} times: {drawn:?}"
            );
        }
        let draw = |seed| class_balanced_order(&labels, 3, &mut StdRng::seed_from_u64(seed));
        assert_eq!(draw(7).unwrap(), draw(7).unwrap());
        assert_ne!(draw(7).unwrap(), draw(8).unwrap());
        assert!(class_balanced_order(&[0, 3], 2, &mut StdRng::seed_from_u64(0)).is_err());
    }
}
