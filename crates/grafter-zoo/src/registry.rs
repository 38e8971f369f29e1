//! A typed table of the pretrained weight sets grafter knows how to fetch.
//!
//! Every [`WeightSet`] names one downloadable file: where it lives, its SHA-256 (in full, or
//! the prefix its publisher embeds in the file name), its format, how inputs must be
//! preprocessed for it, and the ImageNet-1k top-1 accuracy its publisher reports. Fetch one with
//! [`Cache::fetch`](crate::download::Cache::fetch):
//!
//! ```no_run
//! use grafter_zoo::{download::Cache, registry};
//!
//! let weights = registry::find("resnet50.tv2_in1k").expect("known weight set");
//! let path = Cache::from_env()?.fetch(weights)?;
//! let preprocess = weights.preprocess();
//! assert_eq!(preprocess.resize_size(), 232);
//! # Ok::<(), grafter_zoo::ZooError>(())
//! ```
//!
//! # Sources of the numbers
//!
//! * **torchvision** (`*.tv_in1k`, `*.tv2_in1k`): URL, `acc@1` and eval transforms
//!   (`resize_size`, `crop_size`) from the `*_Weights` enums of
//!   [`torchvision/models/resnet.py`](https://github.com/pytorch/vision/blob/main/torchvision/models/resnet.py)
//!   and [`vgg.py`](https://github.com/pytorch/vision/blob/main/torchvision/models/vgg.py).
//!   The hash is the 8-hex-digit SHA-256 prefix torchvision embeds in each file name
//!   (`resnet50-11ad3fa6.pth`), which `torch.hub` checks as a prefix with `check_hash=True`.
//! * **timm** (`resnet50.a1_in1k`): the `model.safetensors` of the Hugging Face repository
//!   [`timm/resnet50.a1_in1k`](https://huggingface.co/timm/resnet50.a1_in1k); full SHA-256 from
//!   that file's Git LFS pointer, preprocessing from its `config.json` `pretrained_cfg`, top-1
//!   from its model card.
//! * **ONNX Model Zoo** (`resnet18-v1-7`, `resnet50-v1-7`, `vgg16-7`, `vgg16-bn-7`): files under
//!   `validated/vision/classification/` of [`onnx/models`](https://github.com/onnx/models); full
//!   SHA-256 and size from their Git LFS pointers, top-1 and preprocessing from the `resnet` and
//!   `vgg` READMEs there.

use std::path::Path;

use burn::tensor::Device;
use grafter_core::{Interpolation, Preprocess};

use crate::ZooError;
use crate::any::AnyBackbone;
use crate::architecture::{Architecture, ResNetDepth, ResNetVariant, VggDepth};

/// The serialisation format of a weight file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// A PyTorch `state_dict` pickled by `torch.save` (`.pth`).
    Pth,
    /// A [safetensors](https://github.com/huggingface/safetensors) file.
    Safetensors,
    /// An ONNX model (graph and initializers).
    Onnx,
    /// Burn's record format (burnpack), as written by
    /// [`save_weights`](grafter_core::weights::save_weights).
    Burnpack,
}

impl WeightFormat {
    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Pth => "pth",
            Self::Safetensors => "safetensors",
            Self::Onnx => "onnx",
            Self::Burnpack => "bpk",
        }
    }
}

