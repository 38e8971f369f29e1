//! Run folders numbered like timm's and Ultralytics' (`run-001`, `run-002`, …), so repeated
//! runs of one command never write into each other.

use std::path::{Path, PathBuf};

/// The first `base/run-NNN` that does not exist yet (`run-001` when `base` is new). The
/// folder is not created: [`FineTune::out_dir`](super::FineTune::out_dir) does that, and
/// refuses a folder that already holds a run.
///
/// ```
/// let base = tempfile::tempdir()?;
/// let first = grafter_core::finetune::next_run_dir(base.path());
/// assert_eq!(first, base.path().join("run-001"));
/// std::fs::create_dir(&first)?;
/// assert_eq!(grafter_core::finetune::next_run_dir(base.path()), base.path().join("run-002"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn next_run_dir(base: impl AsRef<Path>) -> PathBuf {
    let base = base.as_ref();
    (1..)
        .map(|i| base.join(format!("run-{i:03}")))
        .find(|p| !p.exists())
        .expect("fewer than usize::MAX runs")
}
