//! Graphs written by `torch.onnx.export` itself (tests/fixtures/make_torch_fixtures.py): the
//! TorchScript exporter (opset 17) and the dynamo exporter (opset 20, static and dynamic
//! batch) of torchvision families with random weights. Logits and the automatic cut's
//! features against torch's, at batch sizes other than the export batch and a second input
//! size; gradients reach every trainable parameter.
//!
//! Fixtures come from `GRAFTER_TORCH_FIXTURES`; unset, every test is recorded as SKIPPED (with
//! `GRAFTER_REQUIRE_TORCH_FIXTURES=1` a missing fixture fails instead).

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use grafter::Backbone;
use grafter_onnx::{CutPoint, OnnxBackbone, OnnxBackboneOptions};

use crate::fixtures::{host, max_rel_err};
use crate::skip::skip_unless_required;

const TOLERANCE: f64 = 1e-4;

/// Where a family of exported fixtures lives: the variable naming its directory, the switch
/// that turns a missing fixture into a failure, and the script that makes them.
pub(crate) struct Fixtures {
    pub var: &'static str,
    pub require: &'static str,
    pub script: &'static str,
}

const TORCH: Fixtures = Fixtures {
    var: "GRAFTER_TORCH_FIXTURES",
    require: "GRAFTER_REQUIRE_TORCH_FIXTURES",
    script: "tests/fixtures/make_torch_fixtures.py",
};

/// The fixture directory of one torch export, or `None` (SKIPPED) when they were not made.
fn export_dir(name: &str) -> Option<PathBuf> {
    fixture_dir(&TORCH, name)
}

/// The fixture directory of one export, or `None` (SKIPPED) when the fixtures were not made
/// (with the `require` switch at `1`, as `tests/run.sh` sets after making them, a missing
/// fixture fails instead).
pub(crate) fn fixture_dir(fixtures: &Fixtures, name: &str) -> Option<PathBuf> {
    let Some(root) = std::env::var_os(fixtures.var) else {
        skip_unless_required(
            fixtures.require,
            &format!(
                "{} is not set; make the fixtures with `{} --out DIR`",
                fixtures.var, fixtures.script
            ),
        );
        return None;
    };
    let dir = PathBuf::from(root).join(name);
    if dir.join("meta.json").is_file() {
        return Some(dir);
    }
    skip_unless_required(
        fixtures.require,
        &format!("fixture {} not found", dir.display()),
    );
    None
}

/// A float32, C-order `.npy` file (what numpy writes for the fixtures).
fn npy(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{}: not a .npy file",
        path.display()
    );
    let (len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        let l = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        (l as usize, 12)
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"),
        "{}: expected little-endian float32 in C order, header {header}",
        path.display()
    );
    let open = header.find("'shape': (").unwrap() + "'shape': (".len();
    let close = open + header[open..].find(')').unwrap();
    let shape: Vec<usize> = header[open..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[start + len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (data, shape)
}

/// The reference cases `(batch, size)` of an export, from its file names.
fn cases(dir: &Path) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let rest = name.strip_prefix("input_b")?.strip_suffix(".npy")?;
            let (b, s) = rest.split_once("_s")?;
            Some((b.parse().ok()?, s.parse().ok()?))
        })
        .collect();
    out.sort();
    out
}

fn input(dir: &Path, b: usize, s: usize, device: &Device) -> Tensor<4> {
    let (v, shape) = npy(&dir.join(format!("input_b{b}_s{s}.npy")));
    Tensor::from_data(
        TensorData::new(v, [shape[0], shape[1], shape[2], shape[3]]),
        device,
    )
}

fn check(name: &str, what: &str, ours: &[f32], reference: &[f32]) {
    let err = max_rel_err(ours, reference);
    println!("PARITY {name} {what} max rel err {err:.3e}");
    assert!(err <= TOLERANCE, "{name} {what}: max rel err {err:e}");
}

fn parity(name: &str, sizes: Option<&[usize]>, features: bool) {
    parity_of(&TORCH, name, sizes, features);
}

