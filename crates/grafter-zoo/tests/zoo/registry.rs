//! Every registry entry, checked by the same code (timm's `test_models` idea): its typed
//! architecture agrees with its name, builds with random weights, runs a forward at 64×64,
//! names stages that cover every parameter once, has a consistent preprocessing, and its
//! format's loader reads a fixture of that format — the model's own weights written under the
//! publisher's key names (torchvision's for `.pth`/`.safetensors`, a graph for ONNX) — back
//! into an identical backbone. A new entry is tested by adding it to the registry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Distribution, Tensor};
use grafter_core::weights::save_weights;
use grafter_core::{Backbone, Classifier, LinearHeadConfig};
use grafter_zoo::download::sha256_file;
use grafter_zoo::registry::{self, WeightFormat, WeightSet};
use grafter_zoo::{AnyBackbone, Architecture, ResNetVariant};

use crate::torch_save::write_state_dict;

/// (Burn module path, shape, values) of every float parameter and running statistic.
fn tensors<M: Module>(module: &M) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    struct Collect(Vec<(String, Vec<usize>, Vec<f32>)>, Vec<String>);
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let t = p.val();
            let shape = t.dims().to_vec();
            let v = t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            self.0.push((self.1.join("."), shape, v));
        }
    }
    let mut c = Collect(Vec::new(), Vec::new());
    module.visit(&mut c);
    c.0
}

/// BatchNorm statistics and affine parameters (1, 0, 0, 1 at init) made random, so that a
/// loader mixing them up is caught.
struct RandomBn(Vec<String>);

impl ModuleMapper for RandomBn {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.0.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.0.pop();
    }
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dist = match self.0.last().map(String::as_str) {
            Some("running_var" | "gamma") => Distribution::Uniform(0.5, 1.5),
            Some("running_mean" | "beta") => Distribution::Normal(0.0, 0.1),
            _ => return p,
        };
        p.map(|t| Tensor::random(t.shape(), dist, &t.device()))
    }
}

/// The architecture an entry's name spells, by the publishers' naming conventions:
/// `resnet50.tv2_in1k`, `vgg16_bn.tv_in1k`, `resnet50-v1-7` (ONNX Model Zoo: original v1
/// ResNets), `vgg16-bn-7`.
fn arch_from_name(name: &str) -> Architecture {
    let stem = name.split(['.', '-']).next().unwrap();
    let stem = match name.contains("-bn-") {
        true => format!("{stem}_bn"),
        false => stem.to_string(),
    };
    match Architecture::from_name(&stem).unwrap_or_else(|| panic!("{name}: no architecture")) {
        Architecture::ResNet { depth, .. } if name.contains("-v1-") => Architecture::ResNet {
            depth,
            variant: ResNetVariant::V1,
        },
        arch => arch,
    }
}

/// A torchvision state-dict key for a Burn path of the zoo's backbones (the reverse of the
/// loaders' remapping, written independently of it).
fn torchvision_key(arch: Architecture, path: &str) -> String {
    let path = path
        .replace(".gamma", ".weight")
        .replace(".beta", ".bias")
        .replace("downsample.conv.", "downsample.0.")
        .replace("downsample.bn.", "downsample.1.");
    let Architecture::Vgg { batch_norm, .. } = arch else {
        return path;
    };
    // blocks.B.layers.L.{conv,bn}.X -> features.I.X, counting conv (+bn) + relu per layer and
    // a max-pool per block.
    let parts: Vec<&str> = path.split('.').collect();
    let (b, l): (usize, usize) = (parts[1].parse().unwrap(), parts[3].parse().unwrap());
    let per_layer = if batch_norm { 3 } else { 2 };
    let convs = Architecture::vgg_config(&arch).unwrap().convs;
    let start: usize = convs[..b].iter().map(|n| n * per_layer + 1).sum();
    let index = start + l * per_layer + usize::from(parts[4] == "bn");
    format!("features.{index}.{}", parts[5..].join("."))
}

