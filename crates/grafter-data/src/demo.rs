//! A small synthetic image-classification set in the Food-101 layout, drawn on the spot:
//! six "dishes" with real Food-101 class names, as simple procedural pictures.
//!
//! It lets a program do its whole job on a fresh machine without network — the same parser,
//! loader, augmentation, training, evaluation and export as on the real Food-101, only on
//! images drawn here (the food101 example falls back to it, and says so). The classes are
//! easy: a backbone learns them from scratch in a few epochs.
//!
//! ```no_run
//! use grafter_data::{Food101Split, ImageDataset, demo};
//!
//! let root = demo::food101_demo("data/food101-demo", 48, 16, 42)?;
//! let train = ImageDataset::food101(&root, Food101Split::Train)?;
//! assert_eq!(train.classes().len(), demo::CLASSES.len());
//! # Ok::<(), grafter_data::DataError>(())
//! ```

use std::path::{Path, PathBuf};

use image::{ImageFormat, Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{DataError, Result};

/// Classes of the demo set (a subset of Food-101's names).
pub const CLASSES: [&str; 6] = [
    "pizza",
    "sushi",
    "waffles",
    "guacamole",
    "macarons",
    "spaghetti_carbonara",
];

/// Image side of the generated JPEGs (Food-101's are ~512 px; smaller keeps the demo fast).
const SIDE: u32 = 144;

/// Bumped whenever the drawings change, so an old generated set is rebuilt.
const VERSION: u32 = 1;

/// Writes (or reuses) the demo set under `root`: `train` and `test` images per class in the
/// Food-101 layout (`images/<class>/<id>.jpg`, `meta/{classes,train,test}.txt`); returns
/// `root`. A set written earlier with the same arguments is reused; otherwise it is built
/// beside `root` and renamed into place, so an interrupted run never leaves half a set.
pub fn food101_demo(
    root: impl AsRef<Path>,
    train: usize,
    test: usize,
    seed: u64,
) -> Result<PathBuf> {
    let root = root.as_ref();
    let stamp = format!("grafter food101 demo v{VERSION} train={train} test={test} seed={seed}\n");
    let stamp_path = root.join("GENERATED_BY_GRAFTER");
    if std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(root.to_path_buf());
    }
    let partial = root.with_extension("partial");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| DataError::io(&path, e)
    };
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    std::fs::create_dir_all(partial.join("meta")).map_err(io(&partial))?;
    let mut train_list = String::new();
    let mut test_list = String::new();
    for (c, class) in CLASSES.iter().enumerate() {
        let dir = partial.join("images").join(class);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for i in 0..train + test {
            let id = 100_000 + i;
            let mut rng = StdRng::seed_from_u64(seed ^ ((c as u64) << 32) ^ i as u64);
            let img = draw(c, &mut rng);
            let path = dir.join(format!("{id}.jpg"));
            img.save_with_format(&path, ImageFormat::Jpeg)
                .map_err(|e| DataError::io(&path, std::io::Error::other(e)))?;
            let list = if i < train {
                &mut train_list
            } else {
                &mut test_list
            };
            list.push_str(&format!("{class}/{id}\n"));
        }
    }
    for (name, text) in [
        ("meta/classes.txt", CLASSES.join("\n") + "\n"),
        ("meta/train.txt", train_list),
        ("meta/test.txt", test_list),
        ("GENERATED_BY_GRAFTER", stamp),
    ] {
        let path = partial.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(io(root))?;
    }
    std::fs::rename(&partial, root).map_err(io(root))?;
    Ok(root.to_path_buf())
}

fn jitter(rng: &mut StdRng, base: [u8; 3], amount: i32) -> Rgb<u8> {
    Rgb(base.map(|v| (v as i32 + rng.random_range(-amount..=amount)).clamp(0, 255) as u8))
}

/// A plate-like background: a random table colour, a light disc, pixel noise.
fn background(rng: &mut StdRng) -> (RgbImage, f32, f32, f32) {
    let table = jitter(rng, [120, 90, 70], 60);
    let plate = jitter(rng, [225, 225, 220], 25);
    let (cx, cy) = (
        SIDE as f32 * rng.random_range(0.4..0.6),
        SIDE as f32 * rng.random_range(0.4..0.6),
    );
    let r = SIDE as f32 * rng.random_range(0.38..0.48);
    let img = RgbImage::from_fn(SIDE, SIDE, |x, y| {
        let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
        if d < r { plate } else { table }
    });
    (img, cx, cy, r)
}

fn put(img: &mut RgbImage, x: f32, y: f32, c: Rgb<u8>) {
    if x >= 0.0 && y >= 0.0 && (x as u32) < SIDE && (y as u32) < SIDE {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn disc(img: &mut RgbImage, cx: f32, cy: f32, r: f32, c: Rgb<u8>) {
    let (x0, x1) = ((cx - r).floor() as i32, (cx + r).ceil() as i32);
    let (y0, y1) = ((cy - r).floor() as i32, (cy + r).ceil() as i32);
    for y in y0..=y1 {
        for x in x0..=x1 {
            if ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)) <= r * r {
                put(img, x as f32, y as f32, c);
            }
        }
    }
}

