//! torchvision's automatic augmentation policies — `TrivialAugmentWide` and `RandAugment` —
//! with its operation set and magnitudes, on 8-bit RGB images as torchvision runs them on PIL
//! images (nearest-neighbour geometry, black fill).
//!
//! Every operation reproduces what torchvision's `_apply_op` asks of PIL, down to PIL's
//! arithmetic: blends truncate as `ImagingBlend` does, the geometry samples pixel centres
//! like `ImagingTransformAffine`, `Rotate` goes through `Image.rotate`'s own matrix, the
//! histogram operations follow `ImageOps`. `crates/grafter-data/tests/data/auto_augment.rs` compares every
//! operation with torchvision on fixture images: identical bytes in all 552 cases.

use image::RgbImage;
use rand::Rng;

/// One operation of torchvision's augmentation space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AugmentOp {
    /// The image unchanged.
    Identity,
    /// Horizontal shear by `magnitude` (the tangent of the shear angle), about the top-left
    /// corner.
    ShearX,
    /// Vertical shear by `magnitude`, about the top-left corner.
    ShearY,
    /// Horizontal shift by `magnitude` pixels (truncated to whole pixels).
    TranslateX,
    /// Vertical shift by `magnitude` pixels (truncated to whole pixels).
    TranslateY,
    /// Rotation by `magnitude` degrees, counter-clockwise, about the centre.
    Rotate,
    /// Brightness factor `1 + magnitude`.
    Brightness,
    /// Saturation factor `1 + magnitude`.
    Color,
    /// Contrast factor `1 + magnitude`.
    Contrast,
    /// Sharpness factor `1 + magnitude`.
    Sharpness,
    /// Keeps `magnitude` bits of each channel.
    Posterize,
    /// Inverts the values at or above `magnitude`.
    Solarize,
    /// Stretches each channel to the full range.
    AutoContrast,
    /// Equalises each channel's histogram.
    Equalize,
}

impl AugmentOp {
    /// All operations, in torchvision's order.
    pub const ALL: [AugmentOp; 14] = [
        Self::Identity,
        Self::ShearX,
        Self::ShearY,
        Self::TranslateX,
        Self::TranslateY,
        Self::Rotate,
        Self::Brightness,
        Self::Color,
        Self::Contrast,
        Self::Sharpness,
        Self::Posterize,
        Self::Solarize,
        Self::AutoContrast,
        Self::Equalize,
    ];