/// The pretrained classifier's tensors a state dict also holds (the loaders leave them).
fn classifier_tensors(arch: Architecture) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let name = match arch {
        Architecture::ResNet { .. } => "fc",
        Architecture::Vgg { .. } => "classifier.6",
    };
    vec![
        (format!("{name}.weight"), vec![3, 4], vec![0.5; 12]),
        (format!("{name}.bias"), vec![3], vec![0.1; 3]),
    ]
}

/// Writes `source`'s weights as a file of `format` laid out as its publishers do.
fn write_fixture(set: &WeightSet, source: &AnyBackbone, dir: &Path, device: &Device) -> PathBuf {
    let path = dir.join(format!("{}.{}", set.name, set.format.extension()));
    let mut state: Vec<_> = tensors(source)
        .into_iter()
        .map(|(p, shape, v)| {
            // the enum's variant is the first path segment
            let p = p.split_once('.').unwrap().1;
            (torchvision_key(set.arch, p), shape, v)
        })
        .collect();
    state.extend(classifier_tensors(set.arch));
    match set.format {
        WeightFormat::Pth => write_state_dict(&path, &state),
        WeightFormat::Safetensors => {
            let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = state
                .into_iter()
                .map(|(k, s, v)| (k, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
                .collect();
            let views = bytes.iter().map(|(k, s, b)| {
                let view =
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b);
                (k.clone(), view.unwrap())
            });
            safetensors::serialize_to_file(views, None, &path).unwrap();
        }
        WeightFormat::Onnx => {
            let head = LinearHeadConfig::new(source.feature_channels(), 10)
                .try_init(device)
                .unwrap();
            let model = Classifier::new(source.clone(), head).unwrap();
            grafter_onnx::export_classifier(&model, &path).unwrap();
        }
        WeightFormat::Burnpack => save_weights(source, &path).unwrap(),
    }
    path
}

fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// (id, module path) of every float parameter and running statistic.
fn param_ids<M: Module>(module: &M) -> Vec<(ParamId, String)> {
    struct Collect(Vec<(ParamId, String)>, Vec<String>);
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push((p.id, self.1.join(".")));
        }
    }
    let mut c = Collect(Vec::new(), Vec::new());
    module.visit(&mut c);
    c.0
}

/// Stages named as documented, none empty, and every parameter in exactly one of them.
fn check_stages(name: &str, backbone: &AnyBackbone) {
    let stages = backbone.stages();
    let expected: Vec<String> = match backbone {
        AnyBackbone::ResNet(_) => ["stem", "layer1", "layer2", "layer3", "layer4"]
            .map(String::from)
            .to_vec(),
        _ => (1..=5).map(|i| format!("block{i}")).collect(),
    };
    let names: Vec<String> = stages.iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, expected, "{name}: stage names");
    let mut per_stage = vec![0usize; stages.len()];
    for (id, path) in param_ids(backbone) {
        let owners: Vec<usize> = (0..stages.len())
            .filter(|&i| stages[i].params.matches(&id, Some(&path)))
            .collect();
        assert_eq!(owners.len(), 1, "{name}: {path} is in stages {owners:?}");
        per_stage[owners[0]] += 1;
    }
    assert!(per_stage.iter().all(|&n| n > 0), "{name}: {per_stage:?}");
}