/// One named, downloadable set of pretrained weights.
///
/// All fields are public and `'static` so that further sets can be declared as constants
/// outside this module and fetched with the same [`Cache`](crate::download::Cache).
#[derive(Clone, Copy, Debug)]
pub struct WeightSet {
    /// Unique name, `arch.tag` in timm's style (`resnet50.tv2_in1k`) or the ONNX Model Zoo file
    /// stem (`resnet50-v1-7`).
    pub name: &'static str,
    /// The architecture the weights fit, variant included (a ResNet-50 v1 from the ONNX Model
    /// Zoo does not take torchvision's v1.5 strides).
    pub arch: Architecture,
    /// Who published the weights, and under which identifier.
    pub source: &'static str,
    /// Direct download URL (redirects are followed).
    pub url: &'static str,
    /// Expected SHA-256 as lowercase hex: the full 64-digit digest, or a prefix of it (the
    /// 8 digits torchvision puts in its file names). `None` when unknown: nothing is checked.
    pub sha256: Option<&'static str>,
    /// Exact size in bytes, when published.
    pub size: Option<u64>,
    /// File format; its [`loader`](WeightFormat::loader) builds the backbone.
    pub format: WeightFormat,
    /// Builds the input preprocessing the weights were evaluated with. Prefer
    /// [`WeightSet::preprocess`].
    pub preprocess: fn() -> Preprocess,
    /// ImageNet-1k validation top-1 accuracy in percent, as published by [`source`](Self::source).
    pub top1: f32,
    /// Licence of the weights as stated by the publisher.
    pub license: &'static str,
    /// Caveats: evaluation resolution, architecture variant, …
    pub notes: &'static str,
}

impl WeightSet {
    /// The preprocessing the weights expect.
    pub fn preprocess(&self) -> Preprocess {
        (self.preprocess)()
    }

    /// The backbone of [`arch`](Self::arch) with the weights in `path` (a file of this set,
    /// in its [`format`](Self::format)) and this set's [`preprocess`](Self::preprocess).
    /// Nothing is checked about the file's origin: see [`crate::pretrained_from_file`] for
    /// the checked path.
    pub fn load(&self, path: &Path, device: &Device) -> Result<AnyBackbone, ZooError> {
        let backbone = (self.format.loader())(path, self.arch, device)?;
        Ok(backbone.with_preprocess(self.preprocess()))
    }

    /// [`load`](Self::load), with the SHA-256 of the file loaded (all 64 hex digits), for a
    /// provenance: a `.pth` is hashed by its pre-load check anyway, and that digest is the
    /// one returned, so the file is not read a further time for it.
    pub fn load_with_sha256(
        &self,
        path: &Path,
        device: &Device,
    ) -> Result<(AnyBackbone, String), ZooError> {
        let (backbone, sha256) = self.format.load_with_sha256(path, self.arch, device)?;
        Ok((backbone.with_preprocess(self.preprocess()), sha256))
    }

    /// The file name under which the weights are stored: the last segment of the URL path.
    pub fn file_name(&self) -> &'static str {
        let path = self.url.split(['?', '#']).next().unwrap_or(self.url);
        match path.rsplit('/').next() {
            Some(last) if !last.is_empty() => last,
            _ => self.name,
        }
    }
}

/// torchvision `IMAGENET1K_V1` evaluation transform: resize 256, crop 224, bilinear, ImageNet
/// mean/std.
fn torchvision_v1() -> Preprocess {
    Preprocess::imagenet()
}

/// torchvision `IMAGENET1K_V2` evaluation transform: resize 232, crop 224, bilinear, ImageNet
/// mean/std.
fn torchvision_v2() -> Preprocess {
    Preprocess {
        crop_ratio: 224.0 / 232.0,
        ..Preprocess::imagenet()
    }
}

/// timm `resnet50.a1_in1k` `pretrained_cfg`: 224 input, `crop_pct` 0.95, bicubic, ImageNet
/// mean/std.
fn timm_rsb() -> Preprocess {
    Preprocess {
        crop_ratio: 0.95,
        interpolation: Interpolation::Bicubic,
        ..Preprocess::imagenet()
    }
}

/// ONNX Model Zoo (MXNet Gluon) classification preprocessing: resize 256, crop 224, ImageNet
/// mean/std on RGB in [0, 1].
fn onnx_zoo() -> Preprocess {
    Preprocess::imagenet()
}

