//! Fetching pretrained weights: resumable HTTP(S) downloads, SHA-256 verification, a local
//! cache.
//!
//! A download goes to `<dest>.part` first. If that file already exists (an earlier transfer
//! was cut), the transfer resumes with an HTTP `Range: bytes=N-` request; a server that
//! ignores ranges (answers `200` instead of `206`) simply restarts it from zero. Once complete,
//! the file's SHA-256 is checked against the expected digest (full, or a prefix such as the
//! 8 hex digits of torchvision file names) and only then renamed into place, atomically. A
//! mismatch deletes the `.part` file and returns [`ZooError::Checksum`].
//!
//! When the server cannot be reached at all (offline, DNS failure, connection refused), the
//! error is [`ZooError::Offline`], which names the URL and the exact path where the file can be
//! placed by hand.
//!
//! ```no_run
//! use grafter_zoo::{download::Cache, registry};
//!
//! // $GRAFTER_CACHE, else $XDG_CACHE_HOME/grafter, else ~/.cache/grafter
//! let cache = Cache::from_env()?;
//! let path = cache.fetch(registry::find("resnet18.tv_in1k").unwrap())?;
//! println!("weights at {}", path.display());
//! # Ok::<(), grafter_zoo::ZooError>(())
//! ```

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::ZooError;
use crate::registry::WeightSet;

/// Environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "GRAFTER_CACHE";

/// A configurable downloader: progress bar, automatic resume attempts, timeouts.
#[derive(Clone, Debug)]
pub struct Downloader {
    progress: bool,
    retries: u32,
    connect_timeout: Duration,
    response_timeout: Duration,
    stall_timeout: Duration,
    env_proxy: bool,
}

impl Default for Downloader {
    fn default() -> Self {
        Self {
            progress: true,
            retries: 3,
            connect_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(60),
            env_proxy: true,
        }
    }
}

/// What a finished transfer can be checked against besides its length header.
#[derive(Clone, Copy, Debug)]
struct Check {
    /// The exact size in bytes, when published.
    size: Option<u64>,
    /// Whether a digest will be verified afterwards.
    digest: bool,
}

/// Why one transfer attempt failed.
enum Failure {
    /// Worth another attempt (connection cut mid-body, bad resume): the `.part` is kept.
    Retry(ZooError),
    /// Give up now.
    Fatal(ZooError),
}

impl Downloader {
    /// Progress bar on, 3 automatic resume attempts, 30 s connect, 60 s response and 60 s
    /// stall timeouts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to draw an indicatif progress bar (bytes, rate, ETA) on stderr.
    pub fn progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// How many times a transfer cut mid-way is resumed automatically before giving up (the
    /// `.part` file is kept either way, so a later call resumes it too).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Maximum time to establish a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Maximum time to wait for the response headers once connected.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Longest wait for the next bytes of a body once it has started: a transfer that stalls
    /// longer is cut (the `.part` file is kept and resumed like any cut transfer) instead of
    /// hanging forever. A total body timeout would not do: a 5 GB file may rightly take hours.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Whether to honour the `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` environment
    /// variables (default: yes).
    pub fn env_proxy(mut self, enabled: bool) -> Self {
        self.env_proxy = enabled;
        self
    }

    /// Downloads `url` to `dest`; see [`download`].
    pub fn download(
        &self,
        url: &str,
        dest: &Path,
        expected_sha256: Option<&str>,
    ) -> Result<PathBuf, ZooError> {
        self.download_exact(url, dest, expected_sha256, None)
    }

    /// [`download`](Self::download), also checking the file's exact size in bytes when it is
    /// known: a server announcing another length is refused before any byte is written, a body
    /// that ends short is resumed, and a cached file of another size is fetched again.
    ///
    /// Without a digest and without any length (no `expected_size`, no `Content-Length`, no
    /// chunked encoding), a connection that closes early is indistinguishable from a complete
    /// file: such a transfer is refused rather than cached as complete.
    pub fn download_exact(
        &self,
        url: &str,
        dest: &Path,
        expected_sha256: Option<&str>,
        expected_size: Option<u64>,
    ) -> Result<PathBuf, ZooError> {
        let expected = normalize_expected(expected_sha256)?;
        if let Some(path) = existing_verified(dest, expected.as_deref(), expected_size)? {
            return Ok(path);
        }
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }

        // One download of a given file at a time, across threads and processes.
        let lock_path = sibling(dest, ".lock");
        let lock = lock_exclusive(&lock_path, dest)?;
        // Another holder of the lock may have completed the file meanwhile.
        if let Some(path) = existing_verified(dest, expected.as_deref(), expected_size)? {
            return Ok(path);
        }

