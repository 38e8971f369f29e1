//! A list of images with labels: CSV (`path,label`) or JSON lines (`{"path":..,"label":..}`).

use std::path::{Path, PathBuf};

use crate::scan::keep_good;
use crate::{BadFiles, ClassNames, DataError, FoundAt, ImageDataset, Result, Sample, Target};

/// How to read a list file.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Folder the image paths are resolved against (default: the list file's folder). A path
    /// that is absolute or contains `..` is refused: a list must not reach outside its root.
    pub root: Option<PathBuf>,
    /// The class names in output order. When given, a label is a class name or a 0-based
    /// index (an index out of range is reported, never wrapped or clamped). When absent, the
    /// classes are the distinct label names, sorted (numerically when all are integers).
    pub classes: Option<ClassNames>,
    /// Multi-label: a row's label field holds several labels separated by `;` (CSV) or a
    /// `labels` array (JSON lines).
    pub multi_label: bool,
}

/// One parsed row before labels are resolved.
struct Row {
    line: usize,
    path: String,
    labels: Vec<String>,
}

impl ImageDataset {
    /// Reads a CSV list: one `path,label` row per image (an optional header row whose first
    /// field is `path`, `file`, `filename` or `image` is skipped; fields may be quoted).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # image::RgbImage::new(4, 4).save(dir.path().join("a.png")).unwrap();
    /// # image::RgbImage::new(4, 4).save(dir.path().join("b.png")).unwrap();
    /// std::fs::write(dir.path().join("list.csv"), "path,label\na.png,dog\nb.png,cat\n").unwrap();
    /// let ds = grafter_data::ImageDataset::from_csv(dir.path().join("list.csv"), Default::default()).unwrap();
    /// assert_eq!(ds.classes().names(), ["cat", "dog"]);
    /// assert_eq!(ds.samples()[0].target, grafter_data::Target::Class(1));
    /// ```
    pub fn from_csv(path: impl AsRef<Path>, options: ListOptions) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let mut rows = Vec::new();
        let mut bad = BadFiles::default();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv(line);
            if rows.is_empty()
                && bad.is_empty()
                && ["path", "file", "filename", "image"]
                    .contains(&fields[0].trim().to_ascii_lowercase().as_str())
            {
                continue;
            }
            if fields.len() != 2 {
                bad.push(
                    where_(path, line_no),
                    format!("expected 2 fields (path,label), found {}", fields.len()),
                    FoundAt::Scan,
                );
                continue;
            }
            let labels = if options.multi_label {
                fields[1]
                    .split(';')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            } else {
                vec![fields[1].trim().to_string()]
            };
            rows.push(Row {
                line: line_no,
                path: fields[0].trim().to_string(),
                labels,
            });
        }
        Self::from_rows(path, rows, bad, options)
    }

    /// Reads a JSON-lines list: one object per line with `path` and either `label` (a name or
    /// an index) or, for multi-label lists, `labels` (an array of names or indices).
    pub fn from_jsonl(path: impl AsRef<Path>, options: ListOptions) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let mut rows = Vec::new();
        let mut bad = BadFiles::default();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    bad.push(
                        where_(path, line_no),
                        format!("not JSON: {e}"),
                        FoundAt::Scan,
                    );
                    continue;
                }
            };
            let Some(p) = value.get("path").and_then(|p| p.as_str()) else {
                bad.push(where_(path, line_no), "no \"path\" string", FoundAt::Scan);
                continue;
            };
            let as_text = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let labels: Option<Vec<String>> = match (value.get("labels"), value.get("label")) {
                (Some(serde_json::Value::Array(a)), _) => a.iter().map(as_text).collect(),
                (None, Some(l)) => as_text(l).map(|l| vec![l]),
                _ => None,
            };
            match labels {
                Some(labels) if options.multi_label || labels.len() == 1 => rows.push(Row {
                    line: line_no,
                    path: p.to_string(),
                    labels,
                }),
                Some(labels) => bad.push(
                    where_(path, line_no),
                    format!("{} labels in a single-label list", labels.len()),
                    FoundAt::Scan,
                ),
                None => bad.push(
                    where_(path, line_no),
                    "no \"label\" (string or integer) or \"labels\" array",
                    FoundAt::Scan,
                ),
            }
        }
        Self::from_rows(path, rows, bad, options)
    }

    fn from_rows(
        list: &Path,
        rows: Vec<Row>,
        mut bad: BadFiles,
        options: ListOptions,
    ) -> Result<Self> {
        let base = options
            .root
            .clone()
            .unwrap_or_else(|| list.parent().map(Path::to_path_buf).unwrap_or_default());
        let classes = match options.classes {
            Some(c) => c,
            None => infer_classes(list, &rows)?,
        };
        let mut candidates = Vec::new();
        'rows: for row in rows {
            inside_root(&row.path).map_err(|why| {
                DataError::format(
                    list,
                    format!(
                        "line {}: image path '{}' {why}; list paths must be relative to the root and stay inside it",
                        row.line, row.path
                    ),
                )
            })?;
            let image = base.join(&row.path);
            let mut targets = Vec::new();
            for label in &row.labels {
                match resolve(label, &classes) {
                    Ok(t) => targets.push(t),
                    Err(reason) => {
                        bad.push(
                            &image,
                            format!("{}: {reason}", where_(list, row.line).display()),
                            FoundAt::Scan,
                        );
                        continue 'rows;
                    }
                }
            }
            let target = if options.multi_label {
                targets.sort_unstable();
                targets.dedup();
                Target::Multi(targets)
            } else {
                Target::Class(targets[0])
            };
            candidates.push((target, image));
        }
        let limits = crate::DecodeLimits::default();
        let samples: Vec<Sample> = keep_good(candidates, &limits, &mut bad)
            .into_iter()
            .map(|(target, path)| Sample { path, target })
            .collect();
        if samples.is_empty() {
            return Err(DataError::Empty {
                path: list.to_path_buf(),
                bad: bad.len(),
            });
        }
        bad.log();
        Ok(Self {
            root: list.to_path_buf(),
            samples,
            classes,
            multi_label: options.multi_label,
            bad,
            limits,
        })
    }
}

