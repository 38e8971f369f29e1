//! Multi-scale feature maps, timm's `features_only`: the last activation at each resolution a
//! backbone passes through, for heads that need more than the final map — a feature pyramid
//! for detection, a U-Net decoder for segmentation.

use burn::tensor::Tensor;

use crate::{Backbone, GrafterError, Result};

/// One map a [`FeatureMaps`] backbone can return (timm's `feature_info` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureInfo {
    /// Where the map is taken: `"stem"`, `"layer2"`, `"block3"`, or an ONNX value's name.
    pub name: String,
    /// Its channel count.
    pub channels: usize,
    /// Input size over map size, nominally: 2 for a ResNet's stem, 32 for its last stage.
    pub reduction: usize,
}

/// A backbone that returns its intermediate feature maps, not only the last one.
///
/// Implemented by the zoo's ResNet and VGG and by `OnnxBackbone`; an implementation runs its
/// forward pass once and hands each map it passes to [`Taps`]:
///
/// ```
/// use burn::tensor::{Device, Tensor, activation::relu};
/// use grafter_core::feature_maps::{FeatureInfo, FeatureMaps, Taps};
/// # use grafter_core::{Backbone, Preprocess, Stage};
///
/// /// Two element-wise "stages": enough to show the contract.
/// #[derive(burn::module::Module, Debug)]
/// struct Toy;
///
/// impl FeatureMaps for Toy {
///     fn feature_info(&self) -> Vec<FeatureInfo> {
///         let info = |name: &str| FeatureInfo { name: name.into(), channels: 3, reduction: 1 };
///         vec![info("relu"), info("double")]
///     }
///
///     fn forward_feature_maps(
///         &self,
///         images: Tensor<4>,
///         indices: &[usize],
///     ) -> grafter_core::Result<Vec<Tensor<4>>> {
///         let mut taps = Taps::new(indices, 2)?;
///         let x = relu(images);
///         taps.offer(0, &x);
///         if taps.deepest() >= 1 {
///             taps.offer(1, &(x * 2.0));
///         }
///         Ok(taps.into_maps())
///     }
/// }
/// # impl Backbone for Toy {
/// #     fn forward_features(&self, x: Tensor<4>) -> Tensor<4> { x }
/// #     fn feature_channels(&self) -> usize { 3 }
/// #     fn stages(&self) -> Vec<Stage> { Vec::new() }
/// #     fn preprocess(&self) -> Preprocess { Preprocess::imagenet() }
/// # }
///
/// let x = Tensor::<4>::ones([1, 3, 4, 4], &Device::flex());
/// // timm's out_indices: which maps, in the order wanted
/// let maps = Toy.forward_feature_maps(x.clone(), &[1, 0])?;
/// assert_eq!(maps[0].clone().into_data().to_vec::<f32>().unwrap()[0], 2.0);
/// assert_eq!(maps[1].clone().into_data().to_vec::<f32>().unwrap()[0], 1.0);
/// assert!(Toy.forward_feature_maps(x, &[2]).is_err());
/// # Ok::<(), grafter_core::GrafterError>(())
/// ```
pub trait FeatureMaps: Backbone {
    /// Every map this backbone offers, input side first; `forward_feature_maps` takes indices
    /// into this list. Empty for a backbone with one resolution (a vision transformer).
    fn feature_info(&self) -> Vec<FeatureInfo>;

    /// The maps at `indices` (timm's `out_indices`), in the order asked, from one forward pass.
    /// An index past [`feature_info`](Self::feature_info), or no index at all, is an error.
    fn forward_feature_maps(&self, images: Tensor<4>, indices: &[usize]) -> Result<Vec<Tensor<4>>>;
}

/// Collects the maps a forward pass goes through, keeping only those asked for: the building
/// block of [`FeatureMaps::forward_feature_maps`] implementations.
pub struct Taps<'a> {
    indices: &'a [usize],
    maps: Vec<Option<Tensor<4>>>,
}

impl<'a> Taps<'a> {
    /// Checks `indices` against the `available` maps.
    pub fn new(indices: &'a [usize], available: usize) -> Result<Self> {
        if available == 0 {
            return Err(GrafterError::Config(
                "this backbone has a single resolution: it offers no multi-scale feature maps"
                    .into(),
            ));
        }
        if indices.is_empty() {
            return Err(GrafterError::Config(
                "no feature map asked for: give at least one index".into(),
            ));
        }
        if let Some(&i) = indices.iter().find(|&&i| i >= available) {
            return Err(GrafterError::Config(format!(
                "feature map {i} asked for, but the backbone has {available} (0..{available})"
            )));
        }
        Ok(Self {
            indices,
            maps: vec![None; available],
        })
    }

    /// The deepest index asked for: the forward pass may stop after it.
    pub fn deepest(&self) -> usize {
        self.indices.iter().copied().max().unwrap_or(0)
    }

    /// Keeps `map` as map `index` when it was asked for.
    pub fn offer(&mut self, index: usize, map: &Tensor<4>) {
        if self.indices.contains(&index) {
            self.maps[index] = Some(map.clone());
        }
    }

    /// The maps, in the order asked.
    ///
    /// # Panics
    /// When the forward pass did not [`offer`](Self::offer) a map asked for: a bug of the
    /// implementation, not of the input.
    pub fn into_maps(self) -> Vec<Tensor<4>> {
        self.indices
            .iter()
            .map(|&i| {
                self.maps[i]
                    .clone()
                    .unwrap_or_else(|| panic!("the forward pass offered no map {i}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn taps_keep_what_was_asked_in_that_order() {
        let device = Device::flex();
        let maps: Vec<Tensor<4>> = (1..=3)
            .map(|c| Tensor::zeros([1, c, 2, 2], &device))
            .collect();
        let indices = [2, 0];
        let mut taps = Taps::new(&indices, 3).unwrap();
        assert_eq!(taps.deepest(), 2);
        for (i, m) in maps.iter().enumerate() {
            taps.offer(i, m);
        }
        let got: Vec<usize> = taps.into_maps().iter().map(|m| m.dims()[1]).collect();
        assert_eq!(got, [3, 1]);
    }

    #[test]
    fn bad_indices_are_errors() {
        for (indices, available, says) in [
            (&[3usize][..], 3, "feature map 3"),
            (&[][..], 3, "no feature map"),
            (&[0][..], 0, "single resolution"),
        ] {
            let err = Taps::new(indices, available).err().unwrap().to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