        let part = sibling(dest, ".part");
        let agent = self.agent();
        let mut attempt = 0;
        loop {
            let check = Check {
                size: expected_size,
                digest: expected.is_some(),
            };
            match self.transfer(&agent, url, dest, &part, check) {
                Ok(()) => break,
                Err(Failure::Retry(err)) if attempt < self.retries => {
                    attempt += 1;
                    log::warn!("{err}; resuming (attempt {attempt} of {})", self.retries);
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                }
                Err(Failure::Retry(err) | Failure::Fatal(err)) => return Err(err),
            }
        }

        let found = sha256_file(&part).map_err(|e| io_err(&part, e))?;
        match expected.as_deref() {
            Some(expected) if !found.starts_with(expected) => {
                let _ = fs::remove_file(&part);
                return Err(ZooError::Checksum {
                    path: dest.to_path_buf(),
                    algorithm: "sha256",
                    expected: expected.to_string(),
                    found,
                });
            }
            Some(_) => {}
            None => log::warn!(
                "{}: no checksum to verify against (sha256 {found})",
                dest.display()
            ),
        }
        fs::rename(&part, dest).map_err(|e| io_err(dest, e))?;
        write_marker(dest, &found);
        // Safe to remove while held: anyone waiting on it re-checks `dest`, which now exists.
        let _ = fs::remove_file(&lock_path);
        drop(lock);
        Ok(dest.to_path_buf())
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_recv_response(Some(self.response_timeout))
            .timeout_per_read(Some(self.stall_timeout))
            .user_agent(concat!("grafter-zoo/", env!("CARGO_PKG_VERSION")))
            .proxy(if self.env_proxy {
                ureq::Proxy::try_from_env()
            } else {
                None
            })
            .build()
            .into()
    }

    /// One HTTP request, appending to (or restarting) `part`.
    fn transfer(
        &self,
        agent: &ureq::Agent,
        url: &str,
        dest: &Path,
        part: &Path,
        check: Check,
    ) -> Result<(), Failure> {
        let offset = match fs::metadata(part) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Failure::Fatal(io_err(part, e))),
        };
        let mut request = agent.get(url);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let response = request
            .call()
            .map_err(|e| Failure::Fatal(call_error(e, url, dest)))?;

        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let download_err = |reason: String| ZooError::Download {
            url: url.to_string(),
            reason,
        };
        let (start, total) = match status.as_u16() {
            206 => match header("content-range")
                .as_deref()
                .and_then(parse_content_range)
            {
                Some(ContentRange {
                    start: Some(start),
                    total,
                }) if start == offset => (start, total),
                other => {
                    truncate(part)?;
                    return Err(Failure::Retry(download_err(format!(
                        "server answered the resume request at byte {offset} with Content-Range \
                         {other:?}; restarting from zero"
                    ))));
                }
            },
            200 => {
                if offset > 0 {
                    log::info!("{url}: server ignored the Range request, restarting from zero");
                }
                (0, response.body().content_length())
            }
            416 if offset > 0 => {
                let total = header("content-range")
                    .as_deref()
                    .and_then(parse_content_range)
                    .and_then(|r| r.total);
                if total == Some(offset) {
                    // The partial file is already complete.
                    return Ok(());
                }
                truncate(part)?;
                return Err(Failure::Retry(download_err(format!(
                    "server rejected resuming at byte {offset} (HTTP 416); restarting from zero"
                ))));
            }
            _ => {
                return Err(Failure::Fatal(download_err(format!(
                    "HTTP {} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                ))));
            }
        };

        if let (Some(announced), Some(size)) = (total, check.size)
            && announced != size
        {
            return Err(Failure::Fatal(download_err(format!(
                "the server announces {announced} bytes, the file is published as {size} bytes"
            ))));
        }
        let total = total.or(check.size);
        // A chunked body ends with its own terminator (a cut one is a read error); a body
        // delimited only by the connection closing is not.
        let chunked =
            header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if total.is_none() && !chunked && !check.digest {
            return Err(Failure::Fatal(download_err(
                "the server sends neither a length nor a chunked body, and no checksum was                  given: a cut transfer could not be told from a complete file"
                    .into(),
            )));
        }

        let file = if start == 0 {
            File::create(part)
        } else {
            OpenOptions::new().append(true).open(part)
        }
        .map_err(|e| Failure::Fatal(io_err(part, e)))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let bar = self.progress_bar(dest, start, total);
        let mut body = response.into_body().into_reader();
        let mut buf = vec![0u8; 64 * 1024];
        let mut written = start;
        let cut = loop {
            match body.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    out.write_all(&buf[..n])
                        .map_err(|e| Failure::Fatal(io_err(part, e)))?;
                    written += n as u64;
                    bar.set_position(written);
                    if total.is_some_and(|t| written > t) {
                        break None; // refused below, before the disk fills
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e.to_string()),
            }
        };
        let file = out
            .into_inner()
            .map_err(|e| Failure::Fatal(io_err(part, e.into_error())))?;
        file.sync_all()
            .map_err(|e| Failure::Fatal(io_err(part, e)))?;
        if let Some(t) = total.filter(|&t| written > t) {
            truncate(part)?;
            return Err(Failure::Fatal(download_err(format!(
                "the body is longer than the {t} bytes expected ({written} bytes)"
            ))));
        }
        let short = total
            .filter(|&t| written < t)
            .map(|t| format!("got {written} of {t} bytes"));
        if let Some(reason) = cut.or(short) {
            bar.abandon();
            return Err(Failure::Retry(download_err(format!(
                "connection lost after {written} bytes ({reason}); the partial file {} is kept \
                 and the next attempt resumes it",
                part.display()
            ))));
        }
        bar.finish_and_clear();
        Ok(())
    }

    fn progress_bar(&self, dest: &Path, start: u64, total: Option<u64>) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (bar, template) = match total {
            Some(total) => (
                ProgressBar::new(total),
                "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{spinner} {msg} {bytes} {binary_bytes_per_sec}",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(name);
        bar.set_position(start);
        bar.reset_eta();
        bar
    }
}

/// Where pretrained weights are kept: `<root>/<weight set name>/<file name>`.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
    downloader: Downloader,
    offline: bool,
}

impl Cache {
    /// A cache rooted at `root` (created on first download), with the default [`Downloader`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            downloader: Downloader::new(),
            offline: false,
        }
    }

    /// The cache at [`Cache::default_root`].
    pub fn from_env() -> Result<Self, ZooError> {
        Self::default_root().map(Self::new).ok_or_else(|| {
            ZooError::Config(format!(
                "no cache directory: set {CACHE_ENV}, XDG_CACHE_HOME or HOME"
            ))
        })
    }

    /// `$GRAFTER_CACHE` if set, else `$XDG_CACHE_HOME/grafter` (when absolute), else
    /// `~/.cache/grafter`; `None` when none of these is known.
    pub fn default_root() -> Option<PathBuf> {
        resolve_root(
            std::env::var_os(CACHE_ENV),
            std::env::var_os("XDG_CACHE_HOME"),
            dirs::home_dir(),
        )
    }

    /// Uses `downloader` (progress, retries, timeouts) for missing files.
    pub fn with_downloader(mut self, downloader: Downloader) -> Self {
        self.downloader = downloader;
        self
    }

    /// Turns the download progress bar on or off.
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.downloader.progress = progress;
        self
    }

    /// Never downloads: [`fetch`](Self::fetch) returns the cached file or
    /// [`ZooError::Offline`] naming where to place it.
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `weights` is (or will be) stored: `<root>/<name>/<file name>`. Placing a file there
    /// by hand makes [`fetch`](Self::fetch) use it (after checking its hash).
    pub fn path_for(&self, weights: &WeightSet) -> PathBuf {
        let clean = |s: &str| s.replace(['/', '\\', ':'], "_");
        self.root
            .join(clean(weights.name))
            .join(clean(weights.file_name()))
    }

    /// The cached file of `weights` if it is present and verified; never touches the network.
    pub fn cached(&self, weights: &WeightSet) -> Result<Option<PathBuf>, ZooError> {
        let expected = normalize_expected(weights.sha256)?;
        existing_verified(&self.path_for(weights), expected.as_deref(), weights.size)
    }

    /// The local path of `weights`: the cached file if present and verified, otherwise
    /// downloaded (resuming any partial download) and verified first.
    pub fn fetch(&self, weights: &WeightSet) -> Result<PathBuf, ZooError> {
        let dest = self.path_for(weights);
        if self.offline {
            return self.cached(weights)?.ok_or_else(|| ZooError::Offline {
                url: weights.url.to_string(),
                dest,
                reason: "offline: downloads are turned off".into(),
            });
        }
        self.downloader
            .download_exact(weights.url, &dest, weights.sha256, weights.size)
    }
}

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    digest_file::<Sha256>(path)
}