    /// torchvision's name of the operation (`"ShearX"`, `"Equalize"`…).
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "Identity",
            Self::ShearX => "ShearX",
            Self::ShearY => "ShearY",
            Self::TranslateX => "TranslateX",
            Self::TranslateY => "TranslateY",
            Self::Rotate => "Rotate",
            Self::Brightness => "Brightness",
            Self::Color => "Color",
            Self::Contrast => "Contrast",
            Self::Sharpness => "Sharpness",
            Self::Posterize => "Posterize",
            Self::Solarize => "Solarize",
            Self::AutoContrast => "AutoContrast",
            Self::Equalize => "Equalize",
        }
    }

    /// The operation called `name` by torchvision.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Whether torchvision draws the sign of the magnitude at random for this operation.
    pub fn signed(self) -> bool {
        matches!(
            self,
            Self::ShearX
                | Self::ShearY
                | Self::TranslateX
                | Self::TranslateY
                | Self::Rotate
                | Self::Brightness
                | Self::Color
                | Self::Contrast
                | Self::Sharpness
        )
    }

    /// Applies the operation with `magnitude` (already signed).
    pub fn apply(self, img: &RgbImage, magnitude: f64) -> RgbImage {
        let (w, h) = (img.width() as f64, img.height() as f64);
        match self {
            Self::Identity => img.clone(),
            Self::ShearX => affine(
                img,
                inverse_affine(
                    [0.0, 0.0],
                    0.0,
                    [0.0, 0.0],
                    [magnitude.atan().to_degrees(), 0.0],
                ),
            ),
            Self::ShearY => affine(
                img,
                inverse_affine(
                    [0.0, 0.0],
                    0.0,
                    [0.0, 0.0],
                    [0.0, magnitude.atan().to_degrees()],
                ),
            ),
            Self::TranslateX => affine(
                img,
                inverse_affine(
                    [w * 0.5, h * 0.5],
                    0.0,
                    [magnitude.trunc(), 0.0],
                    [0.0, 0.0],
                ),
            ),
            Self::TranslateY => affine(
                img,
                inverse_affine(
                    [w * 0.5, h * 0.5],
                    0.0,
                    [0.0, magnitude.trunc()],
                    [0.0, 0.0],
                ),
            ),
            Self::Rotate => rotate(img, magnitude),
            Self::Brightness => blend(&RgbImage::new(img.width(), img.height()), img, magnitude),
            Self::Color => blend(&grey(img), img, magnitude),
            Self::Contrast => {
                let mean = luma_mean(img);
                let flat = RgbImage::from_pixel(img.width(), img.height(), image::Rgb([mean; 3]));
                blend(&flat, img, magnitude)
            }
            Self::Sharpness => blend(&smooth(img), img, magnitude),
            Self::Posterize => {
                let bits = magnitude.trunc().clamp(0.0, 8.0) as u32;
                let mask = !((1u16 << (8 - bits)) - 1) as u8;
                map_values(img, |v| v & mask)
            }
            Self::Solarize => map_values(img, |v| if (v as f64) < magnitude { v } else { 255 - v }),
            Self::AutoContrast => per_channel_lut(img, autocontrast_lut),
            Self::Equalize => per_channel_lut(img, equalize_lut),
        }
    }

    /// torchvision's magnitude of bin `bin` of `bins` (unsigned) for an image of
    /// `width × height`: `wide` selects `TrivialAugmentWide`'s ranges, otherwise `RandAugment`'s.
    pub fn magnitude(self, bin: usize, bins: usize, width: u32, height: u32, wide: bool) -> f64 {
        let linspace = |hi: f64| {
            if bins <= 1 {
                0.0
            } else {
                hi * bin as f64 / (bins - 1) as f64
            }
        };
        // torchvision computes the magnitudes as float32 tensors.
        let f32r = |x: f64| x as f32 as f64;
        match (self, wide) {
            (Self::Identity | Self::AutoContrast | Self::Equalize, _) => 0.0,
            (Self::ShearX | Self::ShearY, true) => f32r(linspace(0.99)),
            (Self::ShearX | Self::ShearY, false) => f32r(linspace(0.3)),
            (Self::TranslateX | Self::TranslateY, true) => f32r(linspace(32.0)),
            (Self::TranslateX, false) => f32r(linspace(150.0 / 331.0 * width as f64)),
            (Self::TranslateY, false) => f32r(linspace(150.0 / 331.0 * height as f64)),
            (Self::Rotate, true) => f32r(linspace(135.0)),
            (Self::Rotate, false) => f32r(linspace(30.0)),
            (Self::Brightness | Self::Color | Self::Contrast | Self::Sharpness, true) => {
                f32r(linspace(0.99))
            }
            (Self::Brightness | Self::Color | Self::Contrast | Self::Sharpness, false) => {
                f32r(linspace(0.9))
            }
            (Self::Posterize, _) => {
                let steps = if wide { 6.0 } else { 4.0 };
                let step = (bins.max(2) - 1) as f64 / steps;
                8.0 - (bin as f64 / step).round_ties_even()
            }
            (Self::Solarize, _) => f32r(255.0 - linspace(255.0)),
        }
    }
}

/// An automatic augmentation policy, applied after the crop and flip (torchvision's order in
/// its ImageNet recipes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoAugment {
    /// `TrivialAugmentWide`: one random operation at a random magnitude bin.
    TrivialAugmentWide {
        /// Number of magnitude bins (torchvision: 31).
        bins: usize,
    },
    /// `RandAugment`: `ops` random operations at one fixed magnitude bin.
    RandAugment {
        /// Operations per image (torchvision: 2).
        ops: usize,
        /// The magnitude bin (torchvision: 9).
        magnitude: usize,
        /// Number of magnitude bins (torchvision: 31).
        bins: usize,
    },
}