const TV_LICENSE: &str = "BSD-3-Clause (torchvision); trained on ImageNet-1k";
const TV_V1_NOTES: &str = "torchvision IMAGENET1K_V1: reproduces the paper with a simple recipe";
const TV_V2_NOTES: &str = "torchvision IMAGENET1K_V2: TorchVision's new training recipe; evaluated at resize 232, crop 224";
const TV_VGG_NOTES: &str =
    "torchvision IMAGENET1K_V1: trained from scratch with a simplified recipe";
const ONNX_LICENSE: &str = "Apache-2.0 (ONNX Model Zoo)";

const fn resnet(depth: ResNetDepth) -> Architecture {
    Architecture::resnet(depth)
}

const fn resnet_v1(depth: ResNetDepth) -> Architecture {
    Architecture::ResNet {
        depth,
        variant: ResNetVariant::V1,
    }
}

const fn vgg(depth: VggDepth, batch_norm: bool) -> Architecture {
    Architecture::vgg(depth, batch_norm)
}

const fn tv(
    name: &'static str,
    arch: Architecture,
    source: &'static str,
    url: &'static str,
    sha256: &'static str,
    top1: f32,
) -> WeightSet {
    WeightSet {
        name,
        arch,
        source,
        url,
        sha256: Some(sha256),
        size: None,
        format: WeightFormat::Pth,
        preprocess: torchvision_v1,
        top1,
        license: TV_LICENSE,
        notes: TV_V1_NOTES,
    }
}

const fn onnx(
    name: &'static str,
    arch: Architecture,
    url: &'static str,
    sha256: &'static str,
    size: u64,
    top1: f32,
    notes: &'static str,
) -> WeightSet {
    WeightSet {
        name,
        arch,
        source: "ONNX Model Zoo (onnx/models, validated/vision/classification)",
        url,
        sha256: Some(sha256),
        size: Some(size),
        format: WeightFormat::Onnx,
        preprocess: onnx_zoo,
        top1,
        license: ONNX_LICENSE,
        notes,
    }
}

