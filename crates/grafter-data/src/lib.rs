//! # grafter-data
//!
//! Everything between image files on disk and batches on the device:
//!
//! * **datasets** — [`ImageDataset`] from an image folder (one sub-folder per class), the
//!   Food-101 layout, or a CSV / JSON-lines list (single- or multi-label); class names in a
//!   fixed order, saved beside the model as `classes.json` ([`ClassNames`]); stratified
//!   train/validation split and per-class subsets, seeded;
//! * **decoding** — JPEG, PNG, WebP, BMP, GIF (first frame) to RGB8, EXIF orientation
//!   honoured, absurd dimensions refused before any pixel is allocated ([`decode`]);
//! * **transforms** — evaluation (resize shorter side, center crop, normalise) and training
//!   (RandomResizedCrop, flip, colour jitter) driven by the backbone's
//!   [`Preprocess`](grafter_core::Preprocess), reproducible per sample ([`Transform`]);
//! * **loading** — [`ImageLoader`], a [`DataSource`](grafter_core::source::DataSource) that
//!   decodes in parallel with bounded prefetch, in an order and with a content that depend
//!   only on `(seed, epoch)`;
//! * **bad files** — skipped with their path and reason, counted, summarised ([`BadFiles`]);
//! * **prediction** — top-k classes of image files, with optional flip TTA
//!   ([`predict::Predictor`]);
//! * **archives** — safe extraction of downloaded data sets ([`archive::extract_tar`]);
//! * **demo set** — a small synthetic set in the Food-101 layout, drawn on the spot, for
//!   runs without network ([`demo::food101_demo`]);
//! * **augmented feature views** — a frozen backbone's features of a fixed number of
//!   augmented views per image ([`ImageLoader::feature_cache_views`]; the cache itself is
//!   grafter-core's `feature_cache`).
//!
//! ```no_run
//! use grafter_core::Preprocess;
//! use grafter_data::{ImageDataset, ImageLoader, Augment};
//! # fn main() -> Result<(), grafter_data::DataError> {
//! let all = ImageDataset::image_folder("data/pets")?;
//! let (train, valid) = all.split_stratified(0.2, 42)?;
//! let train = ImageLoader::new(train, Preprocess::imagenet()).augment(Augment::standard());
//! let valid = ImageLoader::new(valid, Preprocess::imagenet());
//! println!("{}", train.bad_files().summary());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod archive;
pub mod auto_augment;
mod bad_files;
mod cached_views;
mod classes;
mod dataset;
pub mod decode;
pub mod demo;
mod error;
mod folder;
mod food101;
mod list;
mod loader;
pub mod predict;
pub mod random_erasing;
mod resize;
pub mod saved_run;
mod scan;
mod split;
mod transform;

/// The `image` crate this pipeline decodes with (re-exported so callers can build and encode
/// images with the same version).
pub use image;

pub use archive::ExtractLimits;
pub use auto_augment::{AugmentOp, AutoAugment};
pub use bad_files::{BadFile, BadFiles, FoundAt};
pub use classes::ClassNames;
pub use dataset::{ImageDataset, Sample, Target};
pub use decode::{DecodeError, DecodeLimits};
pub use error::{DataError, Result};
pub use food101::Food101Split;
pub use list::ListOptions;
pub use loader::ImageLoader;
pub use random_erasing::{EraseValue, RandomErasing};
pub use resize::{ResizeEngine, resize_rgb8};
pub use saved_run::save_for_prediction;
pub use transform::{Augment, ColorJitter, MAX_RESIZED_PIXELS, RandomResizedCrop, Transform};
