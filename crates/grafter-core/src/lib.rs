//! # grafter-core
//!
//! The vocabulary of transfer learning on [Burn](https://burn.dev): a [`Backbone`] (a
//! pretrained network with its classifier cut off), a [`Head`] grafted on top, a
//! [`FreezePolicy`] deciding which backbone stages train, and [`FineTune`], the loop that
//! trains the resulting [`Classifier`] with per-stage learning rates, metrics, crash-safe
//! checkpoints, bit-identical resume, progress bars and plots.
//!
//! The backend lives in the [`Device`](burn::tensor::Device): the same code trains on the CPU
//! (`Device::flex()`) or a GPU (`Device::wgpu(..)`).

#![warn(missing_docs)]

mod backbone;
pub mod checkpoint;
mod classifier;
pub mod device;
mod error;
pub mod feature_cache;
pub mod feature_maps;
pub mod finetune;
pub mod head;
pub mod history;
pub mod metrics;
pub mod mixup;
pub mod optimizer;
pub mod plot;
mod png;
pub mod policy;
mod preprocess;
pub mod progress;
mod schedule;
pub mod source;
mod task;
pub mod tensor_layout;
pub mod tensorboard;
pub mod weights;

pub use backbone::{Backbone, Stage};
pub use classifier::Classifier;
pub use error::{GrafterError, Result, panic_text};
pub use feature_maps::{FeatureInfo, FeatureMaps};
pub use finetune::{
    ClassWeights, DEFAULT_FEATURE_CACHE_BUDGET, EarlyStopping, Ema, EmaSelect, FineTune,
    FineTuneConfig, FitOutcome, Observer, Precision, Sampler, StepInfo, evaluate, top_losses,
};
pub use head::{Head, LinearHead, LinearHeadConfig, MlpHead, MlpHeadConfig, Pooling};
pub use metrics::{Metrics, Monitor, TopLoss};
pub use optimizer::OptimizerConfig;
pub use policy::FreezePolicy;
pub use preprocess::{ChannelOrder, Interpolation, Preprocess};
pub use schedule::LrSchedule;
pub use task::Task;

/// Everything needed to fine-tune, in one import.
pub mod prelude {
    pub use crate::policy::{
        FreezeFirst, Frozen, GradualUnfreeze, LayerwiseLrDecay, TrainAll, TwoPhase,
    };
    pub use crate::source::{DataSource, InMemoryDataset};
    pub use crate::{
        Backbone, Classifier, FeatureInfo, FeatureMaps, FineTune, FineTuneConfig, FreezePolicy,
        GrafterError, Head, LinearHeadConfig, LrSchedule, MlpHeadConfig, OptimizerConfig, Pooling,
        Preprocess, Stage, Task,
    };
}