impl AutoAugment {
    /// torchvision's `TrivialAugmentWide()` defaults.
    pub fn trivial_augment_wide() -> Self {
        Self::TrivialAugmentWide { bins: 31 }
    }

    /// torchvision's `RandAugment()` defaults: 2 operations at magnitude 9 of 31.
    pub fn rand_augment() -> Self {
        Self::RandAugment {
            ops: 2,
            magnitude: 9,
            bins: 31,
        }
    }

    /// [`FromStr`](std::str::FromStr)'s parser.
    fn parse(name: &str) -> Result<Self, String> {
        let lower = name.trim().to_ascii_lowercase();
        let unknown = || {
            format!("unknown augmentation '{name}' (trivial, rand, or rand-m<magnitude>-n<ops>)")
        };
        if matches!(
            lower.as_str(),
            "trivial" | "trivial-augment-wide" | "trivialaugmentwide"
        ) {
            return Ok(Self::trivial_augment_wide());
        }
        let mut parts = lower.split('-');
        if !matches!(parts.next(), Some("rand" | "randaugment")) {
            return Err(unknown());
        }
        let Self::RandAugment {
            mut ops,
            mut magnitude,
            bins,
        } = Self::rand_augment()
        else {
            unreachable!("rand_augment is a RandAugment")
        };
        for part in parts {
            let value = |rest: &str| rest.parse::<usize>().map_err(|_| unknown());
            match part.split_at_checked(1) {
                Some(("m", rest)) => magnitude = value(rest)?,
                Some(("n", rest)) => ops = value(rest)?,
                _ => return Err(unknown()),
            }
        }
        if magnitude >= bins || ops == 0 || ops > 16 {
            return Err(format!(
                "{name}: magnitude must be below {bins} and ops within 1..=16"
            ));
        }
        Ok(Self::RandAugment {
            ops,
            magnitude,
            bins,
        })
    }

    /// Draws the operations and magnitudes from `rng` and applies them.
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        let (w, h) = img.dimensions();
        match *self {
            Self::TrivialAugmentWide { bins } => {
                let op = AugmentOp::ALL[rng.random_range(0..AugmentOp::ALL.len())];
                let bin = rng.random_range(0..bins.max(1));
                let m = sign(op, op.magnitude(bin, bins, w, h, true), rng);
                op.apply(img, m)
            }
            Self::RandAugment {
                ops,
                magnitude,
                bins,
            } => {
                let mut out = img.clone();
                for _ in 0..ops {
                    let op = AugmentOp::ALL[rng.random_range(0..AugmentOp::ALL.len())];
                    let m = sign(op, op.magnitude(magnitude, bins, w, h, false), rng);
                    out = op.apply(&out, m);
                }
                out
            }
        }
    }
}

/// `m`, negated with probability ½ for the operations torchvision signs.
fn sign(op: AugmentOp, m: f64, rng: &mut impl Rng) -> f64 {
    if op.signed() && rng.random::<bool>() {
        -m
    } else {
        m
    }
}

/// torchvision's `_get_inverse_affine_matrix`: the output-to-input map of a rotation by
/// `angle` degrees and a shear by `shear` degrees about `center`, then a shift by `translate`.
fn inverse_affine(center: [f64; 2], angle: f64, translate: [f64; 2], shear: [f64; 2]) -> [f64; 6] {
    let rot = angle.to_radians();
    let (sx, sy) = (shear[0].to_radians(), shear[1].to_radians());
    let [cx, cy] = center;
    let [tx, ty] = translate;
    let a = (rot - sy).cos() / sy.cos();
    let b = -(rot - sy).cos() * sx.tan() / sy.cos() - rot.sin();
    let c = (rot - sy).sin() / sy.cos();
    let d = -(rot - sy).sin() * sx.tan() / sy.cos() + rot.cos();
    let mut m = [d, -b, 0.0, -c, a, 0.0];
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
    m[2] += cx;
    m[5] += cy;
    m
}

