//! From a decoded image to a normalised `[3, H, W]` tensor, for evaluation or training.
//!
//! Everything is driven by the backbone's [`Preprocess`]: the resize size, crop size, filter,
//! channel order, pixel scale, mean and std. Training augmentations follow torchvision's
//! semantics so recipes carry over, and draw from a per-sample RNG, so a sample's
//! augmentation depends on `(seed, epoch, sample index)` only — never on thread scheduling.

use grafter_core::Preprocess;
use image::RgbImage;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::auto_augment::AutoAugment;
use crate::random_erasing::RandomErasing;
use crate::resize::{ResizeEngine, resize_rgb8};

/// The most pixels the intermediate image of [`Transform::eval_rgb8`] may have (16 Mi, 48 MiB
/// of RGB8): far above any photo's shorter-side resize, far below what a strip-shaped image
/// would otherwise ask for.
pub const MAX_RESIZED_PIXELS: u64 = 1 << 24;

/// torchvision's `RandomResizedCrop`: a random area fraction in `scale` and aspect ratio in
/// `ratio` (log-uniform), 10 tries, then a center crop of the closest valid ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomResizedCrop {
    /// Range of the crop's area as a fraction of the image (default `(0.08, 1.0)`).
    pub scale: (f64, f64),
    /// Range of the crop's width / height (default `(3/4, 4/3)`).
    pub ratio: (f64, f64),
}

impl Default for RandomResizedCrop {
    fn default() -> Self {
        Self {
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }
}

impl RandomResizedCrop {
    /// The crop `[left, top, width, height]` for a `width × height` image.
    pub fn params(&self, width: u32, height: u32, rng: &mut impl Rng) -> [u32; 4] {
        let (w0, h0) = (width as f64, height as f64);
        let area = w0 * h0;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale.0..=self.scale.1);
            let aspect = rng.random_range(lr0..=lr1).exp();
            let w = (target * aspect).sqrt().round() as u32;
            let h = (target / aspect).sqrt().round() as u32;
            if 0 < w && w <= width && 0 < h && h <= height {
                let top = rng.random_range(0..=height - h);
                let left = rng.random_range(0..=width - w);
                return [left, top, w, h];
            }
        }
        let in_ratio = w0 / h0;
        let (w, h) = if in_ratio < self.ratio.0 {
            (width, ((w0 / self.ratio.0).round() as u32).clamp(1, height))
        } else if in_ratio > self.ratio.1 {
            (((h0 * self.ratio.1).round() as u32).clamp(1, width), height)
        } else {
            (width, height)
        };
        [(width - w) / 2, (height - h) / 2, w, h]
    }
}

/// torchvision's `ColorJitter`: brightness, contrast and saturation factors drawn from
/// `[max(0, 1 - x), 1 + x]`, hue shift from `[-hue, hue]` (hue ≤ 0.5), applied in a random
/// order.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ColorJitter {
    /// Brightness jitter.
    pub brightness: f32,
    /// Contrast jitter.
    pub contrast: f32,
    /// Saturation jitter.
    pub saturation: f32,
    /// Hue jitter, in turns (0.5 = half the colour wheel).
    pub hue: f32,
}

/// The training augmentations (each optional).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augment {
    /// Random crop and resize to the input size; `None` uses the evaluation resize and
    /// center crop.
    pub crop: Option<RandomResizedCrop>,
    /// Probability of a horizontal flip.
    pub hflip: f32,
    /// Colour jitter; `None` for none.
    pub jitter: Option<ColorJitter>,
    /// An automatic policy (`TrivialAugmentWide`, `RandAugment`) after the crop, flip and
    /// jitter; `None` for none.
    pub auto: Option<AutoAugment>,
    /// Random erasing of the normalised image (the last step); `None` for none.
    pub erasing: Option<RandomErasing>,
}

impl Augment {
    /// torchvision's ImageNet training recipe: RandomResizedCrop and a horizontal flip.
    pub fn standard() -> Self {
        Self {
            crop: Some(RandomResizedCrop::default()),
            hflip: 0.5,
            jitter: None,
            auto: None,
            erasing: None,
        }
    }

