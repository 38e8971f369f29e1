//! Loader throughput: images/s decoded + transformed to 224×224 from Food-101-like JPEGs
//! (~512 px, generated here), and the resize engines compared.
//!
//! `benches/run_loader_comparison.sh` runs this and `benches/loader_reference.py` (the same
//! work with PIL + numpy, 2 worker processes) on the same files and prints the ratio.
//! The images go to `$GRAFTER_BENCH_IMAGES` (default `target/bench-images`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{Criterion, Throughput};
use grafter_core::Interpolation;
use grafter_core::Preprocess;
use grafter_core::source::{DataSource, EpochRequest};
use grafter_data::image::{Rgb, RgbImage};
use grafter_data::{Augment, ImageDataset, ImageLoader, ResizeEngine, resize_rgb8};

const IMAGES: usize = 96;
const THREADS: usize = 2;
const BATCH: usize = 32;

/// A photo-like 512×384 (or 384×512) picture: gradients, texture, edges — JPEG ~60 KB.
fn photo(i: usize) -> RgbImage {
    let (w, h) = if i.is_multiple_of(3) {
        (384, 512)
    } else {
        (512, 384)
    };
    let mut state = i as u32 * 2_654_435_761;
    RgbImage::from_fn(w, h, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % 24) as i32 - 12;
        let r = 128.0 + 100.0 * ((x as f32) / (20.0 + i as f32)).sin() * ((y as f32) / 33.0).cos();
        let g = 255.0 * x as f32 / w as f32;
        let b = if (x / 40 + y / 30) % 2 == 0 {
            60.0
        } else {
            190.0
        };
        let px = |v: f32| (v as i32 + n).clamp(0, 255) as u8;
        Rgb([px(r), px(g), px(b)])
    })
}

fn images_dir() -> PathBuf {
    std::env::var_os("GRAFTER_BENCH_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-images"))
}

/// Writes the JPEGs once (two classes, image-folder layout).
fn ensure_images(dir: &Path) {
    let marker = dir.join(format!(".complete-{IMAGES}"));
    if marker.exists() {
        return;
    }
    for i in 0..IMAGES {
        let class = dir.join(format!("class{}", i % 2));
        std::fs::create_dir_all(&class).unwrap();
        let mut bytes = Vec::new();
        let mut enc =
            grafter_data::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90);
        enc.encode_image(&photo(i)).unwrap();
        std::fs::write(class.join(format!("{i:04}.jpg")), bytes).unwrap();
    }
    std::fs::write(marker, "").unwrap();
}

fn loader(dir: &Path, augment: bool) -> ImageLoader {
    let ds = ImageDataset::image_folder(dir).unwrap();
    let l = ImageLoader::new(ds, Preprocess::imagenet())
        .threads(THREADS)
        .prefetch(4);
    if augment {
        l.augment(Augment::standard())
    } else {
        l
    }
}

fn pass(l: &ImageLoader, train: bool, epoch: usize) -> usize {
    let req = EpochRequest {
        epoch,
        seed: 1,
        batch_size: BATCH,
        train,
    };
    l.batches(req).map(|b| b.unwrap().shape[0]).sum()
}

fn main() {
    let dir = images_dir();
    ensure_images(&dir);
    let mut c = Criterion::default().configure_from_args();

    let src = photo(1);
    let mut g = c.benchmark_group("resize 512x384 -> 341x256 bilinear");
    g.throughput(Throughput::Elements(1));
    for engine in [ResizeEngine::FastImageResize, ResizeEngine::ImageCrate] {
        g.bench_function(format!("{engine:?}"), |b| {
            b.iter(|| resize_rgb8(&src, None, 341, 256, Interpolation::Bilinear, engine))
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("loader {THREADS} threads, 224px"));
    g.throughput(Throughput::Elements(IMAGES as u64));
    g.sample_size(10);
    for (name, train) in [("eval", false), ("train", true)] {
        let l = loader(&dir, train);
        let mut epoch = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                epoch += 1;
                pass(&l, train, epoch)
            })
        });
    }
    g.finish();
    c.final_summary();

    // Plain numbers for run_loader_comparison.sh: best of 3 full passes.
    let mut rates = Vec::new();
    for train in [true, false] {
        let l = loader(&dir, train);
        let best = (0..3)
            .map(|e| {
                let t = Instant::now();
                let n = pass(&l, train, e);
                n as f64 / t.elapsed().as_secs_f64()
            })
            .fold(0.0, f64::max);
        rates.push(best);
    }
    println!(
        "RUST_IMAGES_PER_SEC train={:.1} eval={:.1}",
        rates[0], rates[1]
    );
}
