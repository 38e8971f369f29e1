//! Predictions for image files: top-k classes with probabilities, optionally averaged over a
//! horizontally flipped view (test-time augmentation).
//!
//! This is the inference half of the pipeline: the same decoding and evaluation transform as
//! [`ImageLoader`](crate::ImageLoader), so a model sees at prediction time exactly what it
//! was validated on.

use std::path::{Path, PathBuf};

use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use grafter_core::{Backbone, Classifier, Head, Preprocess};
use image::RgbImage;
use rayon::prelude::*;

use crate::decode::{DecodeError, decode_file};
use crate::{ClassNames, DataError, DecodeLimits, Result, Transform};

/// Anything that maps normalised images `[N, 3, H, W]` to logits `[N, K]`.
pub trait ImageModel {
    /// The logits of a batch.
    fn logits(&self, images: Tensor<4>) -> Tensor<2>;
}

impl<B: Backbone, H: Head> ImageModel for Classifier<B, H> {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }
}

/// A whole network loaded as a backbone that already ends in the logits (an exported model
/// read back with `CutPoint::Full`): its `[N, K, 1, 1]` output is flattened to `[N, K]`.
#[derive(Debug, Clone)]
pub struct WholeNetwork<B>(pub B);

impl<B: Backbone> ImageModel for WholeNetwork<B> {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let f = self.0.forward_features(images);
        let [n, c, h, w] = f.dims();
        f.reshape([n, c * h * w])
    }
}

/// How logits become probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activation {
    /// One class per image: softmax over the classes.
    #[default]
    Softmax,
    /// Independent labels (multi-label): a sigmoid per class.
    Sigmoid,
}

/// One class and its probability.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassScore {
    /// Class index in the model's output.
    pub index: usize,
    /// Class name.
    pub class: String,
    /// Probability in [0, 1].
    pub probability: f32,
}

/// The top classes of one image, most probable first.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The image file (empty for in-memory images).
    pub path: PathBuf,
    /// The `k` most probable classes, in decreasing probability.
    pub top: Vec<ClassScore>,
}

/// Why one file got no prediction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct PredictError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: PredictFailure,
}

/// What went wrong with one image.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PredictFailure {
    /// The file is unreadable, not an image, or beyond the decode limits.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The model's output could not be read back from the device.
    #[error("cannot read the model's output: {0}")]
    Output(String),
}

/// Predicts classes of image files with a trained model.
///
/// ```no_run
/// use burn::tensor::Device;
/// use grafter_core::{Classifier, Preprocess};
/// use grafter_data::ClassNames;
/// use grafter_data::predict::Predictor;
/// # fn demo<B: grafter_core::Backbone, H: grafter_core::Head>(model: Classifier<B, H>) -> grafter_data::Result<()> {
/// let classes = ClassNames::load_json("runs/food101/classes.json")?;
/// let predictor = Predictor::new(model, classes, Preprocess::imagenet(), Device::flex())?
///     .with_flip_tta(true);
/// for result in predictor.predict_files(&["pizza.jpg"], 5) {
///     match result {
///         Ok(p) => println!("{}: {} ({:.1}%)", p.path.display(), p.top[0].class, 100.0 * p.top[0].probability),
///         Err(e) => eprintln!("skipped {e}"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Predictor<M> {
    model: M,
    classes: ClassNames,
    transform: Transform,
    device: Device,
    flip_tta: bool,
    activation: Activation,
    batch_size: usize,
    limits: DecodeLimits,
}

impl<M: ImageModel> Predictor<M> {
    /// A predictor for `model` (in inference mode) whose outputs are named by `classes`;
    /// images are prepared with `preprocess` (the backbone's).
    ///
    /// Fails when the model's output width differs from the number of class names (checked
    /// with one forward pass of a blank image).
    pub fn new(
        model: M,
        classes: ClassNames,
        preprocess: Preprocess,
        device: Device,
    ) -> Result<Self> {
        let [h, w] = preprocess.input_size;
        let probe = Tensor::<4>::zeros([1, 3, h, w], &device);
        let [_, k] = model.logits(probe).dims();
        if k != classes.len() {
            return Err(DataError::Config(format!(
                "the model has {k} outputs but {} class names were given",
                classes.len()
            )));
        }
        Ok(Self {
            model,
            classes,
            transform: Transform::new(preprocess),
            device,
            flip_tta: false,
            activation: Activation::Softmax,
            batch_size: 16,
            limits: DecodeLimits::default(),
        })
    }

