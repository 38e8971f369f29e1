//! The cheap scan-time check of one file: metadata and image header, no pixel decoded.

use std::io::BufReader;
use std::path::Path;

use image::ImageReader;
use rayon::prelude::*;

use crate::decode::DecodeLimits;
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
/// format and sane dimensions. The reason in words otherwise.
pub(crate) fn check_file(path: &Path, limits: &DecodeLimits) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read file metadata: {e}"))?;
    if meta.is_dir() {
        return Err("is a directory, not an image file".into());
    }
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() == 0 {
        return Err("empty file (0 bytes)".into());
    }
    if meta.len() > limits.max_file_bytes {
        return Err(format!(
            "file of {} bytes is above the limit of {} bytes",
            meta.len(),
            limits.max_file_bytes
        ));
    }
    let file = crate::decode::open_regular(path)?;
    let reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    if reader.format().is_none() {
        return Err("not an image (content matches no supported format)".into());
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| format!("unreadable image header: {e}"))?;
    limits.check(w, h)
}

/// Checks `paths` in parallel; the index and reason of each bad one, in input order.
pub(crate) fn check_all(paths: &[&Path], limits: &DecodeLimits) -> Vec<Option<String>> {
    paths
        .par_iter()
        .map(|p| check_file(p, limits).err())
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
