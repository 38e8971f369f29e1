//! One loader per weight format, all of one signature ([`LoadBackbone`]): a file and an
//! [`Architecture`] in, the backbone with those weights out. The registry's entries pick
//! theirs through [`WeightFormat::loader`].
//!
//! Only the backbone is read: the pretrained classifier (torchvision's `fc` / `classifier`,
//! an ONNX graph's final `Gemm`s) stays in the file, since fine-tuning grafts a new head.
//! Every backbone parameter must be in the file with its shape, and nothing but the
//! classifier may be left over, so weights of another architecture are refused.

use std::path::Path;

use burn::store::{
    ApplyResult, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::Device;
use grafter_core::weights::load_weights;

use crate::ZooError;
use crate::any::AnyBackbone;
use crate::architecture::Architecture;
use crate::download::sha256_file;
use crate::onnx_assign::{load_resnet_onnx, load_vgg_backbone_onnx};
use crate::registry::WeightFormat;
use crate::torchvision::{CheckedPth, resnet_remaps, vgg_remaps};

/// The signature every weight format's loader has.
pub type LoadBackbone = fn(&Path, Architecture, &Device) -> Result<AnyBackbone, ZooError>;

impl WeightFormat {
    /// The loader of this format.
    pub fn loader(self) -> LoadBackbone {
        match self {
            Self::Pth => load_pth,
            Self::Safetensors => load_safetensors,
            Self::Onnx => load_onnx,
            Self::Burnpack => load_burnpack,
        }
    }

    /// [`loader`](Self::loader)'s backbone with the SHA-256 of the file it was loaded from,
    /// the file read once for both where the loader hashes it anyway (a `.pth`, checked
    /// before and after burn-store reads it), hashed after the load otherwise.
    pub(crate) fn load_with_sha256(
        self,
        path: &Path,
        arch: Architecture,
        device: &Device,
    ) -> Result<(AnyBackbone, String), ZooError> {
        if self == Self::Pth {
            return load_pth_sha256(path, arch, device);
        }
        let backbone = (self.loader())(path, arch, device)?;
        let sha256 = sha256_file(path).map_err(|source| ZooError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok((backbone, sha256))
    }

    /// The format of a file, from its extension (`.pth`/`.pt`/`.bin`, `.safetensors`,
    /// `.onnx`, `.bpk`).
    pub fn of_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "pth" | "pt" | "bin" => Self::Pth,
            "safetensors" => Self::Safetensors,
            "onnx" => Self::Onnx,
            "bpk" => Self::Burnpack,
            _ => return None,
        })
    }
}

/// A torchvision/timm state dict pickled by `torch.save` (`.pth`). The file is checked (exact
/// global allow-list, every opcode, tensor views inside their storages) before burn-store's
/// reader, which executes nothing, reads it; the load is refused if the file's bytes changed
/// in between.
pub fn load_pth(path: &Path, arch: Architecture, device: &Device) -> Result<AnyBackbone, ZooError> {
    load_pth_sha256(path, arch, device).map(|(backbone, _)| backbone)
}

/// [`load_pth`], with the SHA-256 of the bytes it checked and loaded: the check's own digest,
/// so a provenance need not read the file again (a VGG-16 state dict is 530 MiB).
fn load_pth_sha256(
    path: &Path,
    arch: Architecture,
    device: &Device,
) -> Result<(AnyBackbone, String), ZooError> {
    exists(path)?;
    let checked = CheckedPth::read(path)?;
    let store = || {
        remapped(arch, PytorchStore::from_file(path), |s, from, to| {
            s.with_key_remapping(from, to)
        })
        .allow_partial(true)
        .validate(false)
    };
    let backbone: AnyBackbone = match arch.init(device) {
        AnyBackbone::ResNet(m) => fill(m, &mut store(), path, arch)?.into(),
        AnyBackbone::Vgg(m) => fill(m, &mut store(), path, arch)?.into(),
        AnyBackbone::Onnx(m) => m.into(),
    };
    checked.unchanged(path)?;
    Ok((backbone, checked.sha256().to_string()))
}

/// A torchvision/timm state dict in a `.safetensors` file.
pub fn load_safetensors(
    path: &Path,
    arch: Architecture,
    device: &Device,
) -> Result<AnyBackbone, ZooError> {
    exists(path)?;
    let store = || {
        remapped(arch, SafetensorsStore::from_file(path), |s, from, to| {
            s.with_key_remapping(from, to)
        })
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true)
        .validate(false)
    };
    match arch.init(device) {
        AnyBackbone::ResNet(m) => fill(m, &mut store(), path, arch).map(Into::into),
        AnyBackbone::Vgg(m) => fill(m, &mut store(), path, arch).map(Into::into),
        AnyBackbone::Onnx(m) => Ok(m.into()),
    }
}