/// Every known weight set.
///
/// Top-1 figures: torchvision `_metrics["ImageNet-1K"]["acc@1"]`; timm model card (at the
/// test resolution, see notes); ONNX Model Zoo README tables.
static REGISTRY: &[WeightSet] = &[
    // --- torchvision ResNets (resnet.py) ---
    tv(
        "resnet18.tv_in1k",
        resnet(ResNetDepth::R18),
        "torchvision ResNet18_Weights.IMAGENET1K_V1",
        "https://download.pytorch.org/models/resnet18-f37072fd.pth",
        "f37072fd",
        69.758,
    ),
    tv(
        "resnet34.tv_in1k",
        resnet(ResNetDepth::R34),
        "torchvision ResNet34_Weights.IMAGENET1K_V1",
        "https://download.pytorch.org/models/resnet34-b627a593.pth",
        "b627a593",
        73.314,
    ),
    WeightSet {
        preprocess: torchvision_v2,
        notes: TV_V2_NOTES,
        ..tv(
            "resnet50.tv2_in1k",
            resnet(ResNetDepth::R50),
            "torchvision ResNet50_Weights.IMAGENET1K_V2",
            "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
            "11ad3fa6",
            80.858,
        )
    },
    tv(
        "resnet50.tv_in1k",
        resnet(ResNetDepth::R50),
        "torchvision ResNet50_Weights.IMAGENET1K_V1",
        "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "0676ba61",
        76.130,
    ),
    WeightSet {
        preprocess: torchvision_v2,
        notes: TV_V2_NOTES,
        ..tv(
            "resnet101.tv2_in1k",
            resnet(ResNetDepth::R101),
            "torchvision ResNet101_Weights.IMAGENET1K_V2",
            "https://download.pytorch.org/models/resnet101-cd907fc2.pth",
            "cd907fc2",
            81.886,
        )
    },
    tv(
        "resnet101.tv_in1k",
        resnet(ResNetDepth::R101),
        "torchvision ResNet101_Weights.IMAGENET1K_V1",
        "https://download.pytorch.org/models/resnet101-63fe2227.pth",
        "63fe2227",
        77.374,
    ),
    WeightSet {
        preprocess: torchvision_v2,
        notes: TV_V2_NOTES,
        ..tv(
            "resnet152.tv2_in1k",
            resnet(ResNetDepth::R152),
            "torchvision ResNet152_Weights.IMAGENET1K_V2",
            "https://download.pytorch.org/models/resnet152-f82ba261.pth",
            "f82ba261",
            82.284,
        )
    },
    tv(
        "resnet152.tv_in1k",
        resnet(ResNetDepth::R152),
        "torchvision ResNet152_Weights.IMAGENET1K_V1",
        "https://download.pytorch.org/models/resnet152-394f9c45.pth",
        "394f9c45",
        78.312,
    ),
    // --- torchvision VGGs (vgg.py) ---
    WeightSet {
        notes: TV_VGG_NOTES,
        ..tv(
            "vgg11.tv_in1k",
            vgg(VggDepth::V11, false),
            "torchvision VGG11_Weights.IMAGENET1K_V1",
            "https://download.pytorch.org/models/vgg11-8a719046.pth",
            "8a719046",
            69.020,
        )
    },
    WeightSet {
        notes: TV_VGG_NOTES,
        ..tv(
            "vgg11_bn.tv_in1k",
            vgg(VggDepth::V11, true),
            "torchvision VGG11_BN_Weights.IMAGENET1K_V1",
            "https://download.pytorch.org/models/vgg11_bn-6002323d.pth",
            "6002323d",
            70.370,
        )
    },
    WeightSet {
        notes: TV_VGG_NOTES,
        ..tv(
            "vgg13.tv_in1k",
            vgg(VggDepth::V13, false),
            "torchvision VGG13_Weights.IMAGENET1K_V1",
            "https://download.pytorch.org/models/vgg13-19584684.pth",
            "19584684",
            69.928,
        )
    },
    WeightSet {
        notes: TV_VGG_NOTES,
        ..tv(
            "vgg13_bn.tv_in1k",
            vgg(VggDepth::V13, true),
            "torchvision VGG13_BN_Weights.IMAGENET1K_V1",
            "https://download.pytorch.org/models/vgg13_bn-abd245e5.pth",
            "abd245e5",
            71.586,
        )
    },
    WeightSet {
        notes: TV_VGG_NOTES,
        ..tv(
            "vgg16.tv_in1k",
            vgg(VggDepth::V16, false),
            "torchvision VGG16_Weights.IMAGENET1K_V1",
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            "397923af",
            71.592,
        )
    },
    WeightSet {
        notes: TV_VGG_NOTES,
        ..tv(
            "vgg16_bn.tv_in1k",
            vgg(VggDepth::V16, true),
            "torchvision VGG16_BN_Weights.IMAGENET1K_V1",
            "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
            "6c64b313",
            73.360,
        )
    },
    WeightSet {
        notes: TV_VGG_NOTES,
        ..tv(
            "vgg19.tv_in1k",
            vgg(VggDepth::V19, false),
            "torchvision VGG19_Weights.IMAGENET1K_V1",
            "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
            "dcbb9e9d",
            72.376,
        )
    },
    WeightSet {
        notes: TV_VGG_NOTES,
        ..tv(
            "vgg19_bn.tv_in1k",
            vgg(VggDepth::V19, true),
            "torchvision VGG19_BN_Weights.IMAGENET1K_V1",
            "https://download.pytorch.org/models/vgg19_bn-c79401a0.pth",
            "c79401a0",
            74.218,
        )
    },
    // --- timm (Hugging Face Hub) ---
    WeightSet {
        name: "resnet50.a1_in1k",
        arch: resnet(ResNetDepth::R50),
        source: "timm resnet50.a1_in1k (Hugging Face timm/resnet50.a1_in1k)",
        url: "https://huggingface.co/timm/resnet50.a1_in1k/resolve/main/model.safetensors",
        sha256: Some("773525d5821de224f8f30c33377b7a795d7863e08522698200d3217d3f2a41bb"),
        size: None,
        format: WeightFormat::Safetensors,
        preprocess: timm_rsb,
        top1: 81.22,
        license: "Apache-2.0 (timm model card); trained on ImageNet-1k",
        notes: "ResNet Strikes Back A1 recipe (LAMB, BCE loss). Torchvision-compatible ResNet-B \
                layout. Top-1 81.22 is the model card's figure at test size 288 with crop 1.0; \
                the preprocessing here is timm's default 224 input with crop_pct 0.95, bicubic.",
    },
    // --- ONNX Model Zoo ---
    onnx(
        "resnet18-v1-7",
        resnet_v1(ResNetDepth::R18),
        "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet18-v1-7.onnx",
        "4e8f8653e7a2222b3904cc3fe8e304cd8b339ce1d05fd24688162f86fb6df52c",
        46_820_737,
        69.93,
        "MXNet Gluon ResNet-18 v1 exported to ONNX opset 7.",
    ),
    onnx(
        "resnet50-v1-7",
        resnet_v1(ResNetDepth::R50),
        "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet50-v1-7.onnx",
        "af16a04a6ec48ac494065d4439fe9dea590d337b9ca6dc328160ccf04a217b9c",
        102_583_340,
        74.93,
        "MXNet Gluon ResNet-50 v1 exported to ONNX opset 7. Unlike torchvision's v1.5, each \
         downsampling bottleneck strides in its first 1x1 convolution, not in the 3x3.",
    ),
    onnx(
        "vgg16-7",
        vgg(VggDepth::V16, false),
        "https://github.com/onnx/models/raw/main/validated/vision/classification/vgg/model/vgg16-7.onnx",
        "f20805a3ecccaa88647bbab4ad011ff2412a9838485ea844de0fcbce349820b9",
        553_437_328,
        72.62,
        "MXNet Gluon VGG-16 exported to ONNX opset 7.",
    ),
    onnx(
        "vgg16-bn-7",
        vgg(VggDepth::V16, true),
        "https://github.com/onnx/models/raw/main/validated/vision/classification/vgg/model/vgg16-bn-7.onnx",
        "4fdceabf1ef715c9ed3020fa2eac1cb2a448296c086b03633c80cf47e1c5afce",
        553_512_191,
        72.71,
        "MXNet Gluon VGG-16 with BatchNorm exported to ONNX opset 7.",
    ),
];