#[test]
fn every_registry_entry_builds_runs_names_its_stages_and_loads_its_format() {
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();
    let input = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    let mut fixtures: HashMap<(Architecture, &str), (AnyBackbone, PathBuf)> = HashMap::new();
    let mut uses: HashMap<(Architecture, &str), usize> = HashMap::new();
    for set in registry::all() {
        *uses.entry((set.arch, set.format.extension())).or_default() += 1;
    }
    for set in registry::all() {
        let key = (set.arch, set.format.extension());
        let name = set.name;
        assert_eq!(set.arch, arch_from_name(name), "{name}: architecture");
        assert!(set.file_name().ends_with(set.format.extension()), "{name}");
        assert_eq!(
            WeightFormat::of_path(Path::new(set.file_name())),
            Some(set.format)
        );

        // Preprocessing: ImageNet-sized, a sane crop, positive std, RGB statistics.
        let p = set.preprocess();
        assert_eq!(p.input_size, [224, 224], "{name}");
        assert!(p.crop_ratio > 0.5 && p.crop_ratio <= 1.0, "{name}: {p:?}");
        assert!(p.resize_size() >= 224, "{name}: {p:?}");
        assert!(p.std.iter().all(|s| *s > 0.0) && p.mean.iter().all(|m| (0.0..1.0).contains(m)));

        // Fixture: the architecture with random weights, written in the entry's format once
        // per (architecture, format), loaded back through the entry's own loader.
        let (source, path) = fixtures.entry(key).or_insert_with(|| {
            let source = set.arch.init(&device).map(&mut RandomBn(Vec::new()));
            let path = write_fixture(set, &source, tmp.path(), &device);
            (source, path)
        });
        let (loaded, sha256) = set
            .load_with_sha256(path, &device)
            .unwrap_or_else(|e| panic!("{name}: its loader refused its fixture: {e}"));
        // the digest a provenance records (a .pth's: its pre-load check's) is the file's
        assert_eq!(
            sha256,
            sha256_file(path).unwrap(),
            "{name}: the digest of the loaded file"
        );
        assert_eq!(
            loaded.preprocess(),
            p,
            "{name}: the loaded backbone's preprocess"
        );
        assert_eq!(loaded.kind(), source.kind(), "{name}");
        let channels = set.arch.feature_channels();
        assert_eq!(loaded.feature_channels(), channels, "{name}");
        check_stages(name, &loaded);

        let want = source.forward_features(input.clone());
        assert_eq!(
            want.dims(),
            [1, channels, 2, 2],
            "{name}: feature map at 64x64"
        );
        let scale = want.clone().abs().max().into_scalar::<f32>();
        let diff = max_diff(want, loaded.forward_features(input.clone()));
        // The ONNX loader goes through f32 host copies and BatchNorm's ε: near, not exact.
        let tolerance = match set.format {
            WeightFormat::Onnx => 1e-5 * scale.max(1.0),
            _ => 0.0,
        };
        assert!(
            diff <= tolerance,
            "{name}: loaded features differ by {diff}"
        );
        println!(
            "OK {name:<22} {} {:?}: max diff {diff:e}",
            set.arch, set.format
        );

        // A fixture is deleted after its last entry: a VGG state dict is 530 MiB.
        let left = uses.get_mut(&key).unwrap();
        *left -= 1;
        if *left == 0 {
            let (_, path) = fixtures.remove(&key).unwrap();
            std::fs::remove_file(path).unwrap();
        }
    }
}

#[test]
fn a_fixture_of_another_architecture_is_refused_naming_the_file() {
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();
    let resnet34 = registry::find("resnet34.tv_in1k").unwrap();
    let path = write_fixture(resnet34, &resnet34.arch.init(&device), tmp.path(), &device);
    let resnet18 = registry::find("resnet18.tv_in1k").unwrap();
    let err = resnet18.load(&path, &device).unwrap_err().to_string();
    assert!(
        err.contains("resnet34.tv_in1k.pth") && err.contains("resnet18"),
        "{err}"
    );
}

#[test]
fn a_burn_record_loads_through_the_burnpack_loader() {
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();
    let arch = Architecture::from_name("resnet18").unwrap();
    let source = arch.init(&device).map(&mut RandomBn(Vec::new()));
    let input = Tensor::<4>::random([1, 3, 64, 64], Distribution::Default, &device);
    let path = tmp.path().join("resnet18.bpk");
    save_weights(&source, &path).unwrap();
    let loaded = (WeightFormat::Burnpack.loader())(&path, arch, &device).unwrap();
    let diff = max_diff(
        source.forward_features(input.clone()),
        loaded.forward_features(input),
    );
    assert_eq!(diff, 0.0);
    let vgg = Architecture::from_name("vgg11").unwrap();
    assert!((WeightFormat::Burnpack.loader())(&path, vgg, &device).is_err());
}
