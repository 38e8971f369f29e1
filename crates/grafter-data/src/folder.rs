//! The image-folder layout: `root/<class>/<image>`, one sub-folder per class.

use std::path::{Path, PathBuf};

use crate::scan::has_image_extension;
use crate::{BadFiles, ClassNames, DataError, FoundAt, ImageDataset, Result};

impl ImageDataset {
    /// Scans `root`, whose sub-folders are the classes (sorted by name, as torchvision's
    /// `ImageFolder`), each holding that class's images.
    ///
    /// Only the direct children of a class folder are read (no recursion). Anything else is
    /// reported in [`bad_files`](Self::bad_files) with its reason: files beside the class
    /// folders, unknown extensions, directories or symlink loops named like images, empty,
    /// unreadable or non-image files, absurd dimensions.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # for (class, n) in [("cat", 2), ("dog", 1)] {
    /// #     std::fs::create_dir(dir.path().join(class)).unwrap();
    /// #     for i in 0..n {
    /// #         image::RgbImage::new(4, 4).save(dir.path().join(class).join(format!("{i}.png"))).unwrap();
    /// #     }
    /// # }
    /// let ds = grafter_data::ImageDataset::image_folder(dir.path()).unwrap();
    /// assert_eq!(ds.classes().names(), ["cat", "dog"]);
    /// assert_eq!(ds.len(), 3);
    /// ```
    pub fn image_folder(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let mut bad = BadFiles::default();
        let mut class_dirs = Vec::new();
        for path in sorted_children(root)? {
            let name = file_name(&path);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() && !name.starts_with('.') => class_dirs.push(path),
                Ok(m) if m.is_dir() => bad.push(&path, "hidden folder, not a class", FoundAt::Scan),
                Ok(_) => bad.push(&path, "file outside the class folders", FoundAt::Scan),
                Err(e) => bad.push(
                    &path,
                    format!("cannot read file metadata: {e}"),
                    FoundAt::Scan,
                ),
            }
        }
        if class_dirs.is_empty() {
            return Err(DataError::format(root, "no class sub-folder"));
        }
        let classes = ClassNames::new(class_dirs.iter().map(|p| file_name(p)).collect())?;
        let mut candidates = Vec::new();
        for (label, dir) in class_dirs.iter().enumerate() {
            for path in sorted_children(dir)? {
                if !has_image_extension(&path) {
                    let reason = match path.extension().and_then(|e| e.to_str()) {
                        Some(ext) => format!("unknown extension '.{ext}'"),
                        None => "no file extension".into(),
                    };
                    bad.push(&path, reason, FoundAt::Scan);
                    continue;
                }
                candidates.push((label, path));
            }
        }
        Self::single_label_from_candidates(root, root.to_path_buf(), candidates, classes, bad)
    }
}

/// Entries of `dir`, sorted by file name (so datasets do not depend on the file system's
/// listing order).
pub(crate) fn sorted_children(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        out.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