/// The digest `D` of a file, as lowercase hex, read a mebibyte at a time.
fn digest_file<D: Digest>(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(to_hex(&hasher.finalize()))
}

/// MD5 of a file, as lowercase hex. Only for archives whose publisher gives nothing stronger
/// (Food-101: torchvision checks the same MD5): it catches a truncated or corrupted transfer,
/// not a forged file.
pub fn md5_file(path: &Path) -> io::Result<String> {
    digest_file::<md5::Md5>(path)
}

/// Checks `path` against its publisher's MD5 (32 hex digits, any case); returns the digest.
///
/// # Errors
///
/// [`ZooError::Checksum`] naming the file when the digests differ; [`ZooError::Io`]-style
/// errors naming it when it cannot be read.
pub fn verify_md5(path: &Path, expected: &str) -> Result<String, ZooError> {
    let found = md5_file(path).map_err(|e| io_err(path, e))?;
    if found.eq_ignore_ascii_case(expected) {
        Ok(found)
    } else {
        Err(ZooError::Checksum {
            path: path.to_path_buf(),
            algorithm: "md5",
            expected: expected.to_ascii_lowercase(),
            found,
        })
    }
}

/// The lowercase hex SHA-256 of `bytes` (what [`sha256_file`] gives for a file holding them).
pub(crate) fn sha256_bytes(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Checks `path` against an expected SHA-256 (full digest or prefix, any case); returns the
/// full digest found.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<String, ZooError> {
    let expected = normalize_expected(Some(expected))?.unwrap_or_default();
    let found = sha256_file(path).map_err(|e| io_err(path, e))?;
    if found.starts_with(&expected) {
        Ok(found)
    } else {
        Err(ZooError::Checksum {
            path: path.to_path_buf(),
            algorithm: "sha256",
            expected,
            found,
        })
    }
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Lowercases and validates an expected digest: 1 to 64 hex digits.
fn normalize_expected(expected: Option<&str>) -> Result<Option<String>, ZooError> {
    let Some(raw) = expected else {
        return Ok(None);
    };
    let hex = raw.trim().to_ascii_lowercase();
    if hex.is_empty() || hex.len() > 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ZooError::Config(format!(
            "invalid expected sha256 {raw:?}: want 1 to 64 hex digits"
        )));
    }
    Ok(Some(hex))
}

