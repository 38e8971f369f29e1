//! torchvision's `RandomErasing` (Zhong et al. 2017): with probability `p`, one rectangle of
//! the normalised image is overwritten — the last step of torchvision's and timm's ImageNet
//! training recipes, after normalisation, so a constant `0` is the dataset mean.

use rand::Rng;

/// What an erased rectangle is filled with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EraseValue {
    /// One value for every channel (torchvision's default `0`: the mean colour).
    Constant(f32),
    /// Independent standard-normal values per pixel and channel (torchvision's
    /// `value="random"`, timm's `mode="pixel"`).
    Random,
}

/// torchvision's `RandomErasing` parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomErasing {
    /// Probability of erasing (torchvision: 0.5; timm's recipes: 0.25).
    pub p: f64,
    /// Range of the erased area as a fraction of the image (default `(0.02, 0.33)`).
    pub scale: (f64, f64),
    /// Range of the rectangle's height / width, drawn log-uniformly (default `(0.3, 3.3)`).
    pub ratio: (f64, f64),
    /// The fill.
    pub value: EraseValue,
}

impl Default for RandomErasing {
    fn default() -> Self {
        Self {
            p: 0.5,
            scale: (0.02, 0.33),
            ratio: (0.3, 3.3),
            value: EraseValue::Constant(0.0),
        }
    }
}

impl RandomErasing {
    /// torchvision's defaults with probability `p` (timm's recipes: 0.25).
    pub fn with_p(p: f64) -> Self {
        Self {
            p,
            ..Self::default()
        }
    }

    /// The rectangle `[top, left, height, width]` to erase in an `height × width` image, or
    /// `None` (not drawn with probability `1 − p`, or no fitting rectangle in 10 tries — then
    /// torchvision leaves the image as it is too).
    pub fn params(&self, height: usize, width: usize, rng: &mut impl Rng) -> Option<[usize; 4]> {
        if rng.random::<f64>() >= self.p {
            return None;
        }
        let area = (height * width) as f64;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let erase = area * rng.random_range(self.scale.0..=self.scale.1);
            let aspect = rng.random_range(lr0..=lr1).exp();
            let h = (erase * aspect).sqrt().round() as usize;
            let w = (erase / aspect).sqrt().round() as usize;
            if !(h < height && w < width) {
                continue;
            }
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return Some([top, left, h, w]);
        }
        None
    }

    /// Erases (maybe) one rectangle of `x`, a normalised `[channels, height, width]` image.
    pub fn apply(
        &self,
        x: &mut [f32],
        channels: usize,
        height: usize,
        width: usize,
        rng: &mut impl Rng,
    ) {
        debug_assert_eq!(x.len(), channels * height * width);
        let Some([top, left, h, w]) = self.params(height, width, rng) else {
            return;
        };
        for c in 0..channels {
            for y in top..top + h {
                let row = &mut x[(c * height + y) * width + left..][..w];
                match self.value {
                    EraseValue::Constant(v) => row.fill(v),
                    EraseValue::Random => row.iter_mut().for_each(|v| *v = normal(rng)),
                }
            }
        }
    }
}

/// A standard-normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // in (0, 1]: ln is finite
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn rectangles_follow_torchvisions_ranges_and_probability() {
        let e = RandomErasing::default();
        let (h, w) = (64, 48);
        let mut rng = StdRng::seed_from_u64(5);
        let mut erased = 0;
        for _ in 0..4000 {
            let Some([top, left, eh, ew]) = e.params(h, w, &mut rng) else {
                continue;
            };
            erased += 1;
            assert!(top + eh <= h && left + ew <= w);
            assert!(eh < h && ew < w && eh > 0 && ew > 0);
            // rounding of each side moves the area and ratio a little past the drawn ones
            let frac = (eh * ew) as f64 / (h * w) as f64;
            assert!((0.01..=0.40).contains(&frac), "{frac}");
            let ratio = eh as f64 / ew as f64;
            assert!((0.2..=4.5).contains(&ratio), "{ratio}");
        }
        // p = 0.5, minus the rare draws with no fitting rectangle
        assert!((1700..=2100).contains(&erased), "{erased}");
    }

    #[test]
    fn random_fill_is_standard_normal() {
        let mut rng = StdRng::seed_from_u64(2);
        let v: Vec<f64> = (0..20_000).map(|_| normal(&mut rng) as f64).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }

    #[test]
    fn only_the_rectangle_changes_and_takes_the_value() {
        let e = RandomErasing {
            p: 1.0,
            value: EraseValue::Constant(-7.0),
            ..RandomErasing::default()
        };
        let (c, h, w) = (3, 20, 30);
        let orig: Vec<f32> = (0..c * h * w).map(|i| i as f32).collect();
        let mut x = orig.clone();
        let rect = e.params(h, w, &mut StdRng::seed_from_u64(1)).unwrap();
        e.apply(&mut x, c, h, w, &mut StdRng::seed_from_u64(1));
        let [top, left, eh, ew] = rect;
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    let i = (ch * h + y) * w + xx;
                    let inside = (top..top + eh).contains(&y) && (left..left + ew).contains(&xx);
                    assert_eq!(
                        x[i],
                        if inside { -7.0 } else { orig[i] },
                        "({ch}, {y}, {xx})"
                    );
                }
            }
        }
    }
}