/// An ONNX classifier of the architecture (torchvision export, ONNX Model Zoo, tf2onnx),
/// its weights mapped by graph structure.
pub fn load_onnx(
    path: &Path,
    arch: Architecture,
    device: &Device,
) -> Result<AnyBackbone, ZooError> {
    match (arch.resnet_config(), arch.vgg_config()) {
        (Some(cfg), _) => Ok(load_resnet_onnx(path, &cfg, device)?.backbone.into()),
        (_, Some(cfg)) => {
            let preprocess = grafter_core::Preprocess::imagenet();
            Ok(load_vgg_backbone_onnx(path, &cfg, preprocess, device)?.into())
        }
        (None, None) => Err(ZooError::Config(format!("{arch}: no ONNX loader"))),
    }
}

/// A backbone saved in Burn's record format by
/// [`save_weights`](grafter_core::weights::save_weights), either the bare `ResNet`/`Vgg`
/// or an [`AnyBackbone`] holding one.
pub fn load_burnpack(
    path: &Path,
    arch: Architecture,
    device: &Device,
) -> Result<AnyBackbone, ZooError> {
    exists(path)?;
    let as_record = |e: grafter_core::GrafterError| ZooError::Weights {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if let Ok(any) = load_weights(arch.init(device), path) {
        return Ok(any);
    }
    match arch.init(device) {
        AnyBackbone::ResNet(m) => Ok(load_weights(m, path).map_err(as_record)?.into()),
        AnyBackbone::Vgg(m) => Ok(load_weights(m, path).map_err(as_record)?.into()),
        AnyBackbone::Onnx(m) => Ok(m.into()),
    }
}

fn exists(path: &Path) -> Result<(), ZooError> {
    if path.is_file() {
        return Ok(());
    }
    Err(ZooError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
    })
}

/// torchvision key names → the bare backbone's paths: the classifier's keys are not mapped
/// (they stay unused), the `backbone.` prefix of a full classifier is dropped.
fn backbone_remaps(arch: Architecture) -> Vec<(String, String)> {
    let all = match arch.vgg_config() {
        Some(cfg) => vgg_remaps(&cfg),
        None => resnet_remaps(),
    };
    all.into_iter()
        .filter(|(_, to)| !to.starts_with("head."))
        .map(|(from, to)| {
            let to = to
                .strip_prefix("backbone.")
                .map(str::to_string)
                .unwrap_or(to);
            (from, to)
        })
        .collect()
}

fn remapped<S>(arch: Architecture, store: S, remap: impl Fn(S, &str, String) -> S) -> S {
    backbone_remaps(arch)
        .into_iter()
        .fold(store, |s, (from, to)| remap(s, &from, to))
}

/// The keys of a torchvision state dict that belong to the pretrained classifier.
fn is_classifier(key: &str) -> bool {
    key.starts_with("fc.") || key.starts_with("classifier.")
}

fn fill<M: ModuleSnapshot, S: ModuleStore>(
    mut model: M,
    store: &mut S,
    path: &Path,
    arch: Architecture,
) -> Result<M, ZooError> {
    let weights = |reason: String| ZooError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    let result: ApplyResult = model
        .load_from(store)
        .map_err(|e| weights(format!("cannot read the weights: {e}")))?;
    if let Some(e) = result.errors.first() {
        let more = match result.errors.len() - 1 {
            0 => String::new(),
            n => format!(" (and {n} more mismatches)"),
        };
        return Err(weights(format!("{e}{more}; not {arch} weights?")));
    }
    if let Some((missing, _)) = result.missing.first() {
        return Err(weights(format!(
            "parameter {missing} is not in the file ({} missing in all; not {arch} weights?)",
            result.missing.len()
        )));
    }
    let unused: Vec<&String> = result
        .unused
        .iter()
        .filter(|k| !k.ends_with("num_batches_tracked") && !is_classifier(k))
        .collect();
    if let Some(u) = unused.first() {
        return Err(weights(format!(
            "tensor {u} of the file has no place in {arch} ({} unused in all)",
            unused.len()
        )));
    }
    Ok(model)
}
