//! The pretrained entry point: a name in, a backbone with its weights, its input convention
//! ([`Preprocess`](grafter_core::Preprocess)) and a record of where the weights came from out
//! — timm's `create_model(name, pretrained=True)` without the classifier.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use grafter_core::Backbone;
//! use grafter_zoo::{download::Cache, pretrained};
//!
//! let device = Device::flex();
//! let resnet = pretrained("resnet50", &Cache::from_env()?, &device)?; // resnet50.tv2_in1k
//! assert_eq!(resnet.backbone.preprocess().resize_size(), 232);
//! println!("{}", resnet.provenance); // weight set, source, top-1, licence, sha256
//! # Ok::<(), grafter_zoo::ZooError>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use grafter_onnx::{OnnxBackbone, OnnxBackboneOptions};
use serde::{Deserialize, Serialize};

use crate::ZooError;
use crate::any::AnyBackbone;
use crate::download::{Cache, sha256_file, verify_sha256};
use crate::registry::{self, WeightSet};

/// Where a backbone's weights came from: enough to cite them, find them again and check the
/// file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The registry's name of the weight set (`resnet50.tv2_in1k`), or the file name of an
    /// ONNX model used as it is.
    pub weight_set: String,
    /// The architecture, variant included (`resnet50`, `resnet50 (v1)`), or `ONNX graph`.
    pub architecture: String,
    /// Who published the weights, and under which identifier.
    pub source: String,
    /// Where the registry downloads them from (`None` for a user's ONNX file).
    pub url: Option<String>,
    /// The file the weights were read from.
    pub file: PathBuf,
    /// SHA-256 of that file (all 64 hex digits).
    pub sha256: String,
    /// ImageNet-1k top-1 accuracy in percent, as published (`None` when unknown).
    pub top1: Option<f32>,
    /// Licence of the weights as stated by the publisher (`None` when unknown).
    pub license: Option<String>,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) — {}",
            self.weight_set, self.architecture, self.source
        )?;
        if let Some(top1) = self.top1 {
            write!(f, ", ImageNet top-1 {top1:.1}%")?;
        }
        if let Some(license) = &self.license {
            write!(f, ", licence {license}")?;
        }
        write!(
            f,
            "; file {} (sha256 {})",
            self.file.display(),
            &self.sha256[..self.sha256.len().min(12)]
        )
    }
}

/// The weights a backbone starts from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Weights {
    /// Pretrained, from there.
    Pretrained(Provenance),
    /// A random initialisation, and why no pretrained weights were used.
    Random {
        /// Why (offline and not cached, a failed download, a bad file…).
        reason: String,
    },
}

impl Weights {
    /// The banner to show before training on a [`Weights::Random`] backbone called `name`
    /// (none for pretrained weights): a random initialisation is no transfer learning, and a
    /// run that fell back to one must not pass for one that did not.
    ///
    /// ```
    /// use grafter_zoo::Weights;
    ///
    /// let random = Weights::Random { reason: "offline".into() };
    /// assert!(random.warning("resnet50").unwrap().contains("RANDOM initialisation"));
    /// ```
    pub fn warning(&self, name: &str) -> Option<String> {
        let Self::Random { reason } = self else {
            return None;
        };
        let bar = "!".repeat(78);
        Some(format!(
            "{bar}\n!! NO PRETRAINED WEIGHTS for {name}: {reason}\n\
             !! The backbone starts from a RANDOM initialisation. This is not transfer\n\
             !! learning and accuracy will be poor. Run once with network access (the\n\
             !! weights are cached in ~/.cache/grafter) or put the file in the cache.\n{bar}"
        ))
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pretrained(p) => p.fmt(f),
            Self::Random { reason } => {
                write!(f, "RANDOM initialisation (no pretrained weights: {reason})")
            }
        }
    }
}

/// A backbone with pretrained weights and their provenance.
#[derive(Debug)]
pub struct Pretrained {
    /// The backbone, its [`Preprocess`](grafter_core::Preprocess) set to the weights' own.
    pub backbone: AnyBackbone,
    /// Where the weights came from.
    pub provenance: Provenance,
}

