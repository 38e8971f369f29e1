//! Small images written by the tests themselves, and a tiny frozen-able backbone.

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use grafter_core::{Backbone, Preprocess, Stage};
use grafter_data::image::{ImageFormat, Rgb, RgbImage};

/// Input side of the tiny backbone.
pub const SIDE: usize = 16;

/// A deterministic colourful image; `class` shifts the dominant colour so classes differ.
pub fn picture(w: u32, h: u32, class: usize, variant: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let base = [
            (class * 90) as u32,
            255 - (class * 70) as u32,
            (class * 40 + 30) as u32,
        ];
        let v = (x * 7 + y * 5 + variant * 13) % 64;
        Rgb([
            ((base[0] + v) % 256) as u8,
            ((base[1] + x * 3) % 256) as u8,
            ((base[2] + y * 2 + variant) % 256) as u8,
        ])
    })
}

/// Writes `img` to `path` in `format`, creating the parent folder.
pub fn write(path: &Path, img: &RgbImage, format: ImageFormat) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save_with_format(path, format).unwrap();
}

/// `per_class` JPEGs (and one PNG) per class in `root/<class>/`.
pub fn image_folder(root: &Path, classes: &[&str], per_class: usize) {
    for (c, name) in classes.iter().enumerate() {
        for i in 0..per_class {
            let (w, h) = (24 + (i as u32 * 5) % 17, 20 + (i as u32 * 3) % 11);
            let img = picture(w, h, c, i as u32);
            if i == 0 {
                write(
                    &root.join(name).join(format!("{i:03}.png")),
                    &img,
                    ImageFormat::Png,
                );
            } else {
                write(
                    &root.join(name).join(format!("{i:03}.jpg")),
                    &img,
                    ImageFormat::Jpeg,
                );
            }
        }
    }
}

/// An encoded JPEG in memory.
pub fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), ImageFormat::Jpeg)
        .unwrap();
    out
}

/// conv3x3 → BatchNorm → ReLU, stride 2.
#[derive(Module, Debug)]
pub struct Block {
    conv: Conv2d,
    bn: BatchNorm,
}

impl Block {
    fn new(cin: usize, cout: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            bn: BatchNormConfig::new(cout).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.bn.forward(self.conv.forward(x)))
    }
}

/// Two stages: 3→8 (/2), 8→12 (/2): features `[N, 12, 4, 4]` from 16×16 inputs.
#[derive(Module, Debug)]
pub struct Tiny {
    a: Block,
    b: Block,
}

impl Tiny {
    pub fn new(device: &Device) -> Self {
        Self {
            a: Block::new(3, 8, device),
            b: Block::new(8, 12, device),
        }
    }
}

impl Backbone for Tiny {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        self.b.forward(self.a.forward(images))
    }

    fn feature_channels(&self) -> usize {
        12
    }

    fn stages(&self) -> Vec<Stage> {
        vec![Stage::of("a", &self.a), Stage::of("b", &self.b)]
    }

    fn preprocess(&self) -> Preprocess {
        Preprocess::imagenet().with_input_size(SIDE, SIDE)
    }
}

/// All batches of one pass, concatenated: (pixels, labels, batch sizes).
pub fn drain(
    source: &dyn grafter_core::source::DataSource,
    request: grafter_core::source::EpochRequest,
) -> (Vec<f32>, Vec<usize>, Vec<usize>) {
    let mut px = Vec::new();
    let mut labels = Vec::new();
    let mut sizes = Vec::new();
    for b in source.batches(request) {
        let b = b.unwrap();
        b.validate().unwrap();
        sizes.push(b.shape[0]);
        px.extend(b.images);
        match b.labels {
            grafter_core::source::Labels::Classes(c) => labels.extend(c),
            other => panic!("unexpected labels {other:?}"),
        }
    }
    (px, labels, sizes)
}
