//! MixUp and CutMix with timm's semantics (`timm.data.Mixup`): per batch, per pair or per
//! sample, each image mixed with its mirror in the batch (`i` with `n − 1 − i`), the targets
//! mixed with the same weights — soft targets that [`Task::loss`](crate::Task::loss) already
//! takes, label smoothing included (it is linear, so smoothing then mixing is timm's
//! `mixup_target`).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use grafter_core::mixup::{MixMode, Mixup};
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! let device = Device::flex();
//! let images = Tensor::<4>::ones([4, 3, 8, 8], &device);
//! let targets = Tensor::<2>::eye(4, &device);
//! let mixup = Mixup::timm().with_mode(MixMode::Elem);
//! let draws = mixup.draw(4, 8, 8, &mut StdRng::seed_from_u64(0));
//! let (mixed, soft) = mixup.apply(images, targets, &draws);
//! assert_eq!(mixed.dims(), [4, 3, 8, 8]);
//! // every row of the mixed targets still sums to one
//! let sums = soft.sum_dim(1).into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
//! assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6));
//! ```

use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which samples share one draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum MixMode {
    /// One λ (and one box) for the whole batch.
    #[default]
    Batch,
    /// One per mirrored pair `(i, n − 1 − i)`.
    Pair,
    /// One per sample.
    Elem,
}

/// timm's `Mixup` settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mixup {
    /// MixUp's Beta(α, α); 0 turns MixUp off.
    pub mixup_alpha: f64,
    /// CutMix's Beta(α, α); 0 turns CutMix off.
    pub cutmix_alpha: f64,
    /// CutMix box side as a fraction of the image drawn from this range instead of from λ.
    pub cutmix_minmax: Option<(f64, f64)>,
    /// Probability that a batch (pair, sample) is mixed at all.
    pub prob: f64,
    /// With both on, the probability of CutMix rather than MixUp.
    pub switch_prob: f64,
    /// Which samples share a draw.
    pub mode: MixMode,
    /// λ from the CutMix box's actual area (after clipping at the border), as timm does.
    pub correct_lam: bool,
}

impl Mixup {
    /// timm's ImageNet recipes: MixUp 0.8, CutMix 1.0, always on, half and half, per batch.
    pub fn timm() -> Self {
        Self {
            mixup_alpha: 0.8,
            cutmix_alpha: 1.0,
            cutmix_minmax: None,
            prob: 1.0,
            switch_prob: 0.5,
            mode: MixMode::Batch,
            correct_lam: true,
        }
    }

    /// The same with `mode`.
    pub fn with_mode(mut self, mode: MixMode) -> Self {
        self.mode = mode;
        self
    }

    /// The draws for a batch of `n` images of `height × width`, one per sample (samples of
    /// one batch or pair share theirs).
    pub fn draw(&self, n: usize, height: usize, width: usize, rng: &mut impl Rng) -> Vec<Mix> {
        match self.mode {
            MixMode::Batch => vec![self.draw_one(height, width, rng); n],
            MixMode::Elem => (0..n).map(|_| self.draw_one(height, width, rng)).collect(),
            MixMode::Pair => {
                let half: Vec<Mix> = (0..n.div_ceil(2))
                    .map(|_| self.draw_one(height, width, rng))
                    .collect();
                (0..n).map(|i| half[i.min(n - 1 - i)]).collect()
            }
        }
    }

