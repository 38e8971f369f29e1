//! Which data to train on: the real Food-101 (found, or downloaded and extracted with path
//! checks), else the synthetic demo set in the same layout, said loudly.

use std::path::{Path, PathBuf};

use grafter::data_pipeline::archive::extract_tar;
use grafter::data_pipeline::demo;
use grafter::zoo::download::Downloader;

/// The official archive (ETH Zürich, Bossard et al. 2014), as torchvision's `Food101` uses.
const URL: &str = "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz";

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The Food-101 folder to use and whether it is the demo set: `--data`, else data/food-101
/// (downloaded first with `--download`), else the demo set under data/food101-demo.
pub fn data(
    dir: Option<&Path>,
    download: bool,
    per_class: Option<usize>,
    seed: u64,
) -> AnyResult<(PathBuf, bool)> {
    let default = PathBuf::from("data/food-101");
    let root = dir.map_or(default.clone(), Path::to_path_buf);
    if download && dir.is_none() && !default.join("meta/classes.txt").exists() {
        return Ok((food101(Path::new("data"))?, false));
    }
    if root.join("meta/classes.txt").exists() {
        eprintln!("data: Food-101 layout at {}", root.display());
        return Ok((root, false));
    }
    if dir.is_some() {
        let why = "not a Food-101 folder (no meta/classes.txt); pass the folder that holds images/ and meta/";
        return Err(format!("{}: {why}", root.display()).into());
    }
    let (train, test) = (
        per_class.unwrap_or(48),
        per_class.unwrap_or(48).div_ceil(3).max(2),
    );
    let demo_root = demo::food101_demo("data/food101-demo", train, test, seed)?;
    eprintln!("data: Food-101 not found at {}.", root.display());
    eprintln!(
        "      Using the EMBEDDED DEMO SET instead: {} synthetic \"dishes\" drawn by grafter \
         ({train} train + {test} test images per class, Food-101 layout) in {}.",
        demo::CLASSES.len(),
        demo_root.display()
    );
    eprintln!(
        "      For the real thing: cargo run --release --example food101 -- --download   \
         (or --data DIR with an extracted food-101/)"
    );
    Ok((demo_root, true))
}

/// Downloads (resuming a partial download) and extracts Food-101 (about 5 GB) under
/// `data_dir`; returns the folder holding `images/` and `meta/`.
fn food101(data_dir: &Path) -> AnyResult<PathBuf> {
    let root = data_dir.join("food-101");
    let archive = data_dir.join("food-101.tar.gz");
    eprintln!(
        "downloading Food-101 (about 5 GB) from {URL} to {}",
        archive.display()
    );
    Downloader::new()
        .progress(true)
        .retries(5)
        .download(URL, &archive, None)?;
    let staging = data_dir.join("food-101.extract");
    eprintln!("extracting {} (takes a few minutes)…", archive.display());
    let out = extract_tar(&archive, &staging)?;
    eprintln!(
        "extracted {} files ({:.1} GB)",
        out.files,
        out.bytes as f64 / 1e9
    );
    // The archive holds a single top-level `food-101/` folder.
    let inner = staging.join("food-101");
    if !inner.join("meta/classes.txt").exists() {
        let why = "the archive does not hold food-101/meta/classes.txt";
        return Err(format!("{}: {why}", archive.display()).into());
    }
    std::fs::rename(&inner, &root).map_err(|e| format!("{}: {e}", root.display()))?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(root)
}