/// The backbone called `name` with its pretrained weights, fetched through `cache` (the
/// cached file, else a checked download; see [`Cache::offline`]).
///
/// `name` is a registry weight set (`resnet50.tv2_in1k`, `vgg16-bn-7`; see
/// [`registry::all`]), an architecture name for its default set (`resnet50`, `vgg16_bn`;
/// see [`registry::resolve`]), or the path of an `.onnx` file: any ONNX CNN, with its own
/// weights, cut before its classifier ([`OnnxBackbone`]).
///
/// Errors: [`ZooError::Unknown`] for a name that is none of these, the download's errors
/// ([`ZooError::Offline`], [`ZooError::Checksum`]…), and the loader's
/// ([`ZooError::Weights`], [`ZooError::Onnx`]) naming the file.
pub fn pretrained(name: &str, cache: &Cache, device: &Device) -> Result<Pretrained, ZooError> {
    if name.to_ascii_lowercase().ends_with(".onnx") {
        return onnx_file(Path::new(name), device);
    }
    let set = resolve(name)?;
    let file = cache.fetch(set)?;
    // the provenance's digest is the loader's: one pass over the file where the loader
    // hashes it anyway (a .pth's pre-load check)
    let (backbone, sha256) = set.load_with_sha256(&file, device)?;
    Ok(with_provenance(set, backbone, file, sha256))
}

/// [`pretrained`], or — when the weights cannot be had (offline and not cached, a failed
/// download, a file that does not load) — the same architecture with random weights and the
/// reason, logged as a warning. For demos and smoke tests that must run anywhere; a random
/// backbone is no transfer learning, so say so when it happens ([`Weights::Random`]).
///
/// Errors: a name that is no weight set, architecture or ONNX file ([`ZooError::Unknown`]),
/// and an ONNX file that cannot be used ([`ZooError::Onnx`]): there is no architecture to
/// fall back to.
pub fn pretrained_or_random(
    name: &str,
    cache: &Cache,
    device: &Device,
) -> Result<(AnyBackbone, Weights), ZooError> {
    match pretrained(name, cache, device) {
        Ok(p) => Ok((p.backbone, Weights::Pretrained(p.provenance))),
        Err(e @ (ZooError::Unknown { .. } | ZooError::Onnx(_))) => Err(e),
        Err(e) if name.to_ascii_lowercase().ends_with(".onnx") => Err(e),
        Err(e) => {
            let set = resolve(name)?;
            log::warn!("{name}: no pretrained weights ({e}); random initialisation");
            let reason = e.to_string();
            Ok((set.arch.init(device), Weights::Random { reason }))
        }
    }
}

/// Like [`pretrained`], from a weights file already on disk (no cache, no network): `name`
/// says which weight set (or architecture, for its default set) the file holds, and the file
/// must match that set's published SHA-256 ([`ZooError::Checksum`] otherwise). For an
/// `.onnx` model used as it is, pass its path as `name` to [`pretrained`].
pub fn pretrained_from_file(
    name: &str,
    path: impl AsRef<Path>,
    device: &Device,
) -> Result<Pretrained, ZooError> {
    let path = path.as_ref();
    let set = resolve(name)?;
    if !path.is_file() {
        return Err(ZooError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let sha256 = match set.sha256 {
        Some(expected) => verify_sha256(path, expected)?,
        None => sha256_file(path).map_err(|source| ZooError::Io {
            path: path.to_path_buf(),
            source,
        })?,
    };
    let backbone = set.load(path, device)?;
    Ok(with_provenance(set, backbone, path.to_path_buf(), sha256))
}

fn resolve(name: &str) -> Result<&'static WeightSet, ZooError> {
    registry::resolve(name).ok_or_else(|| ZooError::Unknown {
        name: name.to_string(),
        known: registry::all()
            .iter()
            .map(|w| w.name)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// `backbone`, loaded from `file` of `set`, with its provenance.
fn with_provenance(
    set: &WeightSet,
    backbone: AnyBackbone,
    file: PathBuf,
    sha256: String,
) -> Pretrained {
    Pretrained {
        backbone,
        provenance: Provenance {
            weight_set: set.name.to_string(),
            architecture: set.arch.to_string(),
            source: set.source.to_string(),
            url: Some(set.url.to_string()),
            file,
            sha256,
            top1: Some(set.top1),
            license: Some(set.license.to_string()),
        },
    }
}

fn onnx_file(path: &Path, device: &Device) -> Result<Pretrained, ZooError> {
    let backbone = OnnxBackbone::load(path, &OnnxBackboneOptions::default(), device)?;
    let sha256 = sha256_file(path).map_err(|source| ZooError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let provenance = Provenance {
        weight_set: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        architecture: "ONNX graph".into(),
        source: format!(
            "the weights inside {} (cut at '{}')",
            path.display(),
            backbone.cut_tensor()
        ),
        url: None,
        file: path.to_path_buf(),
        sha256,
        top1: None,
        license: None,
    };
    Ok(Pretrained {
        backbone: backbone.into(),
        provenance,
    })
}
