//! One writer per run folder: [`RunLock`], an advisory lock on `run.lock` inside the folder.
//!
//! Two runs writing one folder would prune each other's checkpoints and interleave their
//! logs. The lock is the operating system's (`flock` on Unix, `LockFileEx` on Windows,
//! through [`File::try_lock`]): it belongs to the open file, so it is released when the run
//! ends, panics or is killed with `kill -9` — a crashed run never leaves a stale lock that
//! would need cleaning by hand. Two runs in one process conflict as two processes do, since
//! each opens the file anew.
//!
//! The file stays after the run: removing it on release would let a waiting run lock the
//! removed file while a third locks a new one, both believing they are alone.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::{GrafterError, Result};

/// The lock file's name inside a run folder.
pub(crate) const LOCK_FILE: &str = "run.lock";

/// Holds the lock of a run folder until dropped.
#[derive(Debug)]
pub(crate) struct RunLock {
    /// The open lock file: closing it releases the lock.
    _file: File,
}

impl RunLock {
    /// Creates `dir` if needed and locks it for this run, recording this process's id and
    /// host in the lock file for whoever is refused next.
    ///
    /// # Errors
    ///
    /// [`GrafterError::RunInUse`] naming the folder (and the holder, as it recorded itself)
    /// when another run holds it; [`GrafterError::Io`] when the folder or file cannot be made.
    /// A file system without locks (some network mounts) is not an error: the run goes on
    /// unguarded, with a warning.
    pub(crate) fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| GrafterError::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        // not truncated on open: the holder's record is read when the lock is refused
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| GrafterError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(GrafterError::RunInUse {
                    path: dir.to_path_buf(),
                    holder: holder(&mut file),
                });
            }
            Err(TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                log::warn!(
                    "{}: this file system has no file locks; nothing stops a second run from \
                     writing the same folder",
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => return Err(GrafterError::io(&path, e)),
        }
        record_holder(&mut file).map_err(|e| GrafterError::io(&path, e))?;
        Ok(Self { _file: file })
    }
}

/// Writes `pid <id> on <host>` over the lock file's content (only the holder writes).
fn record_holder(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "pid {} on {}", std::process::id(), host())?;
    file.flush()
}

/// What the holder recorded, when it is readable text.
fn holder(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.take(256).read_to_string(&mut text).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// This machine's name, as far as it can be had without a system call binding: two hosts
/// sharing a folder over the network are told apart by it.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "an unknown host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_folder_and_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run-001");
        let first = RunLock::acquire(&run).unwrap();
        let err = RunLock::acquire(&run).unwrap_err();
        let GrafterError::RunInUse { path, holder } = &err else {
            panic!("{err}");
        };
        assert_eq!(path, &run);
        let pid = format!("pid {}", std::process::id());
        assert!(holder.as_deref().is_some_and(|h| h.starts_with(&pid)));
        let text = err.to_string();
        assert!(text.contains("run-001") && text.contains(&pid), "{text}");
        drop(first);
        let _again = RunLock::acquire(&run).unwrap();
        assert!(run.join(LOCK_FILE).is_file());
    }
}
