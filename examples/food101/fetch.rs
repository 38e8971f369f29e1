//! Getting the real Food-101: the official archive, resumable and checked, then extracted
//! with path checks (an entry may not escape the target folder).

use std::path::{Path, PathBuf};

use grafter::data_pipeline::archive::extract_tar;
use grafter::zoo::download::Downloader;

/// The official archive (ETH Zürich, Bossard et al. 2014), as torchvision's `Food101` uses.
const URL: &str = "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz";
/// Size published by torchvision's dataset code comment (4.65 GiB); shown before starting.
const SIZE: &str = "about 5 GB";

/// Downloads (resuming a partial download) and extracts Food-101 under `data_dir`; returns
/// the folder holding `images/` and `meta/`.
pub fn food101(data_dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let root = data_dir.join("food-101");
    if root.join("meta/classes.txt").exists() {
        return Ok(root);
    }
    let archive = data_dir.join("food-101.tar.gz");
    eprintln!(
        "downloading Food-101 ({SIZE}) from {URL} to {}",
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
        return Err(format!(
            "{}: the archive does not hold food-101/meta/classes.txt",
            archive.display()
        )
        .into());
    }
    std::fs::rename(&inner, &root).map_err(|e| format!("{}: {e}", root.display()))?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(root)
}