/// PIL's `Image.rotate(angle, NEAREST, expand=False)`: its own matrix (entries rounded to 15
/// decimals), about the centre; exact quarter turns are transposes.
fn rotate(img: &RgbImage, degrees: f64) -> RgbImage {
    let angle = degrees.rem_euclid(360.0);
    if angle == 0.0 {
        return img.clone();
    }
    if angle == 180.0 {
        return image::imageops::rotate180(img);
    }
    if img.width() == img.height() && angle == 90.0 {
        return image::imageops::rotate270(img); // counter-clockwise
    }
    if img.width() == img.height() && angle == 270.0 {
        return image::imageops::rotate90(img);
    }
    let (cx, cy) = (img.width() as f64 / 2.0, img.height() as f64 / 2.0);
    let r = -angle.to_radians();
    let round15 = |v: f64| (v * 1e15).round() / 1e15;
    let mut m = [
        round15(r.cos()),
        round15(r.sin()),
        0.0,
        round15(-r.sin()),
        round15(r.cos()),
        0.0,
    ];
    m[2] = m[0] * -cx + m[1] * -cy + cx;
    m[5] = m[3] * -cx + m[4] * -cy + cy;
    affine(img, m)
}

/// PIL's `ImagingTransformAffine` with nearest-neighbour sampling and black fill: output pixel
/// `(x, y)` takes the input pixel under `m · (x + ½, y + ½)`. Like PIL, a pure scale/shift
/// steps in double precision, and any other map whose coordinates fit steps in 16.16 fixed
/// point (which decides the pixel when a centre falls on a boundary).
fn affine(img: &RgbImage, m: [f64; 6]) -> RgbImage {
    let (w, h) = img.dimensions();
    let fits = |x: f64, y: f64| {
        (x * m[0] + y * m[1] + m[2]).abs() < 32768.0 && (x * m[3] + y * m[4] + m[5]).abs() < 32768.0
    };
    let (wf, hf) = (w as f64, h as f64);
    if m[1] == 0.0 && m[3] == 0.0 {
        let coord = |v: f64| if v < 0.0 { -1 } else { v as i64 };
        let (x0, y0) = (m[2] + m[0] * 0.5, m[5] + m[4] * 0.5);
        sample(img, x0, y0, [m[0], m[1], m[3], m[4]], coord)
    } else if fits(0.0, 0.0) && fits(wf, hf) && fits(0.0, hf) && fits(wf, 0.0) {
        let fix = |v: f64| (v * 65536.0 + 0.5).floor() as i64;
        let (x0, y0) = (
            fix(m[2] + m[0] * 0.5 + m[1] * 0.5),
            fix(m[5] + m[3] * 0.5 + m[4] * 0.5),
        );
        sample(
            img,
            x0,
            y0,
            [fix(m[0]), fix(m[1]), fix(m[3]), fix(m[4])],
            |v| v >> 16,
        )
    } else {
        let coord = |v: f64| if v < 0.0 { -1 } else { v as i64 };
        let (x0, y0) = (
            m[2] + m[1] * 0.5 + m[0] * 0.5,
            m[5] + m[4] * 0.5 + m[3] * 0.5,
        );
        sample(img, x0, y0, [m[0], m[1], m[3], m[4]], coord)
    }
}