/// One picture of class `c`.
fn draw(c: usize, rng: &mut StdRng) -> RgbImage {
    let (mut img, cx, cy, r) = background(rng);
    match c {
        // pizza: golden crust disc, red sauce, pepperoni dots
        0 => {
            disc(&mut img, cx, cy, r * 0.95, jitter(rng, [205, 150, 70], 20));
            disc(&mut img, cx, cy, r * 0.8, jitter(rng, [200, 60, 40], 20));
            for _ in 0..rng.random_range(5..10) {
                let a = rng.random_range(0.0..std::f32::consts::TAU);
                let d = rng.random_range(0.0..r * 0.6);
                let col = jitter(rng, [150, 30, 30], 15);
                disc(&mut img, cx + a.cos() * d, cy + a.sin() * d, r * 0.12, col);
            }
        }
        // sushi: white rice blocks with an orange top and a dark band
        1 => {
            for _ in 0..rng.random_range(2..5) {
                let x = cx + rng.random_range(-r * 0.6..r * 0.3);
                let y = cy + rng.random_range(-r * 0.6..r * 0.4);
                let (w, h) = (r * 0.55, r * 0.3);
                let rice = jitter(rng, [245, 245, 240], 8);
                let fish = jitter(rng, [240, 120, 60], 20);
                let nori = jitter(rng, [25, 35, 25], 8);
                for yy in 0..h as i32 {
                    for xx in 0..w as i32 {
                        let col = if (xx as f32 - w / 2.0).abs() < w * 0.08 {
                            nori
                        } else if (yy as f32) < h * 0.45 {
                            fish
                        } else {
                            rice
                        };
                        put(&mut img, x + xx as f32, y + yy as f32, col);
                    }
                }
            }
        }
        // waffles: golden square with a darker grid
        2 => {
            let s = r * rng.random_range(1.0..1.4);
            let gold = jitter(rng, [220, 170, 80], 20);
            let dark = jitter(rng, [160, 110, 40], 15);
            let step = rng.random_range(7.0..11.0f32);
            for yy in 0..s as i32 {
                for xx in 0..s as i32 {
                    let on = (xx as f32 % step) < 2.5 || (yy as f32 % step) < 2.5;
                    let col = if on { dark } else { gold };
                    put(
                        &mut img,
                        cx - s / 2.0 + xx as f32,
                        cy - s / 2.0 + yy as f32,
                        col,
                    );
                }
            }
        }
        // guacamole: lumpy green mass in a dark bowl
        3 => {
            disc(&mut img, cx, cy, r * 0.9, jitter(rng, [60, 50, 45], 15));
            for _ in 0..60 {
                let a = rng.random_range(0.0..std::f32::consts::TAU);
                let d = rng.random_range(0.0..r * 0.6);
                let col = jitter(rng, [110, 160, 60], 25);
                disc(&mut img, cx + a.cos() * d, cy + a.sin() * d, r * 0.15, col);
            }
        }
        // macarons: small pastel discs with a cream line
        4 => {
            for _ in 0..rng.random_range(3..7) {
                let pastel = [
                    [240, 170, 200],
                    [180, 220, 170],
                    [200, 180, 240],
                    [250, 220, 150],
                ];
                let base = pastel[rng.random_range(0..pastel.len())];
                let (x, y) = (
                    cx + rng.random_range(-r * 0.6..r * 0.6),
                    cy + rng.random_range(-r * 0.6..r * 0.6),
                );
                let rr = r * rng.random_range(0.18..0.26);
                disc(&mut img, x, y, rr, jitter(rng, base, 10));
                for xx in -(rr as i32)..=(rr as i32) {
                    put(&mut img, x + xx as f32, y, Rgb([250, 245, 235]));
                }
            }
        }
        // spaghetti carbonara: pale yellow wavy strands, bacon bits
        _ => {
            for _ in 0..rng.random_range(25..40) {
                let y0 = cy + rng.random_range(-r * 0.7..r * 0.7);
                let phase = rng.random_range(0.0..std::f32::consts::TAU);
                let amp = rng.random_range(2.0..6.0f32);
                let col = jitter(rng, [240, 220, 150], 15);
                for t in 0..(r * 1.4) as i32 {
                    let x = cx - r * 0.7 + t as f32;
                    let y = y0 + amp * (t as f32 * 0.2 + phase).sin();
                    put(&mut img, x, y, col);
                    put(&mut img, x, y + 1.0, col);
                }
            }
            for _ in 0..rng.random_range(4..9) {
                let (x, y) = (
                    cx + rng.random_range(-r * 0.6..r * 0.6),
                    cy + rng.random_range(-r * 0.6..r * 0.6),
                );
                disc(&mut img, x, y, r * 0.07, jitter(rng, [170, 80, 70], 15));
            }
        }
    }
    for p in img.pixels_mut() {
        let n: i32 = rng.random_range(-10..=10);
        p.0 = p.0.map(|v| (v as i32 + n).clamp(0, 255) as u8);
    }
    img
}
