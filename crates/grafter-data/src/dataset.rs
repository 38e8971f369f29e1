//! [`ImageDataset`]: a list of image files with their labels, and the classes they refer to.

use std::path::{Path, PathBuf};

use crate::decode::{DecodeLimits, decode_file};
use crate::{BadFiles, ClassNames, DataError, FoundAt, Result};

/// The label(s) of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One class index (single-label tasks).
    Class(usize),
    /// Any number of class indices (multi-label tasks).
    Multi(Vec<usize>),
}

impl Target {
    /// The class used to stratify splits: the class, or the first of several.
    pub fn primary(&self) -> Option<usize> {
        match self {
            Target::Class(c) => Some(*c),
            Target::Multi(v) => v.first().copied(),
        }
    }
}

/// One image file and its label(s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The image file.
    pub path: PathBuf,
    /// Its label(s).
    pub target: Target,
}

/// Image files with labels, the ordered class names, and the files skipped while scanning.
///
/// Built by [`image_folder`](Self::image_folder), [`food101`](Self::food101),
/// [`from_csv`](Self::from_csv) or [`from_jsonl`](Self::from_jsonl); narrowed by
/// [`split_stratified`](Self::split_stratified) and [`per_class`](Self::per_class).
#[derive(Clone, Debug)]
pub struct ImageDataset {
    pub(crate) root: PathBuf,
    pub(crate) samples: Vec<Sample>,
    pub(crate) classes: ClassNames,
    pub(crate) multi_label: bool,
    pub(crate) bad: BadFiles,
    pub(crate) limits: DecodeLimits,
}

impl ImageDataset {
    /// A single-label dataset of the `(label, path)` candidates whose files pass the scan
    /// checks (the others go to `bad`); [`DataError::Empty`] naming `listed_in` when none do.
    pub(crate) fn single_label_from_candidates(
        root: &Path,
        listed_in: PathBuf,
        candidates: Vec<(usize, PathBuf)>,
        classes: ClassNames,
        mut bad: BadFiles,
    ) -> Result<Self> {
        let limits = DecodeLimits::default();
        let samples: Vec<Sample> = crate::scan::keep_good(candidates, &limits, &mut bad)
            .into_iter()
            .map(|(label, path)| Sample {
                path,
                target: Target::Class(label),
            })
            .collect();
        if samples.is_empty() {
            return Err(DataError::Empty {
                path: listed_in,
                bad: bad.len(),
            });
        }
        bad.log();
        Ok(Self {
            root: root.to_path_buf(),
            samples,
            classes,
            multi_label: false,
            bad,
            limits,
        })
    }

    /// A dataset from already resolved samples (every target must be in range).
    pub fn from_samples(
        root: impl Into<PathBuf>,
        samples: Vec<Sample>,
        classes: ClassNames,
        multi_label: bool,
    ) -> crate::Result<Self> {
        let k = classes.len();
        for s in &samples {
            let ok = match &s.target {
                Target::Class(c) => *c < k && !multi_label,
                Target::Multi(v) => v.iter().all(|c| *c < k) && multi_label,
            };
            if !ok {
                return Err(crate::DataError::Config(format!(
                    "{}: target {:?} does not fit {k} classes (multi-label: {multi_label})",
                    s.path.display(),
                    s.target
                )));
            }
        }
        Ok(Self {
            root: root.into(),
            samples,
            classes,
            multi_label,
            bad: BadFiles::default(),
            limits: DecodeLimits::default(),
        })
    }

    /// The usable samples, in dataset order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Number of usable samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when no sample is usable.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The class names, in output order.
    pub fn classes(&self) -> &ClassNames {
        &self.classes
    }

    /// True for a multi-label dataset (targets are [`Target::Multi`]).
    pub fn is_multi_label(&self) -> bool {
        self.multi_label
    }

    /// The dataset root (folder, Food-101 root, or the list file).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Files skipped while building the dataset.
    pub fn bad_files(&self) -> &BadFiles {
        &self.bad
    }

    /// The decoding limits used by the header checks and by loaders of this dataset.
    pub fn limits(&self) -> DecodeLimits {
        self.limits
    }

    /// Number of samples of each class (multi-label: every label counts).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for s in &self.samples {
            match &s.target {
                Target::Class(c) => counts[*c] += 1,
                Target::Multi(v) => v.iter().for_each(|c| counts[*c] += 1),
            }
        }
        counts
    }

    /// Decodes every sample now (in parallel) and moves the ones that fail to the report, so
    /// that no batch comes out short later. Costs one full decode of the dataset.
    pub fn verify(mut self) -> Self {
        use rayon::prelude::*;
        let limits = self.limits;
        let results: Vec<Option<String>> = self
            .samples
            .par_iter()
            .map(|s| decode_file(&s.path, &limits).err().map(|e| e.to_string()))
            .collect();
        let mut kept = Vec::with_capacity(self.samples.len());
        for (s, err) in self.samples.into_iter().zip(results) {
            match err {
                Some(reason) => self.bad.push(&s.path, reason, FoundAt::Scan),
                None => kept.push(s),
            }
        }
        self.samples = kept;
        self
    }

    /// Same dataset with other decoding limits (also applied by loaders built from it).
    pub fn with_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }
}