/// Logits of the full graph and features at the automatic cut, at every reference case the
/// export can run (`sizes`: the input sizes it runs at; `None` for all).
pub(crate) fn parity_of(fixtures: &Fixtures, name: &str, sizes: Option<&[usize]>, features: bool) {
    let Some(dir) = fixture_dir(fixtures, name) else {
        return;
    };
    let _l = crate::lock();
    let device = Device::flex();
    let file = dir.join(format!("{name}.onnx"));
    let full = OnnxBackbone::load(
        &file,
        &OnnxBackboneOptions::default().with_cut(CutPoint::Full),
        &device,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cut = features.then(|| {
        OnnxBackbone::load(&file, &OnnxBackboneOptions::default(), &device)
            .unwrap_or_else(|e| panic!("{e}"))
    });
    let mut ran = 0;
    for (b, s) in cases(&dir) {
        if sizes.is_some_and(|sizes| !sizes.contains(&s)) {
            continue;
        }
        let x = input(&dir, b, s, &device);
        let (logits, lshape) = npy(&dir.join(format!("logits_b{b}_s{s}.npy")));
        let ours = full.forward_value(x.clone());
        assert_eq!(ours.shape(), lshape, "{name} b{b} s{s} logits shape");
        check(
            name,
            &format!("logits b{b} s{s}"),
            &host(ours.tensor),
            &logits,
        );
        if let Some(cut) = &cut {
            let (feats, fshape) = npy(&dir.join(format!("features_b{b}_s{s}.npy")));
            assert_eq!(cut.feature_channels(), fshape[1], "{name} feature channels");
            let ours = cut.forward_features(x);
            // A transformer's class token [N, C] is returned as [N, C, 1, 1].
            let mut expected = fshape.clone();
            expected.resize(4, 1);
            assert_eq!(
                ours.dims().to_vec(),
                expected,
                "{name} b{b} s{s} features shape"
            );
            check(name, &format!("features b{b} s{s}"), &host(ours), &feats);
        }
        ran += 1;
    }
    assert!(ran >= 2, "{name}: only {ran} reference cases ran");
}

fn gradients(name: &str) {
    gradients_of(&TORCH, name);
}

/// Every trainable parameter of the automatically cut backbone gets a non-zero gradient.
pub(crate) fn gradients_of(fixtures: &Fixtures, name: &str) {
    let Some(dir) = fixture_dir(fixtures, name) else {
        return;
    };
    let _l = crate::lock();
    let device = Device::flex().autodiff();
    let file = dir.join(format!("{name}.onnx"));
    let backbone = OnnxBackbone::load(&file, &OnnxBackboneOptions::default(), &device)
        .unwrap_or_else(|e| panic!("{e}"))
        .train();
    let (b, s) = cases(&dir)[0];
    let x = input(&dir, b, s, &device);
    let grads = backbone.forward_features(x).powi_scalar(2).sum().backward();
    let grads = GradientsParams::from_grads(grads, &backbone);
    struct Check<'a>(&'a GradientsParams, Vec<String>, usize, Vec<String>);
    impl ModuleVisitor for Check<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let path = self.1.join(".");
            if path.contains("running_") {
                return;
            }
            self.2 += 1;
            match self.0.get::<D>(p.id) {
                Some(g) if g.clone().abs().sum().into_scalar::<f32>() > 0.0 => {}
                _ => self.3.push(path),
            }
        }
    }
    let mut check = Check(&grads, Vec::new(), 0, Vec::new());
    backbone.visit(&mut check);
    println!(
        "{name}: parameters with a gradient: {}/{}",
        check.2 - check.3.len(),
        check.2
    );
    assert!(check.2 > 0, "{name}: no parameters");
    assert!(check.3.is_empty(), "{name}: no gradient for {:?}", check.3);
}

#[test]
fn resnet18_torchscript_export_matches_torch() {
    parity("resnet18_ts", None, true);
}

#[test]
fn resnet18_torchscript_dynamic_axes_export_matches_torch() {
    parity("resnet18_ts_dyn", None, true);
}

#[test]
fn resnet18_dynamo_export_matches_torch_at_other_batches() {
    parity("resnet18_dynamo", None, true);
}

#[test]
fn resnet18_dynamo_dynamic_batch_export_matches_torch() {
    parity("resnet18_dynamo_dyn", None, true);
}

#[test]
fn resnet18_torch_export_gradients_reach_every_parameter() {
    gradients("resnet18_dynamo");
}

/// Exported with dynamic axes, the channel shuffle's shape arithmetic (Shape → Gather → Div →
/// Concat → Reshape) and `chunk`'s Slice bounds run from the actual input, so every batch and
/// both sizes work.
#[test]
fn shufflenet_torchscript_export_runs_its_shape_arithmetic_at_any_batch_and_size() {
    parity("shufflenet_v2_x1_0_ts_dyn", None, true);
}

