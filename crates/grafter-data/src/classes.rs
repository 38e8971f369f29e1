//! Class names in a fixed order, saved with the model so predictions can be named.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{DataError, Result};

/// The ordered class names of a dataset: index `i` of the head's output is `names()[i]`.
///
/// Saved beside the fine-tuned model as `classes.json`, because a model whose outputs cannot
/// be named is useless, and because a different order would silently permute every label.
///
/// ```
/// use grafter_data::ClassNames;
/// let dir = tempfile::tempdir().unwrap();
/// let classes = ClassNames::new(vec!["cat".into(), "dog".into()]).unwrap();
/// classes.save_json(dir.path().join("classes.json")).unwrap();
/// let back = ClassNames::load_json(dir.path().join("classes.json")).unwrap();
/// assert_eq!(back, classes);
/// assert_eq!(back.index_of("dog"), Some(1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassNames {
    classes: Vec<String>,
}

impl ClassNames {
    /// Names in output order; rejects an empty list and duplicates.
    pub fn new(names: Vec<String>) -> Result<Self> {
        if names.is_empty() {
            return Err(DataError::Config(
                "a dataset needs at least one class".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(d) = names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(DataError::Config(format!("class '{d}' is listed twice")));
        }
        Ok(Self { classes: names })
    }

    /// The names, in output order.
    pub fn names(&self) -> &[String] {
        &self.classes
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Always false (a class list has at least one class).
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// Index of `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c == name)
    }

    /// Name of class `index`.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.classes.get(index).map(String::as_str)
    }

    /// Writes `{"classes": [...]}` atomically (temporary file, then rename).
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| DataError::format(path, e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
    }

    /// Reads a file written by [`save_json`](Self::save_json).
    pub fn load_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let parsed: ClassNames = serde_json::from_str(&text)
            .map_err(|e| DataError::format(path, format!("not a classes.json: {e}")))?;
        Self::new(parsed.classes).map_err(|e| DataError::format(path, e.to_string()))
    }
}
