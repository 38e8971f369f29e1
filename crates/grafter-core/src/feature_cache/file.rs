//! Where a feature cache keeps its values: in memory, or in a file written once (atomically)
//! and then memory-mapped.
//!
//! File layout: the values (f32 or f16, little-endian, view-major then sample-major), then
//! the JSON [`Header`], then the header's length (u64 LE) and the magic `GRFTFC01`. The header
//! at the end lets the values be streamed to disk while they are computed.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::sync_dir;
use crate::{GrafterError, Result};

const MAGIC: &[u8; 8] = b"GRFTFC01";

/// Number format of a cache file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CachePrecision {
    /// 4 bytes per value, exact.
    #[default]
    F32,
    /// 2 bytes per value: half the disk and page cache, ~3 significant digits (fine for
    /// training a head, not for bit-exact comparisons).
    F16,
}

impl CachePrecision {
    fn width(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }
}

/// Where the features live.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum CacheStorage {
    /// In a `Vec<f32>` (exact; as large as the features).
    #[default]
    Memory,
    /// In a file, written once, then memory-mapped (the OS pages it in and out).
    File {
        /// The cache file (written atomically: temporary name, then rename).
        path: PathBuf,
        /// Number format.
        precision: CachePrecision,
    },
}

/// What a cache holds, stored at the end of a cache file (after the values).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Header {
    pub samples: usize,
    pub views: usize,
    pub feature_shape: [usize; 3],
    pub num_classes: usize,
    pub precision: CachePrecision,
    pub classes: Option<Vec<usize>>,
    pub multi_hot: Option<Vec<f32>>,
    pub fingerprint: String,
}

impl Header {
    /// Whether the header can be served without an index going out of bounds.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.views == 0 || self.samples == 0 {
            return Err(format!(
                "{} views of {} samples (both must be at least 1)",
                self.views, self.samples
            ));
        }
        if self.feature_shape.contains(&0) {
            return Err(format!("feature shape {:?}", self.feature_shape));
        }
        match (&self.classes, &self.multi_hot) {
            (Some(c), None) => {
                if c.len() != self.samples {
                    return Err(format!("{} labels for {} samples", c.len(), self.samples));
                }
                if let Some(bad) = c.iter().find(|&&l| l >= self.num_classes) {
                    return Err(format!(
                        "label {bad} is out of range for {} classes",
                        self.num_classes
                    ));
                }
            }
            (None, Some(m)) => {
                if Some(m.len()) != self.samples.checked_mul(self.num_classes) {
                    return Err(format!(
                        "{} multi-hot values for {} samples of {} classes",
                        m.len(),
                        self.samples,
                        self.num_classes
                    ));
                }
            }
            _ => return Err("the labels are missing or given twice".into()),
        }
        Ok(())
    }

    /// Values per sample and view.
    pub fn per_sample(&self) -> usize {
        self.feature_shape.iter().product()
    }
}

/// The values of a built or opened cache.
#[derive(Debug)]
pub(super) enum Values {
    Memory(Vec<f32>),
    Mapped(memmap2::Mmap, CachePrecision),
}

impl Values {
    /// Appends the `per` values starting at value `start` to `out`.
    pub fn copy(&self, start: usize, per: usize, out: &mut Vec<f32>) {
        match self {
            Values::Memory(v) => out.extend_from_slice(&v[start..start + per]),
            Values::Mapped(map, CachePrecision::F32) => out.extend(
                map[start * 4..(start + per) * 4]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            Values::Mapped(map, CachePrecision::F16) => out.extend(
                map[start * 2..(start + per) * 2]
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
        }
    }

    /// Bytes held in memory (a mapped file's pages belong to the OS).
    pub fn resident_bytes(&self) -> usize {
        match self {
            Values::Memory(v) => v.len() * 4,
            Values::Mapped(..) => 0,
        }
    }
}

/// Opens the cache file `path`, refusing it when its fingerprint is not `fingerprint` (which
/// must not be empty) or its header does not describe its contents.
pub(super) fn open(path: &Path, fingerprint: &str) -> Result<(Values, Header)> {
    let bad = |reason: String| GrafterError::feature_cache(path, reason);
    if fingerprint.is_empty() {
        return Err(bad("an empty fingerprint cannot tell a stale feature cache from a fresh one: pass what the cache was built from".into()));
    }
    let io = |e| GrafterError::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len < 16 {
        return Err(bad("not a grafter feature cache (too short)".into()));
    }
    let mut tail = [0u8; 16];
    file.seek(SeekFrom::End(-16)).map_err(io)?;
    file.read_exact(&mut tail).map_err(io)?;
    if &tail[8..] != MAGIC {
        return Err(bad("not a grafter feature cache (bad magic)".into()));
    }
    let header_len = u64::from_le_bytes(tail[..8].try_into().unwrap_or_default());
    if header_len.checked_add(16).is_none_or(|end| end > len) {
        return Err(bad(format!(
            "corrupt feature cache (header length {header_len} in a file of {len} bytes)"
        )));
    }
    let mut json = vec![0u8; header_len as usize];
    file.seek(SeekFrom::End(-16 - header_len as i64))
        .map_err(io)?;
    file.read_exact(&mut json).map_err(io)?;
    let header: Header = serde_json::from_slice(&json)
        .map_err(|e| bad(format!("corrupt feature cache header: {e}")))?;
    if header.fingerprint != fingerprint {
        return Err(bad(format!(
            "feature cache built from '{}', not '{fingerprint}': rebuild it",
            header.fingerprint
        )));
    }
    header
        .check()
        .map_err(|e| bad(format!("corrupt feature cache: {e}")))?;
    let data_len = header
        .feature_shape
        .iter()
        .map(|&d| d as u64)
        .chain([
            header.samples as u64,
            header.views as u64,
            header.precision.width(),
        ])
        .try_fold(1u64, |acc, d| acc.checked_mul(d));
    if data_len.and_then(|d| d.checked_add(header_len + 16)) != Some(len) {
        return Err(bad("corrupt feature cache (size mismatch)".into()));
    }
    // SAFETY: the file is ours (written atomically, then only read); a concurrent
    // truncation by another process is the documented hazard of any memory map.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok((Values::Mapped(map, header.precision), header))
}

/// A temporary file, removed on drop unless [`kept`](Self::keep) (a failed build leaves
/// nothing behind).
pub(super) struct TempFile(Option<PathBuf>);

impl TempFile {
    pub fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A new temporary file beside `path`, named after it, this process and a counter, created
/// exclusively: two builders of the same cache (threads or processes) never share one.
fn unique_temp(path: &Path) -> Result<(File, PathBuf)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cache".into());
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.{}-{n}.partial", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(GrafterError::io(&tmp, e)),
        }
    }
}