    /// No augmentation: training batches are shuffled but transformed as for evaluation.
    pub fn none() -> Self {
        Self {
            crop: None,
            hflip: 0.0,
            jitter: None,
            auto: None,
            erasing: None,
        }
    }

    /// Adds colour jitter.
    pub fn with_jitter(mut self, jitter: ColorJitter) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Adds an automatic augmentation policy (timm's and torchvision's recipes:
    /// [`AutoAugment::trivial_augment_wide`], [`AutoAugment::rand_augment`]); `None`
    /// removes it.
    pub fn with_auto(mut self, auto: impl Into<Option<AutoAugment>>) -> Self {
        self.auto = auto.into();
        self
    }

    /// Adds random erasing after normalisation; `None` removes it.
    pub fn with_erasing(mut self, erasing: impl Into<Option<RandomErasing>>) -> Self {
        self.erasing = erasing.into();
        self
    }
}

/// Turns a decoded image into network input per a backbone's [`Preprocess`].
///
/// ```
/// use grafter_core::Preprocess;
/// use grafter_data::Transform;
/// let t = Transform::new(Preprocess::imagenet().with_input_size(8, 8));
/// let img = image::RgbImage::from_pixel(20, 12, image::Rgb([255, 255, 255]));
/// let x = t.eval(&img);
/// assert_eq!(x.len(), 3 * 8 * 8);
/// assert!((x[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
/// ```
#[derive(Clone, Debug)]
pub struct Transform {
    preprocess: Preprocess,
    engine: ResizeEngine,
    /// `lut[c][v]`: network channel `c` for an 8-bit value `v` of its source channel.
    lut: Box<[[f32; 256]; 3]>,
}

impl Transform {
    /// The transform of `preprocess`, with the default resize engine.
    pub fn new(preprocess: Preprocess) -> Self {
        let mut lut = Box::new([[0f32; 256]; 3]);
        for v in 0..256 {
            let n = preprocess.normalize_rgb8([v as u8; 3]);
            for c in 0..3 {
                lut[c][v] = n[c];
            }
        }
        Self {
            preprocess,
            engine: ResizeEngine::default(),
            lut,
        }
    }

    /// Same transform with another resize engine.
    pub fn with_engine(mut self, engine: ResizeEngine) -> Self {
        self.engine = engine;
        self
    }

    /// The preprocessing convention.
    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// Evaluation geometry only: resize the shorter side to `resize_size()` (the longer one
    /// to `int(size · long / short)`, as torchvision), then center crop `input_size` (offsets
    /// rounded half to even, as Python's `round`; zero padding if the image is smaller).
    ///
    /// An extreme aspect ratio (a 1×32768 strip passes [`DecodeLimits`](crate::DecodeLimits))
    /// would make that resized image enormous (256 × 8 388 608 pixels). When it would exceed
    /// [`MAX_RESIZED_PIXELS`], only the band of the image that the center crop keeps is
    /// resized, so memory stays bounded and the result is the same crop (up to the filter's
    /// reach at the band's two cut edges).
    pub fn eval_rgb8(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        let s = self.preprocess.resize_size() as u32;
        let (nw, nh) = if w <= h {
            (s, (s as f64 * h as f64 / w as f64) as u32)
        } else {
            ((s as f64 * w as f64 / h as f64) as u32, s)
        };
        let (nw, nh) = (nw.max(1), nh.max(1));
        let [ch, cw] = self.preprocess.input_size.map(|v| v as u32);
        let (interp, engine) = (self.preprocess.interpolation, self.engine);
        if u64::from(nw) * u64::from(nh) <= MAX_RESIZED_PIXELS {
            let resized = resize_rgb8(img, None, nw, nh, interp, engine);
            return center_crop(&resized, cw, ch);
        }
        // The long axis is cut to the `keep` output pixels the crop takes from its middle,
        // and to the source pixels that map onto them.
        let band = |keep: u32, src: u32, out: u32| -> (u32, u32) {
            let len =
                ((f64::from(keep) * f64::from(src) / f64::from(out)).ceil() as u32).clamp(1, src);
            ((src - len) / 2, len)
        };
        let resized = if w <= h {
            let keep = ch.min(nh);
            let (top, rows) = band(keep, h, nh);
            resize_rgb8(img, Some([0, top, w, rows]), nw, keep, interp, engine)
        } else {
            let keep = cw.min(nw);
            let (left, cols) = band(keep, w, nw);
            resize_rgb8(img, Some([left, 0, cols, h]), keep, nh, interp, engine)
        };
        center_crop(&resized, cw, ch)
    }

