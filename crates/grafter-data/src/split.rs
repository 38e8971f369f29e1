//! Stratified train/validation split and per-class subsets, both seeded.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::{DataError, ImageDataset, Result};

impl ImageDataset {
    /// Splits into `(train, valid)` with `valid_fraction` of *each class* in `valid`
    /// (rounded, at least one image when the class has two or more), the choice seeded by
    /// `seed`. Multi-label datasets are stratified by each sample's first label. Both halves
    /// keep the dataset order and the full class list.
    ///
    /// ```
    /// # use grafter_data::*;
    /// # let classes = ClassNames::new(vec!["a".into(), "b".into()]).unwrap();
    /// # let samples = (0..20).map(|i| Sample { path: format!("{i}.jpg").into(), target: Target::Class(i % 2) }).collect();
    /// let ds = ImageDataset::from_samples("root", samples, classes, false).unwrap();
    /// let (train, valid) = ds.split_stratified(0.2, 7).unwrap();
    /// assert_eq!((train.len(), valid.len()), (16, 4));
    /// assert_eq!(valid.class_counts(), vec![2, 2]);
    /// ```
    pub fn split_stratified(&self, valid_fraction: f64, seed: u64) -> Result<(Self, Self)> {
        if !(0.0..1.0).contains(&valid_fraction) {
            return Err(DataError::Config(format!(
                "the validation fraction must be in [0, 1), got {valid_fraction}"
            )));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut in_valid = vec![false; self.samples.len()];
        for members in self.by_class() {
            let mut members = members;
            members.shuffle(&mut rng);
            let mut n = (members.len() as f64 * valid_fraction).round() as usize;
            if valid_fraction > 0.0 && n == 0 && members.len() >= 2 {
                n = 1;
            }
            for &i in &members[..n.min(members.len())] {
                in_valid[i] = true;
            }
        }
        Ok((self.select(|i| !in_valid[i]), self.select(|i| in_valid[i])))
    }

    /// At most `n` images per class (chosen with `seed`), for quick runs; dataset order kept.
    pub fn per_class(&self, n: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut keep = vec![false; self.samples.len()];
        for mut members in self.by_class() {
            members.shuffle(&mut rng);
            for &i in members.iter().take(n) {
                keep[i] = true;
            }
        }
        self.select(|i| keep[i])
    }

    /// Sample indices grouped by primary class, each group in dataset order.
    fn by_class(&self) -> Vec<Vec<usize>> {
        let mut groups = vec![Vec::new(); self.classes.len()];
        for (i, s) in self.samples.iter().enumerate() {
            if let Some(c) = s.target.primary() {
                groups[c].push(i);
            }
        }
        groups
    }

    fn select(&self, keep: impl Fn(usize) -> bool) -> Self {
        let mut out = self.clone();
        out.samples = self
            .samples
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(_, s)| s.clone())
            .collect();
        out
    }
}
