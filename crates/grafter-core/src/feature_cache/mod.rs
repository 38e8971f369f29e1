//! Features of a frozen backbone, computed once and reused by every epoch.
//!
//! With the backbone frozen (feature extraction), every epoch recomputes the same backbone
//! forward — by far the most expensive part of a step. A [`FeatureCache`] runs it once per
//! image (or once per augmented view), keeps the feature maps in memory or in a
//! memory-mapped file (f32 or f16), and serves them as a [`DataSource`] to train the head
//! alone, on [`CachedFeatures`], an identity "backbone" with no parameters.
//!
//! [`FineTune`](crate::FineTune) does this by itself: before the first epoch it swaps the
//! frozen backbone and the data sources for the identity backbone and cached sources
//! whenever that is exact ([`FeatureCacheUse`] says whether and why not), in memory or in
//! files ([`LoopStorage`]), and grafts the trained head back onto the backbone for its
//! checkpoints and result. Build a cache yourself to look at the features or to hand-roll a
//! head search over them.
//!
//! Validity: the cache equals the live computation only while the backbone is frozen (no
//! stage trains, BatchNorm in inference mode) and without augmentation beyond the cached
//! views. A file records what it was built from ([`CacheOptions::fingerprint`]) and is
//! refused by [`FeatureCache::open`] when that differs.
//!
//! [`DataSource`]: crate::source::DataSource

mod cache;
mod decide;
mod file;
mod fingerprint;
mod identity;
mod in_loop;

pub use cache::{CacheOptions, FeatureCache};
pub use decide::FeatureCacheUse;
pub use file::{CachePrecision, CacheStorage};
pub use identity::CachedFeatures;
pub use in_loop::LoopStorage;

pub(crate) use decide::decide;
pub(crate) use in_loop::{CachedSource, compute};