/// Where computed features go while a cache is built.
pub(super) enum Sink {
    Memory(Vec<f32>),
    File {
        path: PathBuf,
        tmp: TempFile,
        writer: BufWriter<File>,
        precision: CachePrecision,
    },
}

impl Sink {
    pub fn new(storage: &CacheStorage) -> Result<Self> {
        Ok(match storage {
            CacheStorage::Memory => Sink::Memory(Vec::new()),
            CacheStorage::File { path, precision } => {
                let (file, tmp) = unique_temp(path)?;
                Sink::File {
                    path: path.clone(),
                    tmp: TempFile(Some(tmp)),
                    writer: BufWriter::with_capacity(1 << 20, file),
                    precision: *precision,
                }
            }
        })
    }

    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        match self {
            Sink::Memory(v) => v.extend_from_slice(values),
            Sink::File {
                writer,
                precision,
                tmp,
                ..
            } => {
                let bytes: Vec<u8> = match precision {
                    CachePrecision::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    CachePrecision::F16 => values
                        .iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                        .collect(),
                };
                writer
                    .write_all(&bytes)
                    .map_err(|e| GrafterError::io(tmp.path(), e))?;
            }
        }
        Ok(())
    }

    /// The values, once the header is known: a file is completed, synced, renamed into
    /// place (its folder synced too) and mapped.
    pub fn finish(self, header: &Header) -> Result<Values> {
        match self {
            Sink::Memory(v) => Ok(Values::Memory(v)),
            Sink::File {
                path,
                tmp,
                mut writer,
                precision,
            } => {
                let json = serde_json::to_vec(header)
                    .map_err(|e| GrafterError::feature_cache(&path, e))?;
                let io = |e| GrafterError::io(tmp.path(), e);
                writer.write_all(&json).map_err(io)?;
                writer
                    .write_all(&(json.len() as u64).to_le_bytes())
                    .map_err(io)?;
                writer.write_all(MAGIC).map_err(io)?;
                let file = writer
                    .into_inner()
                    .map_err(|e| GrafterError::io(tmp.path(), e.into_error()))?;
                file.sync_all().map_err(io)?;
                drop(file);
                std::fs::rename(tmp.path(), &path).map_err(|e| GrafterError::io(&path, e))?;
                tmp.keep();
                if let Some(dir) = path.parent() {
                    let dir = if dir.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        dir
                    };
                    sync_dir(dir).map_err(|e| GrafterError::io(dir, e))?;
                }
                let file = File::open(&path).map_err(|e| GrafterError::io(&path, e))?;
                // SAFETY: see `open`.
                let map =
                    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| GrafterError::io(&path, e))?;
                Ok(Values::Mapped(map, precision))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_builders_never_share_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CacheStorage::File {
            path: dir.path().join("cache.bin"),
            precision: CachePrecision::F32,
        };
        let (a, b) = (Sink::new(&storage).unwrap(), Sink::new(&storage).unwrap());
        let (Sink::File { tmp: ta, .. }, Sink::File { tmp: tb, .. }) = (&a, &b) else {
            panic!("file sinks expected");
        };
        assert_ne!(ta.path(), tb.path());
        assert!(ta.path().exists() && tb.path().exists());
        let (pa, pb) = (ta.path().to_path_buf(), tb.path().to_path_buf());
        drop((a, b));
        assert!(
            !pa.exists() && !pb.exists(),
            "an unfinished build leaves nothing"
        );
    }
}