/// Exported with static shapes, TorchScript folds the channel shuffle's targets (batch and
/// size): the batch is rewritten, the size stays the export's.
#[test]
fn shufflenet_static_torchscript_export_runs_at_other_batches() {
    parity("shufflenet_v2_x1_0_ts", Some(&[64]), true);
}

/// The dynamo exporter bakes the spatial size into the channel shuffle's Reshape targets
/// (torch itself cannot run these files at another size), so only the export size runs; the
/// baked batch is rewritten.
#[test]
fn shufflenet_dynamo_exports_match_torch_at_other_batches() {
    parity("shufflenet_v2_x1_0_dynamo", Some(&[64]), true);
    parity("shufflenet_v2_x1_0_dynamo_dyn", Some(&[64]), true);
}

#[test]
fn shufflenet_torch_export_gradients_reach_every_parameter() {
    gradients("shufflenet_v2_x1_0_ts");
}

/// ConvNeXt: LayerNormalization over channels-last activations (Transpose there and back),
/// MatMul with constant weights, GELU as Erf (opset 17) or Gelu (opset 20), layer scale.
#[test]
fn convnext_torch_exports_match_torch() {
    parity("convnext_ts", None, true);
    parity("convnext_ts_dyn", None, true);
    parity("convnext_dynamo_dyn", None, true);
}

/// LayerNorm scale and bias, MatMul biases and the layer scale are trained too.
#[test]
fn convnext_torch_export_gradients_reach_every_parameter() {
    gradients("convnext_ts");
}

#[test]
fn efficientnet_b0_torch_exports_match_torch() {
    parity("efficientnet_b0_ts", None, true);
    parity("efficientnet_b0_ts_dyn", None, true);
    parity("efficientnet_b0_dynamo", None, true);
    parity("efficientnet_b0_dynamo_dyn", None, true);
}

#[test]
fn mobilenet_v3_large_torch_exports_match_torch() {
    parity("mobilenet_v3_large_ts", None, true);
    parity("mobilenet_v3_large_ts_dyn", None, true);
    parity("mobilenet_v3_large_dynamo", None, true);
    parity("mobilenet_v3_large_dynamo_dyn", None, true);
}

#[test]
fn regnet_y_400mf_torch_exports_match_torch() {
    parity("regnet_y_400mf_ts", None, true);
    parity("regnet_y_400mf_ts_dyn", None, true);
    parity("regnet_y_400mf_dynamo", None, true);
    parity("regnet_y_400mf_dynamo_dyn", None, true);
}

/// A ViT: attention (MatMul between activations, Softmax), the class token and position
/// embedding; the automatic cut is the class token before the head.
#[test]
fn vit_torch_exports_match_torch() {
    parity("vit_dynamo_dyn", None, true);
}