    /// timm's `_params_per_batch` (and the box of `cutmix_bbox_and_lam`) for one draw.
    fn draw_one(&self, height: usize, width: usize, rng: &mut impl Rng) -> Mix {
        let (mix_on, cut_on) = (self.mixup_alpha > 0.0, self.cutmix_alpha > 0.0);
        if !(mix_on || cut_on) || rng.random::<f64>() >= self.prob {
            return Mix::NONE;
        }
        let cutmix = match (mix_on, cut_on) {
            (true, true) => rng.random::<f64>() < self.switch_prob,
            (false, true) => true,
            _ => false,
        };
        let alpha = if cutmix {
            self.cutmix_alpha
        } else {
            self.mixup_alpha
        };
        let lam = beta(alpha, rng);
        if !cutmix {
            return Mix { lam, cut: None };
        }
        let (h, w) = (height as i64, width as i64);
        // randint(lo, hi): hi exclusive, an empty range is its low end
        let mut randint = |lo: i64, hi: i64| {
            if hi > lo {
                rng.random_range(lo..hi)
            } else {
                lo
            }
        };
        let bbox = match self.cutmix_minmax {
            // rand_bbox_minmax: box sides drawn from the range, the box inside the image
            Some((lo, hi)) => {
                let cut_h = randint((h as f64 * lo) as i64, (h as f64 * hi) as i64);
                let cut_w = randint((w as f64 * lo) as i64, (w as f64 * hi) as i64);
                let y0 = randint(0, h - cut_h);
                let x0 = randint(0, w - cut_w);
                [y0, y0 + cut_h, x0, x0 + cut_w].map(|v| v as usize)
            }
            // rand_bbox: a box of (1 − λ) of the area around a random centre, clipped
            None => {
                let ratio = (1.0 - lam).sqrt();
                let (cut_h, cut_w) = ((h as f64 * ratio) as i64, (w as f64 * ratio) as i64);
                let (cy, cx) = (randint(0, h), randint(0, w));
                let clip = |v: i64, hi: i64| v.clamp(0, hi) as usize;
                [
                    clip(cy - cut_h / 2, h),
                    clip(cy + cut_h / 2, h),
                    clip(cx - cut_w / 2, w),
                    clip(cx + cut_w / 2, w),
                ]
            }
        };
        let lam = if self.correct_lam || self.cutmix_minmax.is_some() {
            let area = (bbox[1] - bbox[0]) * (bbox[3] - bbox[2]);
            1.0 - area as f64 / (height * width) as f64
        } else {
            lam
        };
        Mix {
            lam,
            cut: Some(bbox),
        }
    }

    /// Mixes `images [N, C, H, W]` and `targets [N, K]` with their mirrors per `draws`
    /// (one per sample, from [`draw`](Self::draw)).
    pub fn apply(
        &self,
        images: Tensor<4>,
        targets: Tensor<2>,
        draws: &[Mix],
    ) -> (Tensor<4>, Tensor<2>) {
        let [n, _, h, w] = images.dims();
        assert_eq!(draws.len(), n, "one draw per sample");
        if draws.iter().all(|d| d.lam == 1.0) {
            return (images, targets);
        }
        let device = images.device();
        // The weight of each sample's own pixels: λ everywhere for MixUp, 0 inside and 1
        // outside the box for CutMix.
        let mut keep = vec![1f32; n * h * w];
        for (plane, d) in keep.chunks_exact_mut(h * w).zip(draws) {
            match d.cut {
                None => plane.fill(d.lam as f32),
                Some([y0, y1, x0, x1]) => {
                    for row in plane.chunks_exact_mut(w).take(y1).skip(y0) {
                        row[x0..x1].fill(0.0);
                    }
                }
            }
        }
        let keep = Tensor::<4>::from_data(TensorData::new(keep, [n, 1, h, w]), &device);
        let mirror = images.clone().flip([0]);
        let mixed = images * keep.clone() + mirror * keep.neg().add_scalar(1.0);
        let lam: Vec<f32> = draws.iter().map(|d| d.lam as f32).collect();
        let lam = Tensor::<2>::from_data(TensorData::new(lam, [n, 1]), &device);
        let soft = targets.clone() * lam.clone() + targets.flip([0]) * lam.neg().add_scalar(1.0);
        (mixed, soft)
    }
}

/// One sample's draw: its own share `lam` of the result and, for CutMix, the box
/// `[y0, y1, x0, x1]` (exclusive ends) taken from its mirror.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mix {
    /// The weight of the sample's own target (and pixels, for MixUp).
    pub lam: f64,
    /// CutMix's box.
    pub cut: Option<[usize; 4]>,
}

impl Mix {
    /// No mixing.
    pub const NONE: Mix = Mix {
        lam: 1.0,
        cut: None,
    };
}

/// A Beta(α, α) draw: `X / (X + Y)` with `X, Y ~ Gamma(α)`.
pub fn beta(alpha: f64, rng: &mut impl Rng) -> f64 {
    let x = gamma(alpha, rng);
    let y = gamma(alpha, rng);
    if x + y == 0.0 { 0.5 } else { x / (x + y) }
}

