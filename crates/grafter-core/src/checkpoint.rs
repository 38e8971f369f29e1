//! Crash-safe files: every write goes to a temporary name and is renamed into place, so a
//! reader sees the old file or the new one, never half of one.
//!
//! A run directory holds `checkpoints/epoch-NNNN/` (model, optimiser, state) and a `latest`
//! file naming the newest complete one. `latest` is rewritten only after a checkpoint is
//! entirely on disk: a crash or a failing write during a checkpoint leaves `latest` on the
//! previous, intact one.

use std::fmt::Debug;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{GrafterError, Result};

/// The file operations of a run folder: whole-file writes, renames, directory syncs and
/// removals. The default [`FsWriter`] writes and fsyncs; tests inject writers that fail or
/// kill the process at a chosen operation (the kill -9 soak), which is why renames and
/// removals go through here too.
pub trait FileWriter: Send + Sync + Debug {
    /// Writes `bytes` as the complete content of `path` (which does not exist yet).
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;

    /// Moves the file or folder `from` to `to`, replacing a file at `to`: the step that makes
    /// a written file visible under its name. [`fs::rename`] by default.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    /// Removes the folder `dir` with everything in it (an old checkpoint being pruned).
    /// [`fs::remove_dir_all`] by default.
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    /// Makes the entries of directory `dir` durable (a file renamed into it, a folder created
    /// in it): without this a power cut after a rename may bring back the old name even though
    /// the file's own data was synced. [`sync_dir`] by default.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sync_dir(dir)
    }
}

/// fsyncs the directory `dir` (on Unix; elsewhere directories cannot be opened for it and this
/// does nothing). A file system that does not sync directories (some network and FUSE file
/// systems answer `EINVAL`) is not an error: there is nothing more to do there.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        match fs::File::open(dir).and_then(|d| d.sync_all()) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Plain file system writes, flushed to disk before returning.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsWriter;

impl FileWriter for FsWriter {
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = fs::File::create(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    }
}

fn tmp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically and durably: temporary file (synced), rename, then
/// the parent directory synced, so that after a crash `path` holds either its old content or
/// the new one, and after this returns the new one survives a power cut.
pub fn write_atomic(writer: &dyn FileWriter, path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => {
            fs::create_dir_all(parent).map_err(|e| GrafterError::io(parent, e))?;
            parent
        }
        None => Path::new("."),
    };
    let tmp = tmp_name(path);
    let _ = fs::remove_file(&tmp);
    if let Err(e) = writer.write(&tmp, bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(GrafterError::io(path, e));
    }
    writer.rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        GrafterError::io(path, e)
    })?;
    writer
        .sync_dir(parent)
        .map_err(|e| GrafterError::io(parent, e))
}

/// File names inside a checkpoint directory.
pub mod files {
    /// The model's parameters (Burn burnpack record, parameter ids included).
    pub const MODEL: &str = "model.bpk";
    /// The optimiser's state (Burn burnpack record).
    pub const OPTIMIZER: &str = "optimizer.bpk";
    /// Epoch, step, history, best value, early-stopping counter, seed (JSON).
    pub const STATE: &str = "state.json";
    /// The weight average of a run that keeps one (Burn burnpack record, parameter ids
    /// included).
    pub const EMA: &str = "ema.bpk";
}

/// A run's directory of checkpoints.
#[derive(Clone, Debug)]
pub struct CheckpointDir {
    root: PathBuf,
    writer: Arc<dyn FileWriter>,
    keep: usize,
}

impl CheckpointDir {
    /// Checkpoints under `root/checkpoints`, keeping the newest `keep` (at least 1).
    pub fn new(root: impl Into<PathBuf>, writer: Arc<dyn FileWriter>, keep: usize) -> Self {
        Self {
            root: root.into(),
            writer,
            keep: keep.max(1),
        }
    }

    /// The run directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The writer used for every file of the run.
    pub fn writer(&self) -> &dyn FileWriter {
        self.writer.as_ref()
    }

    fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    fn latest_file(&self) -> PathBuf {
        self.root.join("latest")
    }

    /// Name of the checkpoint written after `epochs_done` epochs.
    pub fn name(epochs_done: usize) -> String {
        format!("epoch-{epochs_done:04}")
    }

