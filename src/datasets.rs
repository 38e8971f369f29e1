//! Public data sets fetched by the library: Food-101 (found, or downloaded and extracted with
//! path checks), else grafter's synthetic demo set in the same layout, said loudly.
//!
//! ```no_run
//! use grafter::datasets::{Food101, Food101Source};
//!
//! // data/food-101 if it is there, else the demo set (48 train + 16 test images per class).
//! let data = Food101::default().locate()?;
//! println!("{} ({})", data.root.display(), if data.is_demo() { "demo" } else { "real" });
//! # Ok::<(), grafter::datasets::DatasetError>(())
//! ```

use std::path::{Path, PathBuf};

use grafter_data::archive::extract_tar;
use grafter_data::{DataError, demo};
use grafter_zoo::ZooError;
use grafter_zoo::download::{Downloader, verify_md5};

/// The official archive (ETH Zürich, Bossard et al. 2014), as torchvision's `Food101` uses.
pub const FOOD101_URL: &str = "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz";

/// The archive's MD5, the only digest its publisher gives (torchvision checks the same). The
/// archive comes over plain http, so this is what stands between a corrupted or truncated
/// transfer and five gigabytes extracted from it.
pub const FOOD101_MD5: &str = "85eeb15f3717b99a5da872d97d918f87";

/// Why a data set could not be found, fetched or generated.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The download failed (network, checksum, disk).
    #[error(transparent)]
    Download(#[from] ZooError),
    /// The folder, the archive or the demo set could not be read or written.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The folder given is not in the layout of the data set.
    #[error("{}: {reason}", path.display())]
    Layout {
        /// The folder.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
}

/// Where Food-101 is looked for, and what stands in for it when it is not there.
#[derive(Clone, Debug)]
pub struct Food101 {
    /// A folder the user named (holding `images/` and `meta/`): used or refused, never
    /// replaced by the demo set.
    pub dir: Option<PathBuf>,
    /// The folder that holds `food-101/` (and the archive while downloading); default `data`.
    pub data_dir: PathBuf,
    /// Download and extract the archive (about 5 GB) into `data_dir` when it is not there.
    pub download: bool,
    /// Demo set: training images per class (its test list gets a third, at least 2).
    pub demo_per_class: usize,
    /// Seed of the demo set's drawings.
    pub seed: u64,
}

impl Default for Food101 {
    fn default() -> Self {
        Self {
            dir: None,
            data_dir: PathBuf::from("data"),
            download: false,
            demo_per_class: 48,
            seed: 42,
        }
    }
}

/// Which Food-101 folder to train on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Food101Source {
    /// The real data set, found or downloaded.
    Real,
    /// grafter's synthetic demo set in the Food-101 layout.
    Demo,
}

/// The folder found by [`Food101::locate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Food101Data {
    /// The folder holding `images/` and `meta/`.
    pub root: PathBuf,
    /// Real or demo.
    pub source: Food101Source,
}

impl Food101Data {
    /// Whether this is the synthetic demo set.
    pub fn is_demo(&self) -> bool {
        self.source == Food101Source::Demo
    }

    /// One line for logs and `run.json`.
    pub fn describe(&self) -> String {
        match self.source {
            Food101Source::Real => format!("Food-101 layout at {}", self.root.display()),
            Food101Source::Demo => format!(
                "EMBEDDED DEMO SET (synthetic drawings in the Food-101 layout) at {}",
                self.root.display()
            ),
        }
    }
}

impl Food101 {
    /// `dir` if given (refused when it is not a Food-101 folder), else `data_dir/food-101`
    /// (downloaded first when `download` is set), else the demo set, written once under
    /// `data_dir/food101-demo` and announced on stderr with how to get the real data.
    pub fn locate(&self) -> Result<Food101Data, DatasetError> {
        let default = self.data_dir.join("food-101");
        let root = self.dir.clone().unwrap_or_else(|| default.clone());
        let real = |root: PathBuf| Food101Data {
            root,
            source: Food101Source::Real,
        };
        if is_food101(&root) {
            return Ok(real(root));
        }
        if let Some(dir) = &self.dir {
            return Err(DatasetError::Layout {
                path: dir.clone(),
                reason: "not a Food-101 folder (no meta/classes.txt); pass the folder that \
                         holds images/ and meta/"
                    .into(),
            });
        }
        if self.download {
            return Ok(real(download_food101(&self.data_dir)?));
        }
        let (train, test) = (self.demo_per_class, self.demo_per_class.div_ceil(3).max(2));
        let demo_root =
            demo::food101_demo(self.data_dir.join("food101-demo"), train, test, self.seed)?;
        eprintln!(
            "data: Food-101 not found at {}.\n      Using the EMBEDDED DEMO SET instead: {} \
             synthetic \"dishes\" drawn by grafter ({train} train + {test} test images per \
             class, Food-101 layout) in {}.\n      For the real thing: download it (about 5 GB; \
             the food101 example's --download) or pass a folder holding an extracted food-101/.",
            root.display(),
            demo::CLASSES.len(),
            demo_root.display()
        );
        Ok(Food101Data {
            root: demo_root,
            source: Food101Source::Demo,
        })
    }
}

fn is_food101(root: &Path) -> bool {
    root.join("meta/classes.txt").is_file()
}

/// Downloads (resuming a partial download), checks against [`FOOD101_MD5`] and extracts
/// Food-101 (about 5 GB) under `data_dir`; returns the folder holding `images/` and `meta/`.
/// An archive that fails the check is deleted (the next run downloads it again) and the
/// error names it. The archive is extracted
/// into a staging folder with path checks and renamed into place, so an interrupted run
/// never leaves half a data set where the next run would take it for whole.
pub fn download_food101(data_dir: &Path) -> Result<PathBuf, DatasetError> {
    let root = data_dir.join("food-101");
    let archive = data_dir.join("food-101.tar.gz");
    eprintln!(
        "downloading Food-101 (about 5 GB) from {FOOD101_URL} to {}",
        archive.display()
    );
    Downloader::new()
        .progress(true)
        .retries(5)
        .download(FOOD101_URL, &archive, None)?;
    eprintln!("checking {} against its published MD5…", archive.display());
    verified_or_removed(&archive, FOOD101_MD5)?;
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
    if !is_food101(&inner) {
        return Err(DatasetError::Layout {
            path: archive,
            reason: "the archive does not hold food-101/meta/classes.txt".into(),
        });
    }
    std::fs::rename(&inner, &root).map_err(|e| DataError::Io {
        path: root.clone(),
        source: e,
    })?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(root)
}

/// Checks a downloaded archive against its published MD5; one that fails is removed, so that
/// the download cache never serves it again.
fn verified_or_removed(archive: &Path, md5: &str) -> Result<(), DatasetError> {
    verify_md5(archive, md5).map(drop).map_err(|e| {
        let _ = std::fs::remove_file(archive);
        e.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_that_fails_its_md5_is_refused_by_name_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("food-101.tar.gz");
        std::fs::write(&archive, b"abc").unwrap();
        // MD5("abc"), RFC 1321's test suite.
        verified_or_removed(&archive, "900150983CD24FB0D6963F7D28E17F72").unwrap();
        assert!(archive.exists(), "a matching archive is kept");

        let err = verified_or_removed(&archive, FOOD101_MD5).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("food-101.tar.gz"), "{text}");
        assert!(text.contains(FOOD101_MD5), "{text}");
        assert!(text.contains("900150983cd24fb0d6963f7d28e17f72"), "{text}");
        assert!(!archive.exists(), "a corrupted archive is removed");
    }
}