/// The stepping loop of [`affine`], over `f64` or fixed-point `i64` coordinates: `(x0, y0)`
/// maps the first pixel, `d = [dx/dx, dx/dy, dy/dx, dy/dy]` the steps, `coord` a coordinate
/// to a pixel index (negative: outside).
fn sample<T>(img: &RgbImage, x0: T, y0: T, d: [T; 4], coord: impl Fn(T) -> i64) -> RgbImage
where
    T: Copy + std::ops::AddAssign,
{
    let (w, h) = img.dimensions();
    let mut out = RgbImage::new(w, h);
    let (mut xo, mut yo) = (x0, y0);
    for y in 0..h {
        let (mut xx, mut yy) = (xo, yo);
        for x in 0..w {
            let (xin, yin) = (coord(xx), coord(yy));
            if (0..w as i64).contains(&xin) && (0..h as i64).contains(&yin) {
                out.put_pixel(x, y, *img.get_pixel(xin as u32, yin as u32));
            }
            xx += d[0];
            yy += d[2];
        }
        xo += d[1];
        yo += d[3];
    }
    out
}

/// PIL's `Image.blend(degenerate, img, factor)`: `degenerate + factor · (img − degenerate)`
/// in single precision, truncated (and clipped when extrapolating).
fn blend(degenerate: &RgbImage, img: &RgbImage, factor: f64) -> RgbImage {
    let alpha = (1.0 + factor) as f32;
    let mut out = img.clone();
    for (o, (&d, &v)) in out
        .iter_mut()
        .zip(degenerate.as_raw().iter().zip(img.as_raw()))
    {
        let t = d as f32 + alpha * (v as f32 - d as f32);
        *o = if (0.0..=1.0).contains(&alpha) {
            t as u8
        } else if t <= 0.0 {
            0
        } else if t >= 255.0 {
            255
        } else {
            t as u8
        };
    }
    out
}

/// PIL's RGB → L conversion (ITU-R 601-2 luma in 16-bit fixed point, rounded).
fn luma(p: [u8; 3]) -> u8 {
    ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
}

/// The image in grey, as `convert("L").convert("RGB")`.
fn grey(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        p.0 = [luma(p.0); 3];
    }
    out
}

/// `int(ImageStat.Stat(img.convert("L")).mean[0] + 0.5)`.
fn luma_mean(img: &RgbImage) -> u8 {
    let n = (img.width() as u64 * img.height() as u64).max(1);
    let sum: u64 = img.pixels().map(|p| luma(p.0) as u64).sum();
    (sum as f64 / n as f64 + 0.5) as u8
}

/// PIL's `ImageFilter.SMOOTH` (3×3, centre 5, others 1, divided by 13, single precision,
/// rounded; the outer ring of pixels copied unchanged).
fn smooth(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    if w < 3 || h < 3 {
        return out;
    }
    let k = [1.0f32 / 13.0, 5.0 / 13.0];
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let mut px = [0u8; 3];
            for (c, slot) in px.iter_mut().enumerate() {
                let mut s = 0f32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let v = img.get_pixel(x + dx - 1, y + dy - 1).0[c] as f32;
                        s += v * if dx == 1 && dy == 1 { k[1] } else { k[0] };
                    }
                }
                *slot = (s + 0.5).clamp(0.0, 255.0) as u8; // PIL rounds here
            }
            out.put_pixel(x, y, image::Rgb(px));
        }
    }
    out
}

fn map_values(img: &RgbImage, f: impl Fn(u8) -> u8) -> RgbImage {
    let mut out = img.clone();
    out.iter_mut().for_each(|v| *v = f(*v));
    out
}

/// Applies `lut_of(histogram of channel c)` to each channel.
fn per_channel_lut(img: &RgbImage, lut_of: fn(&[u64; 256]) -> [u8; 256]) -> RgbImage {
    let mut out = img.clone();
    for c in 0..3 {
        let mut hist = [0u64; 256];
        img.pixels().for_each(|p| hist[p.0[c] as usize] += 1);
        let lut = lut_of(&hist);
        out.pixels_mut().for_each(|p| p.0[c] = lut[p.0[c] as usize]);
    }
    out
}