    /// Writes a complete checkpoint, then points `latest` at it. Returns its directory.
    pub fn save(&self, epochs_done: usize, items: &[(&str, &[u8])]) -> Result<PathBuf> {
        let name = Self::name(epochs_done);
        let dir = self.checkpoints();
        fs::create_dir_all(&dir).map_err(|e| GrafterError::io(&dir, e))?;
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(|e| GrafterError::io(&tmp, e))?;
        for (file, bytes) in items {
            let path = tmp.join(file);
            if let Err(e) = self.writer.write(&path, bytes) {
                let _ = fs::remove_dir_all(&tmp);
                return Err(GrafterError::io(path, e));
            }
        }
        // The files' entries, then the checkpoint's own entry, are durable before `latest`
        // names it.
        let sync = |d: &Path| self.writer.sync_dir(d).map_err(|e| GrafterError::io(d, e));
        sync(&tmp)?;
        let final_dir = dir.join(&name);
        if final_dir.exists() {
            (self.writer.remove_dir(&final_dir)).map_err(|e| GrafterError::io(&final_dir, e))?;
        }
        (self.writer.rename(&tmp, &final_dir)).map_err(|e| GrafterError::io(&final_dir, e))?;
        sync(&dir)?;
        write_atomic(self.writer.as_ref(), &self.latest_file(), name.as_bytes())?;
        self.prune(&name);
        Ok(final_dir)
    }

    /// Removes old checkpoints beyond `keep`, and leftovers of interrupted writes.
    fn prune(&self, latest: &str) {
        let Ok(entries) = fs::read_dir(self.checkpoints()) else {
            return;
        };
        let mut complete = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                let _ = self.writer.remove_dir(&entry.path());
            } else if name.starts_with("epoch-") && name.as_str() <= latest {
                complete.push(name);
            }
        }
        complete.sort();
        let excess = complete.len().saturating_sub(self.keep);
        for name in &complete[..excess] {
            let _ = self.writer.remove_dir(&self.checkpoints().join(name));
        }
    }

    /// Finishes what a crash cut short: removes the temporary files `.NAME.tmp-PID` at the
    /// run's root (a log or `latest` being replaced) and temporary checkpoint folders, and
    /// prunes the checkpoints beyond `keep` (a crash between `latest` and the prune left one
    /// too many). Returns the bytes of temporaries freed. For the holder of the folder's lock
    /// only, before it writes: a live writer's temporary files look the same.
    pub fn remove_interrupted_writes(&self) -> u64 {
        let mut freed = 0;
        for dir in [self.root.clone(), self.checkpoints()] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if is_temporary(&entry.file_name().to_string_lossy()) {
                    let path = entry.path();
                    let bytes = disk_bytes(&path);
                    let removed = if path.is_dir() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                    if removed.is_ok() {
                        freed += bytes;
                    }
                }
            }
        }
        if let Ok(Some(latest)) = self.latest()
            && let Some(name) = latest.file_name()
        {
            self.prune(&name.to_string_lossy());
        }
        freed
    }

    /// The complete checkpoints to resume from, best first: the one `latest` names, then the
    /// older kept ones, newest first (a resume falls back to them when the newest cannot be
    /// read). Empty when the run has no checkpoint yet.
    pub fn resumable(&self) -> Result<Vec<PathBuf>> {
        let Some(latest) = self.latest()? else {
            return Ok(Vec::new());
        };
        let newest = latest.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut older: Vec<String> = fs::read_dir(self.checkpoints())
            .map_err(|e| GrafterError::io(self.checkpoints(), e))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("epoch-") && Some(n) < newest.as_ref())
            .filter(|n| {
                let dir = self.checkpoints().join(n);
                [files::MODEL, files::OPTIMIZER, files::STATE]
                    .iter()
                    .all(|f| dir.join(f).is_file())
            })
            .collect();
        older.sort();
        let mut all = vec![latest];
        all.extend(older.iter().rev().map(|n| self.checkpoints().join(n)));
        Ok(all)
    }

    /// The newest complete checkpoint, if any.
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        let file = self.latest_file();
        let name = match fs::read_to_string(&file) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(GrafterError::io(file, e)),
        };
        if !name.starts_with("epoch-") || name.contains(['/', '\\']) {
            return Err(GrafterError::checkpoint(
                file,
                format!("names '{name}', which is not a checkpoint"),
            ));
        }
        let dir = self.checkpoints().join(&name);
        for f in [files::MODEL, files::OPTIMIZER, files::STATE] {
            if !dir.join(f).is_file() {
                return Err(GrafterError::checkpoint(&dir, format!("{f} is missing")));
            }
        }
        Ok(Some(dir))
    }
}

