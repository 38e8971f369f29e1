//! Loading torchvision / timm state dicts (`.safetensors` or `.pth`) into the zoo's models.
//!
//! The zoo's modules use torchvision's parameter names, so the mapping is a handful of
//! regular expressions: the Sequential indices of `downsample` and VGG's `features` and
//! `classifier`, plus the `backbone.`/`head.` prefixes of [`Classifier`]. burn-store's
//! PyTorch adapter transposes Linear weights and renames BatchNorm's weight/bias to
//! gamma/beta. A `.pth` is read by burn-store's own pickle reader, which executes no code,
//! after the checks of `pth_scan` on the same bytes.

use std::path::Path;

use burn::store::{
    ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::Device;
use grafter_core::{Classifier, LinearHead, LinearHeadConfig};

use crate::ZooError;
use crate::download::{sha256_bytes, sha256_file};
use crate::resnet::{ResNet, ResNetConfig};
use crate::vgg::{Vgg, VggConfig};
use crate::vgg_head::VggHead;

/// A full ImageNet ResNet: the backbone and torchvision's `fc` as a linear head.
pub type TorchvisionResNet = Classifier<ResNet, LinearHead>;
/// A full ImageNet VGG: the backbone and torchvision's classifier.
pub type TorchvisionVgg = Classifier<Vgg, VggHead>;

/// Key remappings from torchvision names to a `Classifier<ResNet, LinearHead>`.
pub fn resnet_remaps() -> Vec<(String, String)> {
    [
        (r"^(.*)downsample\.0\.(.*)$", "${1}downsample.conv.${2}"),
        (r"^(.*)downsample\.1\.(.*)$", "${1}downsample.bn.${2}"),
        (r"^(conv1|bn1|layer[1-4])\.(.*)$", "backbone.${1}.${2}"),
        (r"^fc\.(.*)$", "head.linear.${1}"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

/// Key remappings from torchvision names to a `Classifier<Vgg, VggHead>`.
pub fn vgg_remaps(cfg: &VggConfig) -> Vec<(String, String)> {
    let mut remaps = Vec::new();
    for (b, block) in cfg.torchvision_indices().iter().enumerate() {
        for (l, (conv, bn)) in block.iter().enumerate() {
            remaps.push((
                format!(r"^features\.{conv}\.(.*)$"),
                format!("backbone.blocks.{b}.layers.{l}.conv.${{1}}"),
            ));
            if let Some(bn) = bn {
                remaps.push((
                    format!(r"^features\.{bn}\.(.*)$"),
                    format!("backbone.blocks.{b}.layers.{l}.bn.${{1}}"),
                ));
            }
        }
    }
    for (i, fc) in [(0, "fc1"), (3, "fc2"), (6, "fc3")] {
        remaps.push((
            format!(r"^classifier\.{i}\.(.*)$"),
            format!("head.{fc}.${{1}}"),
        ));
    }
    remaps
}

/// A full torchvision ResNet with weights from a state dict.
pub fn load_resnet(
    path: impl AsRef<Path>,
    cfg: &ResNetConfig,
    num_classes: usize,
    device: &Device,
) -> Result<TorchvisionResNet, ZooError> {
    let head = LinearHeadConfig::new(cfg.feature_channels(), num_classes)
        .try_init(device)
        .map_err(|e| ZooError::Config(e.to_string()))?;
    let model =
        Classifier::new(cfg.init(device), head).map_err(|e| ZooError::Config(e.to_string()))?;
    load_state_dict(model, path.as_ref(), &resnet_remaps())
}

/// A full torchvision VGG with weights from a state dict.
pub fn load_vgg(
    path: impl AsRef<Path>,
    cfg: &VggConfig,
    num_classes: usize,
    device: &Device,
) -> Result<TorchvisionVgg, ZooError> {
    let model = Classifier::new(cfg.init(device), VggHead::new(num_classes, 0.5, device))
        .map_err(|e| ZooError::Config(e.to_string()))?;
    load_state_dict(model, path.as_ref(), &vgg_remaps(cfg))
}

/// The SHA-256 of a `.pth` whose bytes passed the pre-load checks (see [`crate::pth_scan`]:
/// exact global allow-list, every opcode, tensor views inside their storages).
///
/// burn-store's reader opens the file by path, so it reads it a second time; [`Self::unchanged`]
/// hashes the file again after that read and refuses the load when the bytes differ, so what is
/// loaded is what was checked without a private copy of the file (a VGG-16 state dict is
/// 530 MiB, and `/tmp` is often a small RAM disk).
pub(crate) struct CheckedPth {
    sha256: String,
}

impl CheckedPth {
    /// Reads `path` once, checks its bytes and remembers their digest.
    pub(crate) fn read(path: &Path) -> Result<Self, ZooError> {
        let bytes = std::fs::read(path).map_err(|source| ZooError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        crate::pth_scan::check(path, &bytes)?;
        Ok(Self {
            sha256: sha256_bytes(&bytes),
        })
    }

    /// The SHA-256 of the checked bytes: after [`Self::unchanged`], that of the file loaded,
    /// so a provenance records it without reading the file once more.
    pub(crate) fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Fails when the file at `path` no longer holds the checked bytes (it was replaced or
    /// written to while it was being loaded); the caller then drops what it read.
    pub(crate) fn unchanged(&self, path: &Path) -> Result<(), ZooError> {
        let now = sha256_file(path).map_err(|source| ZooError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if now == self.sha256 {
            Ok(())
        } else {
            Err(ZooError::Weights {
                path: path.to_path_buf(),
                reason: "the file changed while it was being loaded (its bytes are no longer \
                         those that were checked); nothing was loaded"
                    .into(),
            })
        }
    }
}

/// Loads a PyTorch-named state dict into `model`, failing on the first missing parameter or
/// shape mismatch. Only `num_batches_tracked` (unused by Burn) may be left over.
pub fn load_state_dict<M: ModuleSnapshot>(
    mut model: M,
    path: &Path,
    remaps: &[(String, String)],
) -> Result<M, ZooError> {
    let weights = |reason: String| ZooError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(ZooError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let result: ApplyResult = match ext {
        "safetensors" => {
            let mut store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .allow_partial(true)
                .validate(false);
            for (from, to) in remaps {
                store = store.with_key_remapping(from, to.clone());
            }
            model
                .load_from(&mut store)
                .map_err(|e| weights(format!("cannot read safetensors: {e}")))?
        }
        "pth" | "pt" | "bin" => {
            let checked = CheckedPth::read(path)?;
            let mut store = PytorchStore::from_file(path)
                .allow_partial(true)
                .validate(false);
            for (from, to) in remaps {
                store = store.with_key_remapping(from, to.clone());
            }
            let result = model
                .load_from(&mut store)
                .map_err(|e| weights(format!("cannot read PyTorch file: {e}")))?;
            checked.unchanged(path)?;
            result
        }
        other => {
            return Err(weights(format!(
                "unknown weight format '.{other}' (expected .safetensors or .pth)"
            )));
        }
    };
    if let Some(e) = result.errors.first() {
        let more = match result.errors.len() - 1 {
            0 => String::new(),
            n => format!(" (and {n} more mismatches; wrong architecture?)"),
        };
        return Err(weights(format!("{e}{more}")));
    }
    if let Some((missing, _)) = result.missing.first() {
        return Err(weights(format!(
            "parameter {missing} is not in the file ({} missing in all; wrong architecture?)",
            result.missing.len()
        )));
    }
    let unused: Vec<&String> = result
        .unused
        .iter()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .collect();
    if let Some(u) = unused.first() {
        return Err(weights(format!(
            "tensor {u} of the file has no place in the model ({} unused in all; wrong architecture?)",
            unused.len()
        )));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pth_that_changes_after_its_check_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.pth");
        std::fs::write(&path, b"the checked bytes").unwrap();
        let checked = CheckedPth {
            sha256: sha256_bytes(b"the checked bytes"),
        };
        checked.unchanged(&path).unwrap();
        std::fs::write(&path, b"the swapped bytes").unwrap();
        let err = checked.unchanged(&path).unwrap_err().to_string();
        assert!(
            err.contains("weights.pth") && err.contains("changed while it was being loaded"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        let err = checked.unchanged(&path).unwrap_err().to_string();
        assert!(err.contains("weights.pth"), "{err}");
    }
}
