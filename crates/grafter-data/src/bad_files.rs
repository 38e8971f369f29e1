//! The report of skipped files: every bad file with its path and the reason, never silent.

use std::fmt;
use std::path::PathBuf;

/// When a bad file was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoundAt {
    /// While building the dataset (metadata and image header checks; cheap).
    Scan,
    /// While decoding during a pass (the header was fine, the pixels were not, e.g. a
    /// truncated JPEG). The sample is skipped from then on; its batch came out one short.
    Load {
        /// The epoch of the pass that found it.
        epoch: usize,
    },
}

/// One skipped file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadFile {
    /// The file (or the list file and line, for a malformed list entry).
    pub path: PathBuf,
    /// Why it was skipped, in words.
    pub reason: String,
    /// When it was found.
    pub found: FoundAt,
}

impl fmt::Display for BadFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = match self.found {
            FoundAt::Scan => "scan".to_string(),
            FoundAt::Load { epoch } => format!("load, epoch {epoch}"),
        };
        write!(f, "{} ({when}): {}", self.path.display(), self.reason)
    }
}

/// Every file skipped by a dataset scan or a loader, in the order found.
///
/// Bad files are found in two places, by design:
/// * at **scan** time, cheaply: the entry exists, is a regular file (not a directory, not a
///   symlink loop), is readable, is not empty, has a known extension (image folders), its
///   header names a supported format and dimensions within [`DecodeLimits`](crate::DecodeLimits);
/// * at **load** time, what only a full decode reveals (truncated or corrupt pixel data). Such
///   a sample is dropped from its batch, recorded here with the epoch, and skipped in later
///   passes. Call [`ImageDataset::verify`](crate::ImageDataset::verify) to decode everything
///   up front when short batches are not acceptable.
///
/// ```
/// use grafter_data::{BadFiles, FoundAt};
/// let mut report = BadFiles::default();
/// report.push("a.jpg", "empty file (0 bytes)", FoundAt::Scan);
/// assert_eq!(report.len(), 1);
/// assert!(report.summary().contains("a.jpg"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BadFiles {
    entries: Vec<BadFile>,
}

impl BadFiles {
    /// Records one bad file.
    pub fn push(&mut self, path: impl Into<PathBuf>, reason: impl Into<String>, found: FoundAt) {
        self.entries.push(BadFile {
            path: path.into(),
            reason: reason.into(),
            found,
        });
    }

    /// Appends another report.
    pub fn extend(&mut self, other: BadFiles) {
        self.entries.extend(other.entries);
    }

    /// The entries, in the order found.
    pub fn entries(&self) -> &[BadFile] {
        &self.entries
    }

    /// Number of bad files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was skipped.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for `path`, if it was skipped.
    pub fn find(&self, path: impl AsRef<std::path::Path>) -> Option<&BadFile> {
        self.entries.iter().find(|e| e.path == path.as_ref())
    }

    /// Number of files found at load time (each one made a batch one image short).
    pub fn found_at_load(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.found, FoundAt::Load { .. }))
            .count()
    }

    /// A multi-line human summary: the count, then one line per file.
    pub fn summary(&self) -> String {
        if self.entries.is_empty() {
            return "no bad files".into();
        }
        let mut s = format!(
            "{} bad file(s) skipped ({} found while loading):",
            self.entries.len(),
            self.found_at_load()
        );
        for e in &self.entries {
            s.push_str("\n  ");
            s.push_str(&e.to_string());
        }
        s
    }

    /// Logs the summary at `warn` level (nothing when the report is empty).
    pub fn log(&self) {
        if !self.entries.is_empty() {
            log::warn!("{}", self.summary());
        }
    }
}
