//! Which backbone to fine-tune, and which weights it starts from — stated, never guessed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use burn::tensor::Device;
use grafter::onnx::{OnnxBackbone, OnnxBackboneOptions};
use grafter::zoo::download::{Cache, Downloader};
use grafter::zoo::registry::{self, WeightFormat, WeightSet};
use grafter::zoo::{
    ResNet, ResNetConfig, Vgg, VggConfig, load_resnet, load_resnet_onnx, load_vgg,
    load_vgg_backbone_onnx,
};

/// The `--backbone` choices.
#[derive(Clone, Debug)]
pub enum Choice {
    /// ResNet-18/34/50/101/152.
    ResNet(usize),
    /// VGG-16 (without BatchNorm, as torchvision's `vgg16`).
    Vgg16,
    /// Any ONNX CNN file, cut automatically before its classifier.
    Onnx(PathBuf),
}

impl std::str::FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.to_ascii_lowercase().ends_with(".onnx") {
            return Ok(Choice::Onnx(PathBuf::from(s)));
        }
        match s {
            "vgg16" => Ok(Choice::Vgg16),
            _ => s
                .strip_prefix("resnet")
                .and_then(|d| d.parse().ok())
                .filter(|d| ResNetConfig::depth(*d).is_some())
                .map(Choice::ResNet)
                .ok_or_else(|| {
                    format!(
                        "unknown backbone '{s}': use resnet18|34|50|101|152, vgg16 or a .onnx file"
                    )
                }),
        }
    }
}

impl Choice {
    /// The architecture name the registry uses.
    pub fn arch(&self) -> String {
        match self {
            Choice::ResNet(d) => format!("resnet{d}"),
            Choice::Vgg16 => "vgg16".into(),
            Choice::Onnx(p) => p.display().to_string(),
        }
    }

    /// The registry's default weight set for this architecture.
    pub fn default_weights(&self) -> Option<&'static WeightSet> {
        let preferred = match self {
            Choice::ResNet(50) => "resnet50.tv2_in1k",
            Choice::ResNet(d) => return registry::for_arch(&format!("resnet{d}")).next(),
            Choice::Vgg16 => "vgg16.tv_in1k",
            Choice::Onnx(_) => return None,
        };
        registry::find(preferred)
    }
}

/// A backbone with its weights' provenance.
pub struct Loaded<B> {
    /// The backbone.
    pub backbone: B,
    /// Where its weights came from, in words.
    pub weights: String,
    /// False when the weights are a random initialisation.
    pub pretrained: bool,
}

/// The local file of `set`: cached, else downloaded unless `offline`.
fn weights_file(set: &WeightSet, offline: bool) -> Result<PathBuf, String> {
    let cache = Cache::from_env().map_err(|e| e.to_string())?;
    if let Some(path) = cache.cached(set).map_err(|e| e.to_string())? {
        return Ok(path);
    }
    if offline {
        return Err(format!(
            "not in the cache ({}) and --offline was given",
            cache.path_for(set).display()
        ));
    }
    eprintln!("downloading {} from {}", set.name, set.url);
    let downloader = Downloader::new()
        .progress(true)
        .retries(1)
        .connect_timeout(Duration::from_secs(10));
    cache
        .with_downloader(downloader)
        .fetch(set)
        .map_err(|e| e.to_string())
}

fn warn_random(arch: &str, why: &str) -> String {
    let bar = "!".repeat(78);
    eprintln!("\n{bar}");
    eprintln!("!! NO PRETRAINED WEIGHTS for {arch}: {why}");
    eprintln!("!! The backbone starts from a RANDOM initialisation. This is not transfer");
    eprintln!("!! learning and accuracy will be poor. Run once with network access (the");
    eprintln!("!! weights are cached in ~/.cache/grafter) or put the file in the cache.");
    eprintln!("{bar}\n");
    format!("RANDOM initialisation (no pretrained weights: {why})")
}