/// All known weight sets, in a stable order.
pub fn all() -> &'static [WeightSet] {
    REGISTRY
}

/// The weight set called `name` (exact match, e.g. `"resnet50.tv2_in1k"`), if any.
pub fn find(name: &str) -> Option<&'static WeightSet> {
    REGISTRY.iter().find(|w| w.name == name)
}

/// All weight sets whose architecture is called `arch` (e.g. `"resnet50"`, `"vgg16_bn"`),
/// whatever their ResNet variant; the architecture's default first.
pub fn for_arch(arch: &str) -> impl Iterator<Item = &'static WeightSet> {
    REGISTRY.iter().filter(move |w| w.arch.name() == arch)
}

/// The weight set called `name`, or, for an architecture name (`"resnet50"`), that
/// architecture's default set: the first registered, torchvision's best.
///
/// ```
/// use grafter_zoo::registry;
///
/// assert_eq!(registry::resolve("resnet50").unwrap().name, "resnet50.tv2_in1k");
/// assert_eq!(registry::resolve("vgg16_bn").unwrap().name, "vgg16_bn.tv_in1k");
/// assert_eq!(registry::resolve("resnet50-v1-7").unwrap().name, "resnet50-v1-7");
/// assert!(registry::resolve("resnet42").is_none());
/// ```
pub fn resolve(name: &str) -> Option<&'static WeightSet> {
    find(name).or_else(|| for_arch(name).next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn registry_names_are_unique() {
        let mut seen = HashSet::new();
        for w in all() {
            assert!(seen.insert(w.name), "duplicate weight set name {}", w.name);
        }
        assert!(all().len() >= 21);
    }

    #[test]
    fn registry_entries_are_sane() {
        for w in all() {
            assert!(
                w.url.starts_with("https://") || w.url.starts_with("http://"),
                "{}: url {}",
                w.name,
                w.url
            );
            if let Some(h) = w.sha256 {
                assert!(
                    (8..=64).contains(&h.len())
                        && h.chars()
                            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                    "{}: bad sha256 {h}",
                    w.name
                );
            }
            assert!(
                w.top1 > 0.0 && w.top1 < 100.0,
                "{}: top1 {}",
                w.name,
                w.top1
            );
            assert!(!w.source.is_empty() && !w.license.is_empty());
            assert!(w.file_name().ends_with(w.format.extension()), "{}", w.name);
            let p = w.preprocess();
            assert_eq!(p.input_size, [224, 224], "{}", w.name);
        }
    }

    #[test]
    fn torchvision_hash_prefix_is_in_the_file_name() {
        for w in all()
            .iter()
            .filter(|w| w.url.contains("download.pytorch.org"))
        {
            let h = w.sha256.expect("torchvision entries carry a hash prefix");
            assert_eq!(h.len(), 8, "{}", w.name);
            let stem = w.file_name().trim_end_matches(".pth");
            assert!(
                stem.ends_with(&format!("-{h}")),
                "{}: {stem} vs {h}",
                w.name
            );
        }
    }

    #[test]
    fn registry_covers_the_required_sets() {
        for name in [
            "resnet18.tv_in1k",
            "resnet34.tv_in1k",
            "resnet50.tv_in1k",
            "resnet50.tv2_in1k",
            "resnet101.tv_in1k",
            "resnet152.tv_in1k",
            "vgg11.tv_in1k",
            "vgg11_bn.tv_in1k",
            "vgg13.tv_in1k",
            "vgg13_bn.tv_in1k",
            "vgg16.tv_in1k",
            "vgg16_bn.tv_in1k",
            "vgg19.tv_in1k",
            "vgg19_bn.tv_in1k",
            "resnet50.a1_in1k",
            "resnet50-v1-7",
            "resnet18-v1-7",
            "vgg16-7",
            "vgg16-bn-7",
        ] {
            assert!(find(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn find_and_preprocess() {
        let v2 = find("resnet50.tv2_in1k").unwrap();
        assert_eq!(v2.arch, Architecture::resnet50(ResNetVariant::V1_5));
        assert_eq!(v2.format, WeightFormat::Pth);
        assert_eq!(v2.file_name(), "resnet50-11ad3fa6.pth");
        assert_eq!(v2.preprocess().resize_size(), 232);
        assert_eq!(v2.preprocess().interpolation, Interpolation::Bilinear);
        assert!((v2.top1 - 80.858).abs() < 1e-4);

        let v1 = find("resnet50.tv_in1k").unwrap();
        assert_eq!(v1.preprocess().resize_size(), 256);

        let timm = find("resnet50.a1_in1k").unwrap();
        assert_eq!(timm.format, WeightFormat::Safetensors);
        assert_eq!(timm.file_name(), "model.safetensors");
        assert_eq!(timm.preprocess().interpolation, Interpolation::Bicubic);
        assert_eq!(timm.preprocess().resize_size(), 236);

        let onnx = find("vgg16-bn-7").unwrap();
        assert_eq!(onnx.format, WeightFormat::Onnx);
        assert_eq!(onnx.arch, Architecture::vgg(VggDepth::V16, true));
        assert_eq!(
            find("resnet50-v1-7").unwrap().arch,
            Architecture::resnet50(ResNetVariant::V1)
        );
        assert_eq!(onnx.preprocess(), Preprocess::imagenet());

        assert!(find("resnet50").is_none());
        assert!(find("").is_none());
        assert_eq!(for_arch("resnet50").count(), 4);
        assert_eq!(for_arch("vgg16_bn").count(), 2);
    }
}