/// `dest` if it exists and matches `expected` (anything goes when `None`). A mismatching file
/// is left in place (the download will replace it) and reported in the log.
fn existing_verified(
    dest: &Path,
    expected: Option<&str>,
    size: Option<u64>,
) -> Result<Option<PathBuf>, ZooError> {
    let meta = match fs::metadata(dest) {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            return Err(ZooError::Config(format!(
                "{} exists and is not a file",
                dest.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(dest, e)),
    };
    if let Some(size) = size.filter(|&s| s != meta.len()) {
        log::warn!(
            "{}: {} bytes where {size} are expected; downloading it again",
            dest.display(),
            meta.len()
        );
        return Ok(None);
    }
    let Some(expected) = expected else {
        return Ok(Some(dest.to_path_buf()));
    };
    if marker_confirms(dest, &meta, expected) {
        return Ok(Some(dest.to_path_buf()));
    }
    let found = sha256_file(dest).map_err(|e| io_err(dest, e))?;
    if found.starts_with(expected) {
        write_marker(dest, &found);
        Ok(Some(dest.to_path_buf()))
    } else {
        log::warn!(
            "{}: sha256 {found} does not start with {expected}; downloading it again",
            dest.display()
        );
        Ok(None)
    }
}

/// The verification marker `<dest>.sha256` ("<hex digest> <size>") spares re-hashing a large
/// file on every cache hit. It is trusted only if newer than the file and of the same size.
fn marker_confirms(dest: &Path, meta: &fs::Metadata, expected: &str) -> bool {
    let marker = sibling(dest, ".sha256");
    let (Ok(text), Ok(marker_meta)) = (fs::read_to_string(&marker), fs::metadata(&marker)) else {
        return false;
    };
    let fresh = match (marker_meta.modified(), meta.modified()) {
        (Ok(m), Ok(f)) => m >= f,
        _ => false,
    };
    let mut fields = text.split_whitespace();
    let (Some(hex), Some(size)) = (fields.next(), fields.next()) else {
        return false;
    };
    fresh && hex.len() == 64 && hex.starts_with(expected) && size.parse() == Ok(meta.len())
}

fn write_marker(dest: &Path, digest: &str) {
    let Ok(meta) = fs::metadata(dest) else {
        return;
    };
    let marker = sibling(dest, ".sha256");
    if let Err(e) = fs::write(&marker, format!("{digest} {}\n", meta.len())) {
        log::debug!("could not write {}: {e}", marker.display());
    }
}

/// `dest` with `suffix` appended to its file name (`x.pth` → `x.pth.part`).
fn sibling(dest: &Path, suffix: &str) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_default();
    name.push(suffix);
    dest.with_file_name(name)
}

fn lock_exclusive(lock_path: &Path, dest: &Path) -> Result<File, ZooError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|e| io_err(lock_path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            log::info!(
                "waiting for another download of {} to finish",
                dest.display()
            );
            file.lock().map_err(|e| io_err(lock_path, e))?;
        }
        Err(fs::TryLockError::Error(e)) => {
            // Locking unsupported (some network file systems): carry on unlocked.
            log::debug!("cannot lock {}: {e}", lock_path.display());
        }
    }
    Ok(file)
}

fn truncate(part: &Path) -> Result<(), Failure> {
    match fs::remove_file(part) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::Fatal(io_err(part, e))),
    }
}

