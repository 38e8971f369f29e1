//! The cheap scan-time check of one file: metadata and image header, no pixel decoded.

use std::io::BufReader;
use std::path::Path;

use image::ImageReader;
use rayon::prelude::*;

use crate::decode::{DecodeError, DecodeLimits};
use crate::{BadFiles, FoundAt};

/// File extensions an image folder accepts (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp", "gif"];

/// True when `path` has one of [`IMAGE_EXTENSIONS`].
pub(crate) fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Checks that `path` is a readable, non-empty regular file whose header names a supported
/// format and sane dimensions.
pub(crate) fn check_file(path: &Path, limits: &DecodeLimits) -> Result<(), DecodeError> {
    let meta = std::fs::metadata(path).map_err(|e| DecodeError::Io {
        what: "read file metadata",
        reason: e.to_string(),
    })?;
    if meta.is_dir() {
        return Err(DecodeError::Directory);
    }
    if !meta.is_file() {
        return Err(DecodeError::NotRegularFile { replaced: false });
    }
    if meta.len() == 0 {
        return Err(DecodeError::Empty);
    }
    if meta.len() > limits.max_file_bytes {
        return Err(DecodeError::FileTooLarge {
            len: meta.len(),
            limit: limits.max_file_bytes,
        });
    }
    let file = crate::decode::open_regular(path)?;
    let reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| DecodeError::Io {
            what: "read",
            reason: e.to_string(),
        })?;
    if reader.format().is_none() {
        return Err(DecodeError::NotAnImage);
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| DecodeError::Header(e.to_string()))?;
    limits.check(w, h)
}

/// Checks `paths` in parallel; the index and reason of each bad one, in input order.
pub(crate) fn check_all(paths: &[&Path], limits: &DecodeLimits) -> Vec<Option<String>> {
    paths
        .par_iter()
        .map(|p| check_file(p, limits).err().map(|e| e.to_string()))
        .collect()
}

/// Keeps the entries whose file passes [`check_file`]; reports the others.
pub(crate) fn keep_good<T>(
    entries: Vec<(T, std::path::PathBuf)>,
    limits: &DecodeLimits,
    bad: &mut BadFiles,
) -> Vec<(T, std::path::PathBuf)> {
    let paths: Vec<&Path> = entries.iter().map(|(_, p)| p.as_path()).collect();
    let verdicts = check_all(&paths, limits);
    let mut kept = Vec::with_capacity(entries.len());
    for (entry, verdict) in entries.into_iter().zip(verdicts) {
        match verdict {
            Some(reason) => bad.push(&entry.1, reason, FoundAt::Scan),
            None => kept.push(entry),
        }
    }
    kept
}