/// Whether `name` is one of [`tmp_name`]'s or [`CheckpointDir::save`]'s temporary names:
/// `.NAME.tmp-PID`.
fn is_temporary(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// The bytes of the file, or of every file under the folder, at `path`.
fn disk_bytes(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| disk_bytes(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| GrafterError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct FailOn(&'static str);

    impl FileWriter for FailOn {
        fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            if path.to_string_lossy().contains(self.0) {
                // leave a partial file behind, like a crash mid-write would
                fs::write(path, &bytes[..bytes.len() / 2])?;
                return Err(io::Error::other("disk full (simulated)"));
            }
            FsWriter.write(path, bytes)
        }
    }

    /// Records every write and directory sync, with whether the synced directory then held
    /// what the caller renamed into it.
    #[derive(Debug, Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    impl FileWriter for Recorder {
        fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            let name = path.file_name().unwrap().to_string_lossy();
            self.0.lock().unwrap().push(format!("write {name}"));
            FsWriter.write(path, bytes)
        }

        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            let mut entries: Vec<String> = fs::read_dir(dir)?
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect();
            entries.sort();
            let name = dir.file_name().unwrap().to_string_lossy();
            let line = format!("sync {name}: {}", entries.join(" "));
            self.0.lock().unwrap().push(line);
            sync_dir(dir)
        }
    }

    #[test]
    fn renames_are_followed_by_a_sync_of_their_directory() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        let recorder = Arc::new(Recorder::default());
        write_atomic(recorder.as_ref(), &run.join("config.json"), b"{}").unwrap();
        let checkpoints = CheckpointDir::new(&run, recorder.clone(), 2);
        checkpoints
            .save(1, &[(files::MODEL, b"m"), (files::STATE, b"s")])
            .unwrap();
        let log = recorder.0.lock().unwrap().clone();
        let tmp = format!(".epoch-0001.tmp-{}", std::process::id());
        assert_eq!(
            log,
            [
                format!("write .config.json.tmp-{}", std::process::id()),
                "sync run: config.json".into(),
                "write model.bpk".into(),
                "write state.json".into(),
                format!("sync {tmp}: model.bpk state.json"),
                "sync checkpoints: epoch-0001".into(),
                format!("write .latest.tmp-{}", std::process::id()),
                "sync run: checkpoints config.json latest".into(),
            ]
        );
        assert!(sync_dir(root.path()).is_ok());
    }

    #[test]
    fn atomic_write_keeps_old_content_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        write_atomic(&FsWriter, &path, b"old").unwrap();
        let err = write_atomic(&FailOn("metrics"), &path, b"new content").unwrap_err();
        assert!(err.to_string().contains("metrics.jsonl"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left behind"
        );
    }

    #[test]
    fn failed_checkpoint_leaves_latest_on_previous() {
        let dir = tempfile::tempdir().unwrap();
        let good = CheckpointDir::new(dir.path(), Arc::new(FsWriter), 3);
        let items =
            |s: &'static [u8]| vec![(files::MODEL, s), (files::OPTIMIZER, s), (files::STATE, s)];
        good.save(1, &items(b"one")).unwrap();
        let bad = CheckpointDir::new(dir.path(), Arc::new(FailOn("optimizer")), 3);
        assert!(bad.save(2, &items(b"two")).is_err());
        let latest = good.latest().unwrap().unwrap();
        assert!(latest.ends_with("epoch-0001"));
        assert_eq!(fs::read(latest.join(files::MODEL)).unwrap(), b"one");
        assert!(!dir.path().join("checkpoints/epoch-0002").exists());
    }

    #[test]
    fn keeps_only_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let ck = CheckpointDir::new(dir.path(), Arc::new(FsWriter), 2);
        for e in 1..=4 {
            let b: &[u8] = b"x";
            ck.save(
                e,
                &[(files::MODEL, b), (files::OPTIMIZER, b), (files::STATE, b)],
            )
            .unwrap();
        }
        let mut names: Vec<String> = fs::read_dir(dir.path().join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["epoch-0003", "epoch-0004"]);
    }

    #[test]
    fn corrupt_latest_pointer_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("latest"), "../../etc").unwrap();
        let ck = CheckpointDir::new(dir.path(), Arc::new(FsWriter), 2);
        let err = ck.latest().unwrap_err();
        assert!(matches!(err, GrafterError::Checkpoint { .. }), "{err}");
    }
}