fn io_err(path: &Path, source: io::Error) -> ZooError {
    ZooError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Maps an error raised before any response arrived: unreachable server → `Offline`.
fn call_error(err: ureq::Error, url: &str, dest: &Path) -> ZooError {
    let offline = matches!(
        err,
        ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_)
            | ureq::Error::Io(_)
    );
    if offline {
        ZooError::Offline {
            url: url.to_string(),
            dest: dest.to_path_buf(),
            reason: err.to_string(),
        }
    } else {
        ZooError::Download {
            url: url.to_string(),
            reason: err.to_string(),
        }
    }
}

/// A parsed `Content-Range: bytes start-end/total` (or `bytes */total`).
#[derive(Debug, PartialEq, Eq)]
struct ContentRange {
    start: Option<u64>,
    total: Option<u64>,
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let start = match range.trim() {
        "*" => None,
        r => Some(r.split_once('-')?.0.trim().parse().ok()?),
    };
    Some(ContentRange { start, total })
}

fn resolve_root(
    grafter: Option<OsString>,
    xdg: Option<OsString>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    let non_empty = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    non_empty(grafter)
        .or_else(|| {
            non_empty(xdg)
                .filter(|p| p.is_absolute())
                .map(|p| p.join("grafter"))
        })
        .or_else(|| home.map(|h| h.join(".cache").join("grafter")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::WeightFormat;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    const LEN: usize = 300_000;

    fn data() -> Arc<Vec<u8>> {
        let mut x: u32 = 0x1234_5678;
        Arc::new(
            (0..LEN)
                .map(|_| {
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (x >> 24) as u8
                })
                .collect(),
        )
    }

    fn digest(bytes: &[u8]) -> String {
        sha256_bytes(bytes)
    }

    /// One request as the test server saw it.
    #[derive(Clone, Debug)]
    struct Seen {
        path: String,
        range_start: Option<u64>,
    }

    #[derive(Clone)]
    struct ServerConfig {
        data: Arc<Vec<u8>>,
        /// Honour `Range` with 206; otherwise always answer 200 with the whole body.
        honour_range: bool,
        /// Cut the connection of the first request after this many body bytes.
        drop_first_after: Option<usize>,
        /// Stop after this many connections (or after 30 s, whichever comes first).
        max_requests: usize,
        /// Send this many body bytes of the first request, then hold the connection open and
        /// silent for 20 s.
        stall_first_after: Option<usize>,
        /// Answer 200 without `Content-Length` (the body ends when the connection closes).
        no_length: bool,
    }

    impl ServerConfig {
        fn new(data: Arc<Vec<u8>>) -> Self {
            Self {
                data,
                honour_range: true,
                drop_first_after: None,
                max_requests: 4,
                stall_first_after: None,
                no_length: false,
            }
        }
    }

    struct TestServer {
        base: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl TestServer {
        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    /// A tiny HTTP/1.1 server on 127.0.0.1 that serves `cfg.data` at any path but `/missing`
    /// (404). It stops by itself after `max_requests` connections or 30 seconds.
    fn serve(cfg: ServerConfig) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut index = 0;
            while index < cfg.max_requests && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        // A connection of its own: a stalled one must not block the next.
                        let (cfg, log) = (cfg.clone(), Arc::clone(&log));
                        std::thread::spawn(move || handle(stream, &cfg, index, &log));
                        index += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        });
        TestServer { base, seen }
    }

    fn handle(
        mut stream: TcpStream,
        cfg: &ServerConfig,
        index: usize,
        log: &Mutex<Vec<Seen>>,
    ) -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk)?;
            if n == 0 || head.len() > 16 * 1024 {
                return Ok(());
            }
            head.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut lines = head.split("\r\n");
        let path = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("/")
            .to_string();
        let range_start = lines.find_map(|line| {
            let (k, v) = line.split_once(':')?;
            if !k.trim().eq_ignore_ascii_case("range") {
                return None;
            }
            v.trim()
                .strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse::<u64>()
                .ok()
        });
        log.lock().unwrap().push(Seen {
            path: path.clone(),
            range_start,
        });

        let len = cfg.data.len() as u64;
        if path == "/missing" {
            let msg = "not here";
            write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                msg.len()
            )?;
            return stream.flush();
        }
        let start = match range_start {
            Some(s) if cfg.honour_range && s >= len => {
                write!(
                    stream,
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                )?;
                return stream.flush();
            }
            Some(s) if cfg.honour_range => {
                write!(
                    stream,
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\n\
                     Content-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                    len - 1,
                    len - s
                )?;
                s as usize
            }
            _ if cfg.no_length => {
                write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
                0
            }
            _ => {
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                )?;
                0
            }
        };
        if let (Some(k), 0) = (cfg.stall_first_after, index) {
            stream.write_all(&cfg.data[start..start + k])?;
            stream.flush()?;
            std::thread::sleep(Duration::from_secs(20));
            return stream.shutdown(Shutdown::Both);
        }
        let body = &cfg.data[start..];
        let cut = match cfg.drop_first_after {
            Some(k) if index == 0 => k.min(body.len()),
            _ => body.len(),
        };
        stream.write_all(&body[..cut])?;
        stream.flush()?;
        stream.shutdown(Shutdown::Both)
    }

    /// No progress bar, no automatic resume, never through a proxy.
    fn quiet() -> Downloader {
        Downloader::new()
            .progress(false)
            .retries(0)
            .env_proxy(false)
    }

    #[test]
    fn download_fresh_file_and_verify_checksum() {
        let data = data();
        let server = serve(ServerConfig::new(Arc::clone(&data)));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub").join("weights.bin");
        let sha = digest(&data);

        let got = quiet()
            .download(&server.url("/weights.bin"), &dest, Some(&sha))
            .unwrap();
        assert_eq!(got, dest);
        assert_eq!(fs::read(&dest).unwrap(), *data);
        assert!(!sibling(&dest, ".part").exists());
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, "/weights.bin");
        assert_eq!(seen[0].range_start, None);

        // Present and verified: no second request, prefix and uppercase accepted.
        let again = Downloader::new()
            .progress(false)
            .download(
                &server.url("/weights.bin"),
                &dest,
                Some(&sha[..8].to_uppercase()),
            )
            .unwrap();
        assert_eq!(again, dest);
        assert_eq!(server.seen().len(), 1);
    }

    #[test]
    fn download_with_progress_bar_enabled() {
        let data = data();
        let server = serve(ServerConfig::new(Arc::clone(&data)));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("w.bin");
        quiet()
            .progress(true)
            .download(&server.url("/w.bin"), &dest, Some(&digest(&data)))
            .unwrap();
        assert_eq!(fs::read(&dest).unwrap(), *data);
    }

    #[test]
    fn interrupted_download_resumes_with_range_request() {
        let data = data();
        let mut cfg = ServerConfig::new(Arc::clone(&data));
        cfg.drop_first_after = Some(100_000);
        let server = serve(cfg);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("weights.bin");
        let part = sibling(&dest, ".part");
        let url = server.url("/weights.bin");
        let sha = digest(&data);

        let err = quiet().download(&url, &dest, Some(&sha)).unwrap_err();
        assert!(
            matches!(&err, ZooError::Download { url: u, .. } if *u == url),
            "{err}"
        );
        assert!(!dest.exists());
        let partial = fs::metadata(&part).unwrap().len();
        assert!(partial > 0 && partial <= 100_000, "partial = {partial}");
        assert_eq!(fs::read(&part).unwrap(), data[..partial as usize]);

        quiet().download(&url, &dest, Some(&sha)).unwrap();
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].range_start, None);
        assert_eq!(seen[1].range_start, Some(partial));
        assert_eq!(fs::read(&dest).unwrap(), *data);
        assert!(!part.exists());
    }

    #[test]
    fn interrupted_download_resumes_automatically_within_one_call() {
        let data = data();
        let mut cfg = ServerConfig::new(Arc::clone(&data));
        cfg.drop_first_after = Some(123_456);
        let server = serve(cfg);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("weights.bin");

        quiet()
            .retries(2)
            .download(&server.url("/w"), &dest, Some(&digest(&data)))
            .unwrap();
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert!(matches!(seen[1].range_start, Some(n) if n > 0 && n <= 123_456));
        assert_eq!(fs::read(&dest).unwrap(), *data);
    }

    #[test]
    fn server_ignoring_range_restarts_from_zero() {
        let data = data();
        let mut cfg = ServerConfig::new(Arc::clone(&data));
        cfg.honour_range = false;
        let server = serve(cfg);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("weights.bin");
        // A stale partial file whose bytes are wrong: a 200 answer must overwrite, not append.
        fs::write(sibling(&dest, ".part"), vec![0xAAu8; 50_000]).unwrap();

        quiet()
            .download(&server.url("/w"), &dest, Some(&digest(&data)))
            .unwrap();
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].range_start, Some(50_000));
        assert_eq!(fs::read(&dest).unwrap(), *data);
    }

    #[test]
    fn complete_partial_file_is_finished_on_416() {
        let data = data();
        let server = serve(ServerConfig::new(Arc::clone(&data)));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("weights.bin");
        fs::write(sibling(&dest, ".part"), &*data).unwrap();

        quiet()
            .download(&server.url("/w"), &dest, Some(&digest(&data)))
            .unwrap();
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].range_start, Some(LEN as u64));
        assert_eq!(fs::read(&dest).unwrap(), *data);
    }

    #[test]
    fn wrong_checksum_is_a_typed_error_and_leaves_no_file() {
        let data = data();
        let server = serve(ServerConfig::new(Arc::clone(&data)));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("weights.bin");

        let err = quiet()
            .download(&server.url("/w"), &dest, Some("deadbeef"))
            .unwrap_err();
        match &err {
            ZooError::Checksum {
                path,
                algorithm,
                expected,
                found,
            } => {
                assert_eq!(path, &dest);
                assert_eq!(*algorithm, "sha256");
                assert_eq!(expected, "deadbeef");
                assert_eq!(found, &digest(&data));
            }
            other => panic!("expected a checksum error, got {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("weights.bin") && msg.contains("deadbeef"),
            "{msg}"
        );
        assert!(!dest.exists());
        assert!(!sibling(&dest, ".part").exists());
    }

    #[test]
    fn unreachable_server_gives_offline_error_naming_url_and_destination() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        }; // closed again here
        let url = format!("http://127.0.0.1:{port}/resnet18-f37072fd.pth");
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("resnet18-f37072fd.pth");

        let err = quiet()
            .connect_timeout(Duration::from_secs(5))
            .download(&url, &dest, Some("f37072fd"))
            .unwrap_err();
        match &err {
            ZooError::Offline {
                url: u, dest: d, ..
            } => {
                assert_eq!(u, &url);
                assert_eq!(d, &dest);
            }
            other => panic!("expected an offline error, got {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&url), "{msg}");
        assert!(msg.contains(&dest.display().to_string()), "{msg}");
        assert!(!dest.exists());
    }

    #[test]
    fn http_error_status_is_a_download_error() {
        let server = serve(ServerConfig::new(data()));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.bin");
        let err = quiet()
            .download(&server.url("/missing"), &dest, None)
            .unwrap_err();
        assert!(
            matches!(&err, ZooError::Download { reason, .. } if reason.contains("404")),
            "{err}"
        );
        assert!(!dest.exists());
    }

    #[test]
    fn invalid_expected_hash_is_rejected_before_any_request() {
        let server = serve(ServerConfig::new(data()));
        let dir = tempfile::tempdir().unwrap();
        let err = quiet()
            .download(&server.url("/w"), &dir.path().join("w"), Some("xyz"))
            .unwrap_err();
        assert!(matches!(err, ZooError::Config(_)), "{err}");
        assert!(server.seen().is_empty());
    }

    fn weight_set(url: String, sha256: Option<String>) -> WeightSet {
        fn no_preprocess() -> grafter_core::Preprocess {
            grafter_core::Preprocess::imagenet()
        }
        WeightSet {
            name: "test.local_in1k",
            arch: crate::Architecture::resnet(crate::ResNetDepth::R18),
            source: "test server",
            url: Box::leak(url.into_boxed_str()),
            sha256: sha256.map(|s| &*Box::leak(s.into_boxed_str())),
            size: Some(LEN as u64),
            format: WeightFormat::Pth,
            preprocess: no_preprocess,
            top1: 50.0,
            license: "test",
            notes: "",
        }
    }

    #[test]
    fn offline_cache_serves_the_cached_file_and_never_requests() {
        let data = data();
        let server = serve(ServerConfig::new(Arc::clone(&data)));
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path()).with_progress(false).offline(true);
        let ws = weight_set(server.url("/resnet18-f00.pth"), Some(digest(&data)));
        let path = cache.path_for(&ws);
        match cache.fetch(&ws) {
            Err(ZooError::Offline { dest, .. }) => assert_eq!(dest, path),
            other => panic!("{other:?}"),
        }
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &*data).unwrap();
        assert_eq!(cache.fetch(&ws).unwrap(), path);
        assert!(server.seen().is_empty(), "{:?}", server.seen());
    }

    #[test]
    fn cache_hit_does_no_request() {
        let data = data();
        let server = serve(ServerConfig::new(Arc::clone(&data)));
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path()).with_progress(false);
        let ws = weight_set(server.url("/resnet18-f00.pth"), Some(digest(&data)));

        let path = cache.path_for(&ws);
        assert_eq!(
            path,
            dir.path().join("test.local_in1k").join("resnet18-f00.pth")
        );
        assert_eq!(cache.cached(&ws).unwrap(), None);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &*data).unwrap();

        assert_eq!(cache.fetch(&ws).unwrap(), path);
        assert_eq!(cache.fetch(&ws).unwrap(), path); // second hit goes through the marker
        assert_eq!(cache.cached(&ws).unwrap(), Some(path));
        assert!(server.seen().is_empty(), "{:?}", server.seen());
    }

    #[test]
    fn cache_downloads_once_then_hits() {
        let data = data();
        let server = serve(ServerConfig::new(Arc::clone(&data)));
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache")).with_downloader(quiet());
        let ws = weight_set(server.url("/model.safetensors"), Some(digest(&data)));

        let path = cache.fetch(&ws).unwrap();
        assert_eq!(path, cache.path_for(&ws));
        assert_eq!(fs::read(&path).unwrap(), *data);
        assert_eq!(cache.fetch(&ws).unwrap(), path);
        assert_eq!(server.seen().len(), 1);
    }

    #[test]
    fn corrupt_cached_file_is_downloaded_again() {
        let data = data();
        let server = serve(ServerConfig::new(Arc::clone(&data)));
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path()).with_downloader(quiet());
        let ws = weight_set(server.url("/w.pth"), Some(digest(&data)[..8].to_string()));
        let path = cache.path_for(&ws);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"not the weights").unwrap();

        assert_eq!(cache.fetch(&ws).unwrap(), path);
        assert_eq!(fs::read(&path).unwrap(), *data);
        assert_eq!(server.seen().len(), 1);
    }

    #[test]
    fn cache_root_resolution_order() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            resolve_root(Some("/g".into()), Some("/x".into()), home.clone()),
            Some(PathBuf::from("/g"))
        );
        assert_eq!(
            resolve_root(None, Some("/x".into()), home.clone()),
            Some(PathBuf::from("/x/grafter"))
        );
        assert_eq!(
            resolve_root(Some("".into()), Some("relative".into()), home.clone()),
            Some(PathBuf::from("/home/u/.cache/grafter"))
        );
        assert_eq!(resolve_root(None, None, None), None);
    }

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 100-299999/300000"),
            Some(ContentRange {
                start: Some(100),
                total: Some(300_000)
            })
        );
        assert_eq!(
            parse_content_range("bytes */300000"),
            Some(ContentRange {
                start: None,
                total: Some(300_000)
            })
        );
        assert_eq!(
            parse_content_range("bytes 0-9/*"),
            Some(ContentRange {
                start: Some(0),
                total: None
            })
        );
        assert_eq!(parse_content_range("items 0-9/10"), None);
    }

    #[test]
    fn sha256_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        fs::write(&p, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&p).unwrap(), abc);
        assert_eq!(verify_sha256(&p, "BA7816BF").unwrap(), abc);
        assert!(matches!(
            verify_sha256(&p, "00"),
            Err(ZooError::Checksum { .. })
        ));
        assert!(matches!(verify_sha256(&p, ""), Err(ZooError::Config(_))));
        assert_eq!(
            sibling(Path::new("/c/resnet50-11ad3fa6.pth"), ".part"),
            PathBuf::from("/c/resnet50-11ad3fa6.pth.part")
        );
    }

    #[test]
    fn a_stalled_body_is_cut_by_the_stall_timeout_and_resumed() {
        let data = data();
        let mut cfg = ServerConfig::new(Arc::clone(&data));
        cfg.stall_first_after = Some(1000);
        let server = serve(cfg);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("w.bin");
        let started = Instant::now();
        quiet()
            .retries(1)
            .stall_timeout(Duration::from_millis(300))
            .download(&server.url("/w.bin"), &dest, Some(&digest(&data)))
            .unwrap();
        // the server holds the first connection silent for 20 s
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(fs::read(&dest).unwrap(), *data);
        let seen = server.seen();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[1].range_start, Some(1000), "{seen:?}");
    }

    #[test]
    fn a_length_less_body_without_checksum_is_refused_not_cached() {
        let data = data();
        let mut cfg = ServerConfig::new(Arc::clone(&data));
        cfg.no_length = true;
        cfg.drop_first_after = Some(1000);
        let server = serve(cfg);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("w.bin");
        let err = quiet()
            .download(&server.url("/w.bin"), &dest, None)
            .unwrap_err();
        assert!(err.to_string().contains("neither a length"), "{err}");
        assert!(!dest.exists());
        // with the published size, the cut is seen and resumed
        let mut cfg = ServerConfig::new(Arc::clone(&data));
        cfg.no_length = true;
        cfg.drop_first_after = Some(1000);
        let server = serve(cfg);
        let got = quiet()
            .retries(1)
            .download_exact(&server.url("/w.bin"), &dest, None, Some(LEN as u64))
            .unwrap();
        assert_eq!(fs::read(got).unwrap(), *data);
        assert_eq!(server.seen()[1].range_start, Some(1000));
    }

    #[test]
    fn the_published_size_is_checked_before_and_after_the_transfer() {
        let data = data();
        let server = serve(ServerConfig::new(Arc::clone(&data)));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("w.bin");
        let err = quiet()
            .download_exact(&server.url("/w.bin"), &dest, None, Some(LEN as u64 + 1))
            .unwrap_err();
        assert!(err.to_string().contains("announces"), "{err}");
        assert!(!dest.exists() && !sibling(&dest, ".part").exists());
        // a cached file of another size is fetched again
        fs::write(&dest, b"stale").unwrap();
        quiet()
            .download_exact(&server.url("/w.bin"), &dest, None, Some(LEN as u64))
            .unwrap();
        assert_eq!(fs::read(&dest).unwrap(), *data);
    }
}