/// A Gamma(shape, 1) draw (Marsaglia and Tsang; shape < 1 through `Gamma(shape + 1) · U^(1/shape)`).
fn gamma(shape: f64, rng: &mut impl Rng) -> f64 {
    if shape < 1.0 {
        let u: f64 = 1.0 - rng.random::<f64>();
        return gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let z = normal(rng);
        let v = (1.0 + c * z).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A standard-normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    /// Image `i` is the constant `i`; targets one-hot.
    fn batch(n: usize, h: usize, w: usize, device: &Device) -> (Tensor<4>, Tensor<2>) {
        let px: Vec<f32> = (0..n).flat_map(|i| vec![i as f32; 2 * h * w]).collect();
        (
            Tensor::from_data(TensorData::new(px, [n, 2, h, w]), device),
            Tensor::eye(n, device),
        )
    }

    #[test]
    fn beta_draws_have_the_beta_moments() {
        let mut rng = StdRng::seed_from_u64(1);
        for alpha in [0.2, 0.8, 1.0, 2.0] {
            let v: Vec<f64> = (0..40_000).map(|_| beta(alpha, &mut rng)).collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
            let want = 1.0 / (4.0 * (2.0 * alpha + 1.0));
            assert!((mean - 0.5).abs() < 0.01, "alpha {alpha}: mean {mean}");
            assert!(
                (var - want).abs() < 0.1 * want,
                "alpha {alpha}: var {var} vs {want}"
            );
            assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
        }
    }

    #[test]
    fn mixup_blends_each_image_and_target_with_its_mirror() {
        let device = Device::flex();
        let (n, h, w) = (4, 3, 5);
        let (x, t) = batch(n, h, w, &device);
        let m = Mixup {
            cutmix_alpha: 0.0,
            ..Mixup::timm()
        }
        .with_mode(MixMode::Elem);
        let draws = m.draw(n, h, w, &mut StdRng::seed_from_u64(3));
        let (mx, mt) = m.apply(x, t, &draws);
        let (mx, mt) = (host(mx), host(mt));
        for (i, d) in draws.iter().enumerate() {
            let j = n - 1 - i;
            let want = d.lam as f32 * i as f32 + (1.0 - d.lam as f32) * j as f32;
            let plane = &mx[i * 2 * h * w..(i + 1) * 2 * h * w];
            assert!(plane.iter().all(|v| (v - want).abs() < 1e-5), "sample {i}");
            let row = &mt[i * n..(i + 1) * n];
            let mut expect = vec![0f32; n];
            expect[i] += d.lam as f32;
            expect[j] += 1.0 - d.lam as f32;
            for (a, b) in row.iter().zip(&expect) {
                assert!((a - b).abs() < 1e-6, "sample {i}: {row:?} vs {expect:?}");
            }
        }
    }

    #[test]
    fn cutmix_boxes_come_from_the_mirror_and_lambda_is_their_area() {
        let device = Device::flex();
        let (n, h, w) = (6, 16, 20);
        let m = Mixup {
            mixup_alpha: 0.0,
            ..Mixup::timm()
        }
        .with_mode(MixMode::Pair);
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..20 {
            let (x, t) = batch(n, h, w, &device);
            let draws = m.draw(n, h, w, &mut rng);
            // pairs share their draw
            for i in 0..n {
                assert_eq!(draws[i], draws[n - 1 - i]);
            }
            let (mx, _) = m.apply(x, t, &draws);
            let mx = host(mx);
            for (i, d) in draws.iter().enumerate() {
                let [y0, y1, x0, x1] = d.cut.expect("CutMix only");
                assert!(y0 <= y1 && y1 <= h && x0 <= x1 && x1 <= w);
                let from_mirror = mx[i * 2 * h * w..][..h * w]
                    .iter()
                    .filter(|&&v| v == (n - 1 - i) as f32)
                    .count();
                if i != n - 1 - i {
                    assert_eq!(from_mirror, (y1 - y0) * (x1 - x0), "sample {i}");
                }
                let area = ((y1 - y0) * (x1 - x0)) as f64 / (h * w) as f64;
                assert!((d.lam - (1.0 - area)).abs() < 1e-12, "{d:?}");
            }
        }
    }

    #[test]
    fn no_mixing_when_off_and_the_same_draws_from_the_same_seed() {
        let m = Mixup {
            prob: 0.0,
            ..Mixup::timm()
        };
        let draws = m.draw(8, 4, 4, &mut StdRng::seed_from_u64(0));
        assert!(draws.iter().all(|d| *d == Mix::NONE));
        let m = Mixup::timm().with_mode(MixMode::Elem);
        let a = m.draw(8, 10, 10, &mut StdRng::seed_from_u64(5));
        let b = m.draw(8, 10, 10, &mut StdRng::seed_from_u64(5));
        assert_eq!(a, b);
        // both kinds appear with switch_prob 0.5
        let many = m.draw(200, 10, 10, &mut StdRng::seed_from_u64(6));
        let cut = many.iter().filter(|d| d.cut.is_some()).count();
        assert!((60..=140).contains(&cut), "{cut}");
    }
}