/// Resolves the weight set to use: `name` if given, else the architecture's default.
fn weight_set(choice: &Choice, name: Option<&str>) -> Result<Option<&'static WeightSet>, String> {
    match name {
        Some("none") => Ok(None),
        Some(n) => registry::find(n)
            .map(Some)
            .ok_or_else(|| format!("unknown weight set '{n}' (see grafter::zoo::registry::all())")),
        None => Ok(choice.default_weights()),
    }
}

/// A zoo ResNet, pretrained when its weights can be had.
pub fn resnet(
    depth: usize,
    weights: Option<&str>,
    offline: bool,
    device: &Device,
) -> Result<Loaded<ResNet>, String> {
    let arch = format!("resnet{depth}");
    let cfg = ResNetConfig::depth(depth).ok_or_else(|| format!("no ResNet-{depth}"))?;
    let Some(set) = weight_set(&Choice::ResNet(depth), weights)? else {
        return Ok(Loaded {
            backbone: cfg.init(device),
            weights: warn_random(&arch, "--weights none"),
            pretrained: false,
        });
    };
    let loaded = weights_file(set, offline).and_then(|path| {
        let mut model = match set.format {
            WeightFormat::Onnx => {
                let cfg = cfg.clone().with_stride_in_1x1(set.name.contains("-v1-"));
                load_resnet_onnx(&path, &cfg, device).map_err(|e| e.to_string())?
            }
            _ => load_resnet(&path, &cfg, 1000, device).map_err(|e| e.to_string())?,
        };
        model.backbone.preprocess = set.preprocess();
        Ok((model.backbone, path))
    });
    Ok(match loaded {
        Ok((backbone, path)) => Loaded {
            backbone,
            weights: describe(set, &path),
            pretrained: true,
        },
        Err(why) => Loaded {
            backbone: cfg.init(device),
            weights: warn_random(&arch, &format!("{}: {why}", set.name)),
            pretrained: false,
        },
    })
}

/// A zoo VGG-16, pretrained when its weights can be had.
pub fn vgg16(weights: Option<&str>, offline: bool, device: &Device) -> Result<Loaded<Vgg>, String> {
    let cfg = VggConfig::depth(16, false).ok_or("no VGG-16")?;
    let Some(set) = weight_set(&Choice::Vgg16, weights)? else {
        return Ok(Loaded {
            backbone: cfg.init(device),
            weights: warn_random("vgg16", "--weights none"),
            pretrained: false,
        });
    };
    let loaded = weights_file(set, offline).and_then(|path| {
        let backbone = match set.format {
            WeightFormat::Onnx => load_vgg_backbone_onnx(&path, &cfg, set.preprocess(), device)
                .map_err(|e| e.to_string())?,
            _ => {
                load_vgg(&path, &cfg, 1000, device)
                    .map_err(|e| e.to_string())?
                    .backbone
            }
        };
        Ok((backbone, path))
    });
    Ok(match loaded {
        Ok((backbone, path)) => Loaded {
            backbone,
            weights: describe(set, &path),
            pretrained: true,
        },
        Err(why) => Loaded {
            backbone: cfg.init(device),
            weights: warn_random("vgg16", &format!("{}: {why}", set.name)),
            pretrained: false,
        },
    })
}

/// Any ONNX CNN: its own weights, cut before its classifier.
pub fn onnx(path: &Path, device: &Device) -> Result<Loaded<OnnxBackbone>, String> {
    let backbone = OnnxBackbone::load(path, &OnnxBackboneOptions::default(), device)
        .map_err(|e| e.to_string())?;
    Ok(Loaded {
        weights: format!(
            "the weights inside {} (cut at '{}')",
            path.display(),
            backbone.cut_tensor()
        ),
        backbone,
        pretrained: true,
    })
}

fn describe(set: &WeightSet, path: &Path) -> String {
    format!(
        "{} — {} (ImageNet top-1 {:.1}%), file {}",
        set.name,
        set.source,
        set.top1,
        path.display()
    )
}