/// `Ok` when `path` is relative, not empty, and never climbs with `..`: joined to a root it
/// stays inside that root. The reason otherwise.
pub(crate) fn inside_root(path: &str) -> std::result::Result<(), &'static str> {
    use std::path::Component;
    if path.is_empty() {
        return Err("is empty");
    }
    for c in Path::new(path).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
        }
    }
    Ok(())
}

fn where_(list: &Path, line: usize) -> PathBuf {
    PathBuf::from(format!("{}:{line}", list.display()))
}

/// A label name, or an index into `classes`.
fn resolve(label: &str, classes: &ClassNames) -> std::result::Result<usize, String> {
    if let Some(i) = classes.index_of(label) {
        return Ok(i);
    }
    match label.parse::<i64>() {
        Ok(i) if i >= 0 && (i as usize) < classes.len() => Ok(i as usize),
        Ok(i) => Err(format!(
            "label {i} is out of range for {} classes",
            classes.len()
        )),
        Err(_) => Err(format!("unknown class '{label}'")),
    }
}

fn infer_classes(list: &Path, rows: &[Row]) -> Result<ClassNames> {
    let mut names: Vec<String> = rows.iter().flat_map(|r| r.labels.iter().cloned()).collect();
    names.sort();
    names.dedup();
    if names.iter().all(|n| n.parse::<u64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<u64>().unwrap_or(0));
    }
    ClassNames::new(names).map_err(|e| DataError::format(list, e.to_string()))
}

/// Splits one CSV line on commas outside double quotes; `""` inside quotes is a quote.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_honour_quotes() {
        assert_eq!(split_csv(r#""a,b.jpg",cat"#), vec!["a,b.jpg", "cat"]);
        assert_eq!(
            split_csv(r#""say ""hi"".png",1"#),
            vec![r#"say "hi".png"#, "1"]
        );
    }

    #[test]
    fn numeric_labels_sort_numerically() {
        let rows: Vec<Row> = ["10", "2", "1"]
            .iter()
            .map(|l| Row {
                line: 1,
                path: "x".into(),
                labels: vec![l.to_string()],
            })
            .collect();
        let c = infer_classes(Path::new("l.csv"), &rows).unwrap();
        assert_eq!(c.names(), ["1", "2", "10"]);
    }
}
