//! How a backbone expects its input images: size, crop, resizing and normalisation.
//!
//! Carried by every [`Backbone`](crate::Backbone) so that the data pipeline never hard-codes
//! ImageNet numbers: a Keras "caffe" VGG16 wants BGR 0–255 minus a mean, a torchvision ResNet
//! wants RGB 0–1 standardised, and mixing them up silently ruins transfer learning.

use serde::{Deserialize, Serialize};

/// Resampling filter used when resizing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Interpolation {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear (torchvision's default for ResNet weights).
    #[default]
    Bilinear,
    /// Bicubic (timm's default for many weights).
    Bicubic,
}

/// Order of the colour channels the backbone was trained on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ChannelOrder {
    /// Red, green, blue (PyTorch, timm).
    #[default]
    Rgb,
    /// Blue, green, red (Caffe and Keras "caffe" mode).
    Bgr,
}

/// Everything the data pipeline needs to feed a backbone correctly.
///
/// Pixel values are first scaled to `[0, pixel_scale]` (1.0 for torchvision, 255.0 for Keras
/// "caffe"), put in [`channel_order`](Self::channel_order), then normalised per channel as
/// `(x - mean) / std`, with `mean` and `std` given in that same scale and order.
///
/// ```
/// use grafter_core::Preprocess;
/// let p = Preprocess::imagenet();
/// assert_eq!(p.input_size, [224, 224]);
/// assert_eq!(p.resize_size(), 256);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Per-channel mean, in `channel_order` and in units of `pixel_scale`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, same units.
    pub std: [f32; 3],
    /// Value a full-intensity 8-bit pixel (255) maps to before normalisation.
    pub pixel_scale: f32,
    /// Channel order of the network input.
    pub channel_order: ChannelOrder,
    /// Network input size `[height, width]`.
    pub input_size: [usize; 2],
    /// Ratio of crop to resized image at evaluation (0.875 = resize 256, crop 224).
    pub crop_ratio: f32,
    /// Resampling filter.
    pub interpolation: Interpolation,
}

impl Preprocess {
    /// torchvision's ImageNet convention: RGB in [0,1], mean/std of ImageNet, 224 crop of 256.
    pub fn imagenet() -> Self {
        Self {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            pixel_scale: 1.0,
            channel_order: ChannelOrder::Rgb,
            input_size: [224, 224],
            crop_ratio: 0.875,
            interpolation: Interpolation::Bilinear,
        }
    }

    /// Keras / Caffe "caffe" convention: BGR in [0,255] minus the ImageNet mean, no scaling.
    pub fn caffe() -> Self {
        Self {
            mean: [103.939, 116.779, 123.68],
            std: [1.0, 1.0, 1.0],
            pixel_scale: 255.0,
            channel_order: ChannelOrder::Bgr,
            input_size: [224, 224],
            crop_ratio: 0.875,
            interpolation: Interpolation::Bilinear,
        }
    }

    /// Same convention with another input size.
    pub fn with_input_size(mut self, height: usize, width: usize) -> Self {
        self.input_size = [height, width];
        self
    }

    /// Size of the shorter side before the evaluation center crop.
    pub fn resize_size(&self) -> usize {
        let short = self.input_size[0].min(self.input_size[1]) as f32;
        (short / self.crop_ratio).round() as usize
    }

    /// Normalises one 8-bit RGB pixel into network input values, in network channel order.
    pub fn normalize_rgb8(&self, rgb: [u8; 3]) -> [f32; 3] {
        let px = match self.channel_order {
            ChannelOrder::Rgb => rgb,
            ChannelOrder::Bgr => [rgb[2], rgb[1], rgb[0]],
        };
        let mut out = [0.0; 3];
        for c in 0..3 {
            let x = px[c] as f32 / 255.0 * self.pixel_scale;
            out[c] = (x - self.mean[c]) / self.std[c];
        }
        out
    }
}

impl Default for Preprocess {
    fn default() -> Self {
        Self::imagenet()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caffe_swaps_channels_and_keeps_0_255_scale() {
        let p = Preprocess::caffe();
        let v = p.normalize_rgb8([255, 0, 10]);
        assert!((v[0] - (10.0 - 103.939)).abs() < 1e-4);
        assert!((v[2] - (255.0 - 123.68)).abs() < 1e-4);
    }

    #[test]
    fn imagenet_normalises_to_unit_scale() {
        let p = Preprocess::imagenet();
        let v = p.normalize_rgb8([255, 255, 255]);
        assert!((v[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
    }
}
