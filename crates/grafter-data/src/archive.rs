//! Safe extraction of data-set archives (`.tar`, `.tar.gz`/`.tgz`).
//!
//! Archives downloaded from the internet are untrusted: an entry named `../../.bashrc`, an
//! absolute path, or a symbolic link pointing outside the target could overwrite the user's
//! files. [`extract_tar`] refuses the whole archive at the first such entry, names it, and
//! extracts into a temporary sibling folder that is renamed into place only when every entry
//! was written — an interrupted extraction never leaves a half-filled data set behind.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use crate::{DataError, Result};

/// What [`extract_tar`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    /// The target folder.
    pub root: PathBuf,
    /// Regular files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Extracts the tar archive `archive` (gzip-compressed when its name ends in `.gz` or `.tgz`)
/// into the folder `dest`, which must not exist yet.
///
/// Only regular files and folders are extracted; an entry whose path is absolute, contains
/// `..`, or is a link or device is an error naming the archive and the entry, and nothing is
/// left in `dest`.
///
/// ```no_run
/// let out = grafter_data::archive::extract_tar("downloads/food-101.tar.gz", "data/food-101-extract")?;
/// println!("{} files", out.files);
/// # Ok::<(), grafter_data::DataError>(())
/// ```
pub fn extract_tar(archive: impl AsRef<Path>, dest: impl AsRef<Path>) -> Result<Extracted> {
    let archive = archive.as_ref();
    let dest = dest.as_ref();
    if dest.exists() {
        return Err(DataError::format(
            dest,
            "extraction target already exists; remove it or choose another folder",
        ));
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, e))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "extract".into());
    let staging = tempfile_dir(&parent, &name)?;
    match extract_into(archive, staging.path()) {
        Ok((files, bytes)) => {
            let staged = staging.keep();
            std::fs::rename(&staged, dest).map_err(|e| DataError::io(dest, e))?;
            Ok(Extracted {
                root: dest.to_path_buf(),
                files,
                bytes,
            })
        }
        Err(e) => Err(e), // `staging` is removed on drop
    }
}

fn tempfile_dir(parent: &Path, name: &str) -> Result<TempDir> {
    for attempt in 0..100u32 {
        let path = parent.join(format!(".{name}.partial-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(TempDir(Some(path))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(DataError::io(&path, e)),
        }
    }
    Err(DataError::Config(format!(
        "cannot create a staging folder in {}",
        parent.display()
    )))
}

/// A folder removed on drop unless kept.
struct TempDir(Option<PathBuf>);

impl TempDir {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new("."))
    }
    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

fn open(archive: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let name = archive.to_string_lossy().to_ascii_lowercase();
    let reader = BufReader::with_capacity(1 << 20, file);
    Ok(if name.ends_with(".gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// The entry's path relative to the target, or why it is refused.
fn safe_relative(path: &Path) -> std::result::Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains '..' (would escape the target folder)"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("is an absolute path (would escape the target folder)");
            }
        }
    }
    Ok(out)
}

fn extract_into(archive: &Path, target: &Path) -> Result<(usize, u64)> {
    let bad = |entry: &str, why: &str| DataError::format(archive, format!("entry '{entry}' {why}"));
    let mut tar = tar::Archive::new(open(archive)?);
    let entries = tar
        .entries()
        .map_err(|e| DataError::format(archive, format!("not a tar archive: {e}")))?;
    let (mut files, mut bytes) = (0usize, 0u64);
    for entry in entries {
        let mut entry =
            entry.map_err(|e| DataError::format(archive, format!("corrupt archive: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| DataError::format(archive, format!("unreadable entry name: {e}")))?
            .into_owned();
        let shown = raw.display().to_string();
        let rel = safe_relative(&raw).map_err(|why| bad(&shown, why))?;
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() {
            continue;
        }
        let out = target.join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&out).map_err(|e| DataError::io(&out, e))?;
        } else if kind.is_file() {
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
            }
            let mut file = File::create(&out).map_err(|e| DataError::io(&out, e))?;
            bytes += std::io::copy(&mut entry, &mut file)
                .map_err(|e| DataError::format(archive, format!("entry '{shown}': {e}")))?;
            files += 1;
        } else if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        } else {
            return Err(bad(
                &shown,
                "is a link or special file; data-set archives hold only files and folders",
            ));
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    fn archive(dir: &Path, entries: &[(&[u8], tar::EntryType, &[u8])], gz: bool) -> PathBuf {
        let path = dir.join(if gz { "a.tar.gz" } else { "a.tar" });
        let file = File::create(&path).unwrap();
        let sink: Box<dyn std::io::Write> = if gz {
            Box::new(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(file)
        };
        let mut b = tar::Builder::new(sink);
        for (name, kind, data) in entries {
            let h = header(name, *kind, data.len() as u64);
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().flush().unwrap();
        path
    }

    use std::io::Write;

    #[test]
    fn extracts_files_and_folders_from_tar_gz() {
        let tmp = tempfile::tempdir().unwrap();
        let a = archive(
            tmp.path(),
            &[
                (b"food-101/", tar::EntryType::Directory, b""),
                (
                    b"food-101/meta/classes.txt",
                    tar::EntryType::Regular,
                    b"pizza\n",
                ),
                (
                    b"./food-101/images/pizza/1.jpg",
                    tar::EntryType::Regular,
                    b"xyz",
                ),
            ],
            true,
        );
        let out = extract_tar(&a, tmp.path().join("out")).unwrap();
        assert_eq!((out.files, out.bytes), (2, 9));
        let classes = std::fs::read_to_string(tmp.path().join("out/food-101/meta/classes.txt"));
        assert_eq!(classes.unwrap(), "pizza\n");
    }

    #[test]
    fn refuses_entries_escaping_the_target_and_leaves_nothing() {
        let cases: [(&[u8], tar::EntryType, &str); 3] = [
            (b"food-101/../../evil.txt", tar::EntryType::Regular, "'..'"),
            (b"/etc/evil.txt", tar::EntryType::Regular, "absolute"),
            (b"food-101/link", tar::EntryType::Symlink, "link"),
        ];
        for (name, kind, why) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let a = archive(
                tmp.path(),
                &[
                    (b"food-101/ok.txt", tar::EntryType::Regular, b"ok"),
                    (name, kind, b"x"),
                ],
                false,
            );
            let dest = tmp.path().join("sub").join("out");
            let err = extract_tar(&a, &dest).unwrap_err().to_string();
            assert!(err.contains("a.tar") && err.contains(why), "{err}");
            assert!(!dest.exists(), "nothing may be left behind");
            assert!(!tmp.path().join("evil.txt").exists());
            let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("sub")).unwrap().collect();
            assert!(
                leftovers.is_empty(),
                "staging folder removed: {leftovers:?}"
            );
        }
    }

    #[test]
    fn corrupt_archive_and_existing_target_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let junk = tmp.path().join("junk.tar.gz");
        std::fs::write(&junk, b"definitely not gzip").unwrap();
        let err = extract_tar(&junk, tmp.path().join("out")).unwrap_err();
        assert!(err.to_string().contains("junk.tar.gz"), "{err}");
        std::fs::create_dir(tmp.path().join("exists")).unwrap();
        let err = extract_tar(&junk, tmp.path().join("exists")).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }
}