/// `ImageOps.autocontrast(cutoff=0)` for one channel.
fn autocontrast_lut(hist: &[u64; 256]) -> [u8; 256] {
    let mut lut = std::array::from_fn(|i| i as u8);
    let lo = hist.iter().position(|&n| n > 0);
    let hi = hist.iter().rposition(|&n| n > 0);
    if let (Some(lo), Some(hi)) = (lo, hi)
        && hi > lo
    {
        let scale = 255.0 / (hi - lo) as f64;
        let offset = -(lo as f64) * scale;
        for (i, v) in lut.iter_mut().enumerate() {
            *v = ((i as f64 * scale + offset) as i64).clamp(0, 255) as u8;
        }
    }
    lut
}

/// `ImageOps.equalize` for one channel.
fn equalize_lut(hist: &[u64; 256]) -> [u8; 256] {
    let mut lut = std::array::from_fn(|i| i as u8);
    let used: Vec<u64> = hist.iter().copied().filter(|&n| n > 0).collect();
    if used.len() <= 1 {
        return lut;
    }
    let step = (used.iter().sum::<u64>() - used[used.len() - 1]) / 255;
    if step == 0 {
        return lut;
    }
    let mut n = step / 2;
    for (i, v) in lut.iter_mut().enumerate() {
        *v = (n / step).min(255) as u8;
        n += hist[i];
    }
    lut
}

/// A policy by name: `trivial` (TrivialAugmentWide), `rand` (RandAugment's defaults), or
/// timm's `rand-m{magnitude}-n{ops}` (either part may be left out).
///
/// ```
/// use grafter_data::AutoAugment;
///
/// let parse = |name: &str| name.parse::<AutoAugment>().unwrap();
/// assert_eq!(parse("trivial"), AutoAugment::trivial_augment_wide());
/// assert_eq!(parse("rand"), AutoAugment::rand_augment());
/// assert_eq!(parse("rand-m7-n3"), AutoAugment::RandAugment { ops: 3, magnitude: 7, bins: 31 });
/// assert!("rand-m40".parse::<AutoAugment>().is_err()); // beyond the 31 bins
/// assert!("auto".parse::<AutoAugment>().is_err());
/// ```
impl std::str::FromStr for AutoAugment {
    type Err = crate::DataError;

    fn from_str(s: &str) -> Result<Self, crate::DataError> {
        Self::parse(s).map_err(crate::DataError::Config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_torchvision_magnitudes() {
        for op in AugmentOp::ALL {
            assert_eq!(AugmentOp::from_name(op.name()), Some(op));
        }
        // TrivialAugmentWide, 31 bins
        let m = |op: AugmentOp, bin| op.magnitude(bin, 31, 100, 50, true);
        assert_eq!(m(AugmentOp::Rotate, 30), 135.0);
        assert_eq!(m(AugmentOp::Posterize, 0), 8.0);
        assert_eq!(m(AugmentOp::Posterize, 30), 2.0);
        assert_eq!(m(AugmentOp::Solarize, 0), 255.0);
        assert_eq!(m(AugmentOp::Solarize, 30), 0.0);
        // RandAugment: translation relative to the image, posterize down to 4 bits
        let r = |op: AugmentOp, bin| op.magnitude(bin, 31, 331, 662, false);
        assert!((r(AugmentOp::TranslateX, 30) - 150.0).abs() < 1e-4);
        assert!((r(AugmentOp::TranslateY, 30) - 300.0).abs() < 1e-3);
        assert_eq!(r(AugmentOp::Posterize, 30), 4.0);
    }

    #[test]
    fn quarter_turn_and_integer_shift_move_pixels_exactly() {
        let img = RgbImage::from_fn(5, 5, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let r = AugmentOp::Rotate.apply(&img, 90.0);
        // counter-clockwise: the top row becomes the left column, bottom to top
        assert_eq!(r.get_pixel(0, 4).0, [0, 0, 7]);
        assert_eq!(r.get_pixel(0, 0).0, [4, 0, 7]);
        let t = AugmentOp::TranslateX.apply(&img, 2.0);
        assert_eq!(t.get_pixel(2, 1).0, [0, 1, 7]);
        assert_eq!(t.get_pixel(1, 1).0, [0, 0, 0]);
    }
}