/// TorchScript's export of `nn.MultiheadAttention` builds Reshape targets whose length onnx-ir
/// cannot derive (a Concat of Slices of a Shape with computed bounds): parsing fails, and the
/// user gets a typed error naming the file, never a panic.
#[test]
fn vit_torchscript_export_is_a_typed_parse_error() {
    for name in ["vit_ts", "vit_ts_dyn"] {
        let Some(dir) = export_dir(name) else {
            return;
        };
        let file = dir.join(format!("{name}.onnx"));
        match OnnxBackbone::load(&file, &OnnxBackboneOptions::default(), &Device::flex()) {
            Err(e @ grafter_onnx::OnnxError::Parse { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&name.to_string()) && msg.contains("Reshape"),
                    "{msg}"
                );
                println!("{msg}");
            }
            other => panic!("expected a typed parse error, got {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn vit_torch_export_gradients_reach_every_parameter() {
    gradients("vit_dynamo_dyn");
}

/// The dynamo exporter without a dynamic batch bakes the batch where no rewrite can undo it:
/// into the ViT's attention reshapes (batch × heads, not a leading axis) and class-token
/// Expand, and into ConvNeXt's head (an `as_strided` emulated by a Gather of constant
/// indices, which silently keeps the export batch). Loading is a typed error telling the user
/// to re-export with a dynamic batch.
#[test]
fn static_batch_dynamo_exports_that_bake_the_batch_are_typed_errors() {
    static_batch_is_refused("vit_dynamo", vec![CutPoint::Full, CutPoint::Auto]);
    static_batch_is_refused("convnext_dynamo", vec![CutPoint::Full]);
}

/// ConvNeXt's batch-baking head is cut off by the automatic cut: the trunk runs at any batch.
#[test]
fn convnext_static_batch_dynamo_export_trunk_matches_torch_at_other_batches() {
    let name = "convnext_dynamo";
    let Some(dir) = export_dir(name) else {
        return;
    };
    let _l = crate::lock();
    let device = Device::flex();
    let cut = OnnxBackbone::load(
        dir.join(format!("{name}.onnx")),
        &OnnxBackboneOptions::default(),
        &device,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (b, s) in cases(&dir) {
        let (feats, fshape) = npy(&dir.join(format!("features_b{b}_s{s}.npy")));
        let ours = cut.forward_features(input(&dir, b, s, &device));
        assert_eq!(ours.dims().to_vec(), fshape);
        check(name, &format!("features b{b} s{s}"), &host(ours), &feats);
    }
}

fn static_batch_is_refused(name: &str, cuts: Vec<CutPoint>) {
    let Some(dir) = export_dir(name) else {
        return;
    };
    let _l = crate::lock();
    let device = Device::flex();
    let file = dir.join(format!("{name}.onnx"));
    for cut in cuts {
        match OnnxBackbone::load(
            &file,
            &OnnxBackboneOptions::default().with_cut(cut),
            &device,
        ) {
            Err(e @ grafter_onnx::OnnxError::Graph { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("re-export with a dynamic batch"), "{msg}");
                println!("{msg}");
            }
            other => panic!("expected a typed error, got {:?}", other.map(|_| ())),
        }
    }
}

/// The zoo's typed ResNet reads the weights of every torch exporter's file (the dynamo
/// exporter's ReduceMean global pool and Reshape flatten included) and matches torch.
#[test]
fn zoo_resnet18_loads_every_torch_exporters_file() {
    use grafter::zoo::{ResNetConfig, load_resnet_onnx};
    for name in ["resnet18_ts", "resnet18_dynamo", "resnet18_dynamo_dyn"] {
        let Some(dir) = export_dir(name) else {
            return;
        };
        let _l = crate::lock();
        let device = Device::flex();
        let model = load_resnet_onnx(
            dir.join(format!("{name}.onnx")),
            &ResNetConfig::resnet18(),
            &device,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        for (b, s) in cases(&dir) {
            let x = input(&dir, b, s, &device);
            let (logits, _) = npy(&dir.join(format!("logits_b{b}_s{s}.npy")));
            let ours = model.forward(x);
            check(name, &format!("zoo logits b{b} s{s}"), &host(ours), &logits);
        }
    }
}

/// A ViT's stages are its patch embedding (convolution, class token, position embedding),
/// one stage per encoder block and the final norm; every trainable parameter is in exactly
/// one stage (so freeze policies and layer-wise learning-rate decay cover the whole model).
#[test]
fn vit_stages_are_patch_embedding_blocks_and_final_norm() {
    let Some(dir) = export_dir("vit_dynamo_dyn") else {
        return;
    };
    let _l = crate::lock();
    let device = Device::flex();
    let b = OnnxBackbone::load(
        dir.join("vit_dynamo_dyn.onnx"),
        &OnnxBackboneOptions::default(),
        &device,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let stages = b.stages();
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["patch_embed", "block0", "block1", "norm"]);
    struct Ids(Vec<burn::module::ParamId>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.id);
        }
    }
    let mut ids = Ids(Vec::new());
    b.visit(&mut ids);
    // conv weight + bias, class token, position embedding; per block 2 LayerNorms (2 each),
    // 4 linears (weight; biases are trained constants), 4 biases; final norm 2
    assert!(ids.0.len() >= 20, "{} parameters", ids.0.len());
    for id in &ids.0 {
        let owners = stages.iter().filter(|s| s.params.matches(id, None)).count();
        assert_eq!(owners, 1, "parameter {id:?} is in {owners} stages");
    }
    let patch = &stages[0];
    let in_patch = ids
        .0
        .iter()
        .filter(|id| patch.params.matches(id, None))
        .count();
    println!(
        "vit: {} parameters, {in_patch} in the patch embedding",
        ids.0.len()
    );
    assert!(
        in_patch >= 3,
        "patch embedding: conv weight, class token, position embedding; found {in_patch}"
    );
}

/// A short fine-tune of the ViT with its patch embedding and first block frozen: those stay
/// bit-identical, every other backbone tensor (LayerNorms, linears, MatMul biases) moves.
#[test]
fn vit_fine_tune_trains_unfrozen_blocks_and_keeps_frozen_ones_bit_identical() {
    use grafter::LinearHeadConfig;
    use grafter::prelude::*;
    let Some(dir) = export_dir("vit_dynamo_dyn") else {
        return;
    };
    let _l = crate::lock();
    let device = Device::flex();
    let backbone = OnnxBackbone::load(
        dir.join("vit_dynamo_dyn.onnx"),
        &OnnxBackboneOptions::default()
            .with_preprocess(Preprocess::imagenet().with_input_size(64, 64)),
        &device,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let frozen_stages = backbone.stages()[..2].to_vec();
    device.seed(5);
    let head = LinearHeadConfig::new(backbone.feature_channels(), crate::train::CLASSES)
        .try_init(&device)
        .unwrap();
    let model = Classifier::new(backbone, head).unwrap();
    struct Ids(Vec<burn::module::ParamId>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.id);
        }
    }
    let mut ids = Ids(Vec::new());
    model.backbone.visit(&mut ids);
    let before = crate::params::params(&model.backbone);
    let outcome = FineTune::new(crate::train::config(1), FreezeFirst(2))
        .fit(
            model,
            &crate::train::dataset(6, 1),
            &crate::train::dataset(3, 2),
            &device,
        )
        .unwrap();
    let after = crate::params::params(&outcome.model.backbone);
    let (mut frozen, mut moved) = (0, 0);
    for (((name, a), (_, b)), id) in before.iter().zip(&after).zip(&ids.0) {
        if frozen_stages.iter().any(|s| s.params.matches(id, None)) {
            assert!(a == b, "frozen {name} changed");
            frozen += 1;
        } else {
            assert!(a != b, "trainable {name} did not change");
            moved += 1;
        }
    }
    println!("vit fine-tune: {frozen} frozen tensors unchanged, {moved} trained tensors moved");
    assert!(frozen >= 5 && moved >= 10, "frozen {frozen}, moved {moved}");
}

/// A classifier on the automatically cut backbone of a torch export is written back to ONNX
/// (LayerNormalization, Erf, Gelu, trained constants, SiLU/HardSwish gates, ReduceMean
/// pooling, ShuffleNet's shape arithmetic) and onnxruntime's logits match Burn's.
#[test]
fn torch_export_backbones_export_back_to_onnx_that_onnxruntime_runs() {
    for name in [
        "convnext_ts",
        "convnext_dynamo_dyn",
        "shufflenet_v2_x1_0_ts_dyn",
        "efficientnet_b0_dynamo_dyn",
        "mobilenet_v3_large_ts",
        "regnet_y_400mf_dynamo",
        "resnet18_dynamo",
    ] {
        let Some(dir) = export_dir(name) else {
            return;
        };
        let lock = crate::lock();
        let device = Device::flex();
        let backbone = OnnxBackbone::load(
            dir.join(format!("{name}.onnx")),
            &OnnxBackboneOptions::default(),
            &device,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        export_round_trip(name, backbone, &device, lock);
    }
}

/// `backbone` under a seeded 5-class head, exported to ONNX and run by onnxruntime: its logits
/// within 1e-4 of Burn's. Takes the fixtures' lock held while the model is built and releases
/// it before onnxruntime runs.
pub(crate) fn export_round_trip(
    name: &str,
    backbone: OnnxBackbone,
    device: &Device,
    lock: std::sync::MutexGuard<'static, ()>,
) {
    use grafter::LinearHeadConfig;
    use grafter::prelude::*;
    device.seed(6);
    let head = LinearHeadConfig::new(backbone.feature_channels(), 5)
        .try_init(device)
        .unwrap();
    let model = Classifier::new(backbone, head).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join(format!("{name}_export.onnx"));
    grafter_onnx::export_classifier(&model, &onnx).unwrap_or_else(|e| panic!("{e}"));
    drop(lock);
    let Some(err) = crate::export::ort_round_trip(&model, &onnx, 64) else {
        return;
    };
    println!("PARITY {name} onnx-export logits max rel err {err:.3e}");
    assert!(err <= 1e-4, "{name} export round trip: max rel err {err:e}");
}

/// Multi-scale maps (`FeatureMaps`) found in real torch exports: at least three resolutions,
/// reductions doubling up to 32, and the deepest map is torch's feature map at the cut. A
/// vision transformer keeps one resolution and offers none (a typed error, not a panic).
#[test]
fn torch_exports_offer_their_multi_scale_maps() {
    use grafter::FeatureMaps;
    for family in [
        "resnet18",
        "shufflenet_v2_x1_0",
        "convnext",
        "efficientnet_b0",
        "mobilenet_v3_large",
        "regnet_y_400mf",
        "vit",
    ] {
        // (TorchScript's ViT does not parse: vit_torchscript_export_is_a_typed_parse_error)
        let exporters: &[&str] = if family == "vit" {
            &["dynamo_dyn"]
        } else {
            &["ts_dyn", "dynamo_dyn"]
        };
        for exporter in exporters {
            let name = format!("{family}_{exporter}");
            let Some(dir) = export_dir(&name) else {
                return;
            };
            let _l = crate::lock();
            let device = Device::flex();
            let b = OnnxBackbone::load(
                dir.join(format!("{name}.onnx")),
                &OnnxBackboneOptions::default(),
                &device,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let info = b.feature_info();
            let (batch, size) = cases(&dir)[0];
            let x = input(&dir, batch, size, &device);
            if family == "vit" {
                assert!(info.is_empty(), "{name}: {info:?}");
                let err = b.forward_feature_maps(x, &[0]).unwrap_err().to_string();
                assert!(err.contains("single resolution"), "{name}: {err}");
                continue;
            }
            let reductions: Vec<usize> = info.iter().map(|f| f.reduction).collect();
            println!("{name}: maps {info:?}");
            assert!(info.len() >= 3, "{name}: {reductions:?}");
            assert!(
                reductions.windows(2).all(|w| w[1] == 2 * w[0]) && reductions.last() == Some(&32),
                "{name}: reductions {reductions:?}"
            );
            let all: Vec<usize> = (0..info.len()).collect();
            let maps = b.forward_feature_maps(x, &all).unwrap();
            for (map, f) in maps.iter().zip(&info) {
                let side = size.div_ceil(f.reduction);
                assert_eq!(
                    map.dims(),
                    [batch, f.channels, side, side],
                    "{name} {}",
                    f.name
                );
            }
            let (feats, _) = npy(&dir.join(format!("features_b{batch}_s{size}.npy")));
            let deepest = host(maps.last().unwrap().clone());
            check(&name, "deepest map vs torch's features", &deepest, &feats);
        }
    }
}

/// A graph that bakes its input size (the ViT's position embedding holds 64 px worth of
/// patches) is fed its declared size by default, and a preprocess of another size is refused
/// at load with a typed error — training would otherwise panic on its first batch.
#[test]
fn a_preprocess_size_the_graph_cannot_run_is_refused_at_load() {
    let name = "vit_dynamo_dyn";
    let Some(dir) = export_dir(name) else {
        return;
    };
    let _l = crate::lock();
    let device = Device::flex();
    let file = dir.join(format!("{name}.onnx"));
    let b = OnnxBackbone::load(&file, &OnnxBackboneOptions::default(), &device)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.preprocess().input_size, [64, 64]);
    let mut other = grafter::Preprocess::imagenet();
    other.input_size = [96, 96];
    match OnnxBackbone::load(
        &file,
        &OnnxBackboneOptions::default().with_preprocess(other),
        &device,
    ) {
        Err(e @ grafter_onnx::OnnxError::Graph { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("96×96") && msg.contains("64×64") && msg.contains(name),
                "{msg}"
            );
            println!("{msg}");
        }
        other => panic!("expected a typed error, got {:?}", other.map(|_| ())),
    }
    // A convolutional export runs at any size: the same preprocess is accepted.
    let Some(dir) = export_dir("resnet18_dynamo_dyn") else {
        return;
    };
    let mut other = grafter::Preprocess::imagenet();
    other.input_size = [96, 96];
    OnnxBackbone::load(
        dir.join("resnet18_dynamo_dyn.onnx"),
        &OnnxBackboneOptions::default().with_preprocess(other),
        &device,
    )
    .unwrap_or_else(|e| panic!("{e}"));
}