    /// Averages the probabilities of each image and its mirror image (test-time
    /// augmentation, as fastai's `tta`): usually a little more accurate, twice the work.
    pub fn with_flip_tta(mut self, on: bool) -> Self {
        self.flip_tta = on;
        self
    }

    /// Softmax (default) or per-class sigmoid.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Images per forward pass (default 16).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The class names.
    pub fn classes(&self) -> &ClassNames {
        &self.classes
    }

    /// The top `k` classes of every file, in the order given. A file that cannot be decoded
    /// gets an error naming it; the others are still predicted.
    pub fn predict_files<P: AsRef<Path> + Sync>(
        &self,
        paths: &[P],
        k: usize,
    ) -> Vec<std::result::Result<Prediction, PredictError>> {
        let mut out = Vec::with_capacity(paths.len());
        let limits = self.limits;
        for chunk in paths.chunks(self.batch_size) {
            let decoded: Vec<std::result::Result<RgbImage, PredictError>> = chunk
                .par_iter()
                .map(|p| {
                    decode_file(p.as_ref(), &limits).map_err(|e| PredictError {
                        path: p.as_ref().to_path_buf(),
                        reason: e.into(),
                    })
                })
                .collect();
            let good: Vec<&RgbImage> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
            let mut probs = match self.probabilities(&good) {
                Ok(p) => p.into_iter(),
                Err(reason) => {
                    out.extend(chunk.iter().map(|p| {
                        Err(PredictError {
                            path: p.as_ref().to_path_buf(),
                            reason: reason.clone(),
                        })
                    }));
                    continue;
                }
            };
            for (p, d) in chunk.iter().zip(decoded) {
                out.push(d.map(|_| Prediction {
                    path: p.as_ref().to_path_buf(),
                    top: self.top_k(&probs.next().unwrap_or_default(), k),
                }));
            }
        }
        out
    }

    /// The top `k` classes of a decoded image (a camera frame, an upload already in memory).
    pub fn predict_image(
        &self,
        image: &RgbImage,
        k: usize,
    ) -> std::result::Result<Prediction, PredictFailure> {
        let probs = self.probabilities(&[image])?.remove(0);
        Ok(Prediction {
            path: PathBuf::new(),
            top: self.top_k(&probs, k),
        })
    }

    /// Class probabilities of each image (averaged with the mirror image under TTA).
    pub fn probabilities(
        &self,
        images: &[&RgbImage],
    ) -> std::result::Result<Vec<Vec<f32>>, PredictFailure> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let views = if self.flip_tta { 2 } else { 1 };
        let [h, w] = self.transform.preprocess().input_size;
        let per = 3 * h * w;
        let mut pixels = vec![0f32; images.len() * views * per];
        let transform = &self.transform;
        pixels
            .par_chunks_mut(per * views)
            .zip(images.par_iter())
            .for_each(|(dst, img)| {
                let mut crop = transform.eval_rgb8(img);
                dst[..per].copy_from_slice(&transform.normalize(&crop));
                if views == 2 {
                    image::imageops::flip_horizontal_in_place(&mut crop);
                    dst[per..].copy_from_slice(&transform.normalize(&crop));
                }
            });
        let n = images.len() * views;
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [n, 3, h, w]), &self.device);
        let logits = self.model.logits(x);
        let p = match self.activation {
            Activation::Softmax => softmax(logits, 1),
            Activation::Sigmoid => sigmoid(logits),
        };
        let k = self.classes.len();
        let host = p
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| PredictFailure::Output(format!("{e:?}")))?;
        Ok(host
            .chunks(k * views)
            .map(|rows| {
                (0..k)
                    .map(|c| (0..views).map(|v| rows[v * k + c]).sum::<f32>() / views as f32)
                    .collect()
            })
            .collect())
    }

    fn top_k(&self, probs: &[f32], k: usize) -> Vec<ClassScore> {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        order
            .into_iter()
            .take(k)
            .map(|i| ClassScore {
                index: i,
                class: self.classes.name(i).unwrap_or_default().to_string(),
                probability: probs[i],
            })
            .collect()
    }
}
