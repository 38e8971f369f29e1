//! The Food-101 layout: `images/<class>/<id>.jpg`, `meta/classes.txt`, `meta/{train,test}.txt`.

use std::path::Path;

use crate::{BadFiles, ClassNames, DataError, FoundAt, ImageDataset, Result};

/// Which official Food-101 list to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Food101Split {
    /// `meta/train.txt` (750 images per class).
    Train,
    /// `meta/test.txt` (250 images per class).
    Test,
}

impl ImageDataset {
    /// Reads the Food-101 layout under `root` (the folder holding `images/` and `meta/`).
    ///
    /// Classes come from `meta/classes.txt`, in its order. Each line `class/id` of the split
    /// list names `images/class/id.jpg`. Entries whose class is not in `classes.txt`, whose
    /// file is missing or unreadable, are reported in [`bad_files`](Self::bad_files) — never
    /// given a wrong label.
    ///
    /// ```no_run
    /// use grafter_data::{Food101Split, ImageDataset};
    /// let train = ImageDataset::food101("data/food-101", Food101Split::Train).unwrap();
    /// assert_eq!(train.classes().len(), 101);
    /// ```
    pub fn food101(root: impl AsRef<Path>, split: Food101Split) -> Result<Self> {
        let root = root.as_ref();
        let classes_path = root.join("meta").join("classes.txt");
        let class_lines = read_lines(&classes_path)?;
        for (line_no, class) in &class_lines {
            single_component(class).map_err(|why| {
                DataError::format(
                    &classes_path,
                    format!("line {line_no}: class '{class}' {why}"),
                )
            })?;
        }
        let classes = ClassNames::new(class_lines.into_iter().map(|(_, l)| l).collect())
            .map_err(|e| DataError::format(&classes_path, e.to_string()))?;
        let list = root.join("meta").join(match split {
            Food101Split::Train => "train.txt",
            Food101Split::Test => "test.txt",
        });
        let mut bad = BadFiles::default();
        let mut candidates = Vec::new();
        for (line_no, entry) in read_lines(&list)? {
            let image = root.join("images").join(format!("{entry}.jpg"));
            if let Some((class, id)) = entry.split_once('/') {
                for part in [class, id] {
                    single_component(part).map_err(|why| {
                        DataError::format(
                            &list,
                            format!("line {line_no}: '{entry}': '{part}' {why}"),
                        )
                    })?;
                }
            }
            let Some((class, _)) = entry.split_once('/') else {
                bad.push(
                    &image,
                    format!("{}:{line_no}: '{entry}' is not 'class/id'", list.display()),
                    FoundAt::Scan,
                );
                continue;
            };
            match classes.index_of(class) {
                Some(label) => candidates.push((label, image)),
                None => bad.push(
                    &image,
                    format!(
                        "{}:{line_no}: class '{class}' is not in meta/classes.txt",
                        list.display()
                    ),
                    FoundAt::Scan,
                ),
            }
        }
        Self::single_label_from_candidates(root, list, candidates, classes, bad)
    }
}

/// A class name or image id becomes one folder or file name under `images/`: it must not be
/// `.` or `..` nor hold a path separator, or the data set would reach outside its root.
fn single_component(name: &str) -> std::result::Result<(), &'static str> {
    if name == "." || name == ".." {
        Err("is not a file name ('.' and '..' are refused)")
    } else if name.contains(['/', '\\']) {
        Err("contains a path separator")
    } else {
        Ok(())
    }
}

/// Non-empty trimmed lines with their 1-based numbers.
fn read_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .filter(|(_, l)| !l.is_empty())
        .collect())
}