    /// The evaluation transform, normalised: `[3, H, W]` row-major.
    pub fn eval(&self, img: &RgbImage) -> Vec<f32> {
        self.normalize(&self.eval_rgb8(img))
    }

    /// The training transform with the RNG seeded by `seed` (a per-sample seed).
    pub fn train(&self, img: &RgbImage, augment: &Augment, seed: u64) -> Vec<f32> {
        let mut x = self.normalize(&self.train_rgb8(img, augment, seed));
        if let Some(erasing) = &augment.erasing {
            // a stream of its own, so that erasing leaves the geometry and colours as they were
            let mut rng = StdRng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15);
            let [h, w] = self.preprocess.input_size;
            erasing.apply(&mut x, 3, h, w, &mut rng);
        }
        x
    }

    /// Training geometry and colour, before normalisation.
    pub fn train_rgb8(&self, img: &RgbImage, augment: &Augment, seed: u64) -> RgbImage {
        let mut rng = StdRng::seed_from_u64(seed);
        let [h, w] = self.preprocess.input_size.map(|v| v as u32);
        let mut out = match &augment.crop {
            Some(rrc) => {
                let crop = rrc.params(img.width(), img.height(), &mut rng);
                resize_rgb8(
                    img,
                    Some(crop),
                    w,
                    h,
                    self.preprocess.interpolation,
                    self.engine,
                )
            }
            None => self.eval_rgb8(img),
        };
        if augment.hflip > 0.0 && rng.random::<f32>() < augment.hflip {
            image::imageops::flip_horizontal_in_place(&mut out);
        }
        if let Some(j) = &augment.jitter {
            color_jitter(&mut out, j, &mut rng);
        }
        if let Some(auto) = &augment.auto {
            out = auto.apply(&out, &mut rng);
        }
        out
    }

    /// Normalises an image of the input size into `[3, H, W]` network values.
    pub fn normalize(&self, img: &RgbImage) -> Vec<f32> {
        let (w, h) = img.dimensions();
        let plane = (w * h) as usize;
        let mut out = vec![0f32; 3 * plane];
        let src_of = |c: usize| match self.preprocess.channel_order {
            grafter_core::ChannelOrder::Rgb => c,
            grafter_core::ChannelOrder::Bgr => 2 - c,
        };
        let (lo, rest) = out.split_at_mut(plane);
        let (mid, hi) = rest.split_at_mut(plane);
        let (s0, s1, s2) = (src_of(0), src_of(1), src_of(2));
        for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
            lo[i] = self.lut[0][px[s0] as usize];
            mid[i] = self.lut[1][px[s1] as usize];
            hi[i] = self.lut[2][px[s2] as usize];
        }
        out
    }
}

fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// torchvision's `center_crop` offsets; zero padding where the image is smaller.
fn center_crop(img: &RgbImage, cw: u32, ch: u32) -> RgbImage {
    let offset = |size: u32, crop: u32| -> i64 {
        if size >= crop {
            round_half_even((size - crop) as f64 / 2.0) as i64
        } else {
            -(((crop - size) / 2) as i64)
        }
    };
    let (w, h) = img.dimensions();
    let (left, top) = (offset(w, cw), offset(h, ch));
    if left >= 0 && top >= 0 && left as u32 + cw <= w && top as u32 + ch <= h {
        return image::imageops::crop_imm(img, left as u32, top as u32, cw, ch).to_image();
    }
    RgbImage::from_fn(cw, ch, |x, y| {
        let (sx, sy) = (x as i64 + left, y as i64 + top);
        if sx >= 0 && sy >= 0 && (sx as u32) < w && (sy as u32) < h {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

/// ITU-R 601 luma, as PIL's `convert("L")`.
fn luma(p: [f32; 3]) -> f32 {
    (p[0] * 299.0 + p[1] * 587.0 + p[2] * 114.0) / 1000.0
}

fn color_jitter(img: &mut RgbImage, j: &ColorJitter, rng: &mut StdRng) {
    let mut order = [0usize, 1, 2, 3];
    order.shuffle(rng);
    let mut factor = |x: f32| {
        if x > 0.0 {
            Some(rng.random_range((1.0 - x).max(0.0)..=1.0 + x))
        } else {
            None
        }
    };
    let b = factor(j.brightness);
    let c = factor(j.contrast);
    let s = factor(j.saturation);
    let hue = (j.hue > 0.0).then(|| rng.random_range(-j.hue..=j.hue));
    for op in order {
        match op {
            0 => {
                if let Some(f) = b {
                    map_pixels(img, |p| p.map(|v| v * f));
                }
            }
            1 => {
                if let Some(f) = c {
                    let n = (img.width() * img.height()).max(1) as f32;
                    let mean = img
                        .pixels()
                        .map(|p| luma(p.0.map(|v| v as f32)).round())
                        .sum::<f32>()
                        / n;
                    let m = (mean + 0.5).floor();
                    map_pixels(img, |p| p.map(|v| m + f * (v - m)));
                }
            }
            2 => {
                if let Some(f) = s {
                    map_pixels(img, |p| {
                        let l = luma(p).round();
                        p.map(|v| l + f * (v - l))
                    });
                }
            }
            _ => {
                if let Some(h) = hue {
                    map_pixels(img, |p| shift_hue(p, h));
                }
            }
        }
    }
}

fn map_pixels(img: &mut RgbImage, f: impl Fn([f32; 3]) -> [f32; 3]) {
    for px in img.pixels_mut() {
        let v = f(px.0.map(|v| v as f32));
        px.0 = v.map(|v| v.round().clamp(0.0, 255.0) as u8);
    }
}

fn shift_hue(p: [f32; 3], shift: f32) -> [f32; 3] {
    let [r, g, b] = p.map(|v| v / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    if d == 0.0 {
        return p;
    }
    let mut h = if max == r {
        ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        (b - r) / d + 2.0
    } else {
        (r - g) / d + 4.0
    } / 6.0;
    h = (h + shift).rem_euclid(1.0);
    let (s, v) = (d / max, max);
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (pp, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let rgb = match i as i32 % 6 {
        0 => [v, t, pp],
        1 => [q, v, pp],
        2 => [pp, v, t],
        3 => [pp, q, v],
        4 => [t, pp, v],
        _ => [v, pp, q],
    };
    rgb.map(|x| x * 255.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_resized_crop_stays_inside_and_is_seeded() {
        let rrc = RandomResizedCrop::default();
        for seed in 0..200 {
            let a = rrc.params(300, 200, &mut StdRng::seed_from_u64(seed));
            let b = rrc.params(300, 200, &mut StdRng::seed_from_u64(seed));
            assert_eq!(a, b);
            assert!(a[0] + a[2] <= 300 && a[1] + a[3] <= 200 && a[2] > 0 && a[3] > 0);
        }
        // An extreme panorama falls back to a center crop of ratio 4/3.
        let scale_one = RandomResizedCrop {
            scale: (1.0, 1.0),
            ..Default::default()
        };
        assert_eq!(
            scale_one.params(1000, 10, &mut StdRng::seed_from_u64(0)),
            [493, 0, 13, 10]
        );
    }

    #[test]
    fn python_rounding_of_center_offsets() {
        assert_eq!(round_half_even(0.5), 0.0);
        assert_eq!(round_half_even(1.5), 2.0);
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(2.4), 2.0);
    }

    #[test]
    fn train_transform_is_reproducible_per_seed() {
        let t = Transform::new(Preprocess::imagenet().with_input_size(16, 16));
        let img = RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])
        });
        let aug = Augment::standard().with_jitter(ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
        });
        assert_eq!(t.train(&img, &aug, 9), t.train(&img, &aug, 9));
        assert_ne!(t.train(&img, &aug, 9), t.train(&img, &aug, 10));
    }

    #[test]
    fn hue_shift_of_a_full_turn_is_identity() {
        let p = [200.0, 30.0, 90.0];
        let q = shift_hue(p, 1.0);
        for c in 0..3 {
            assert!((p[c] - q[c]).abs() < 1e-3);
        }
    }
}
