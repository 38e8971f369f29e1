//! Where the workspace lies, for the test binaries of the root package and of its crates alike
//! (each knows only its own package's folder).

use std::path::{Path, PathBuf};

/// The workspace root: the nearest folder at or above the test binary's package that holds
/// `crates/`.
pub fn root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|p| p.join("crates").is_dir())
        .unwrap_or(here)
        .to_path_buf()
}
