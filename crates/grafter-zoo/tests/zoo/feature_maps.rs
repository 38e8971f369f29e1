//! Multi-scale feature maps (`FeatureMaps`, timm's `features_only`) of the zoo's ResNet and VGG
//! and of `OnnxBackbone` against onnxruntime: `make_fixtures.py` adds each stage's last
//! activation to the unfolded graph's outputs (`tap0`, `tap1`, … in `reference.safetensors`).

use std::path::Path;

use burn::tensor::{Device, Tensor};
use grafter_core::{FeatureInfo, FeatureMaps};
use grafter_onnx::{OnnxBackbone, OnnxBackboneOptions};
use grafter_zoo::{ResNetConfig, VggConfig, load_resnet, load_vgg};

use crate::fixtures::{Reference, dir, host, max_rel_err};

const TOLERANCE: f64 = 1e-4;

/// Every map of `backbone` against the reference taps: shapes from `feature_info` and the
/// values; then a subset in another order gives the same maps.
fn check(model: &str, what: &str, backbone: &impl FeatureMaps, r: &Reference, device: &Device) {
    let input = r.tensor4("input", device);
    let [n, _, h, w] = input.dims();
    let info = backbone.feature_info();
    let all: Vec<usize> = (0..info.len()).collect();
    let maps = backbone.forward_feature_maps(input.clone(), &all).unwrap();
    for (
        i,
        (
            map,
            FeatureInfo {
                name,
                channels,
                reduction,
            },
        ),
    ) in maps.iter().zip(&info).enumerate()
    {
        let (reference, shape) = r.host(&format!("tap{i}"));
        assert_eq!(
            map.dims().to_vec(),
            shape,
            "{model} {what} map {i} ({name})"
        );
        assert_eq!(
            shape,
            [n, *channels, h / reduction, w / reduction],
            "{model} {what} {name}"
        );
        let err = max_rel_err(&host(map.clone()), &reference);
        println!("PARITY {model:<10} {what:<6} map {i} {name:<28} {shape:?} max rel err {err:.3e}");
        assert!(err <= TOLERANCE, "{model} {what} map {i}: {err:e}");
    }
    let fewer = [info.len() - 1, 1];
    let picked = backbone.forward_feature_maps(input, &fewer).unwrap();
    for (map, &i) in picked.into_iter().zip(&fewer) {
        assert_eq!(
            host(map),
            host(maps[i].clone()),
            "{model} {what} map {i} alone"
        );
    }
}

/// The maps `OnnxBackbone` finds in the graph at `file`: as `want` (channels, reduction), and
/// each equal to onnxruntime's.
fn onnx_maps(file: &Path, want: &[(usize, usize)], model: &str, variant: &str, r: &Reference) {
    let device = Device::flex();
    let onnx = OnnxBackbone::load(file, &OnnxBackboneOptions::default(), &device).unwrap();
    let found: Vec<(usize, usize)> = onnx
        .feature_info()
        .iter()
        .map(|f| (f.channels, f.reduction))
        .collect();
    assert_eq!(found, want, "{model} {variant}: maps found in the graph");
    check(model, variant, &onnx, r, &device);
}

fn taps(r: &Reference) -> usize {
    (0..).take_while(|i| r.has(&format!("tap{i}"))).count()
}

#[test]
fn resnet_maps_match_onnxruntime_from_the_zoo_and_from_onnx() {
    for (name, cfg, channels) in [
        (
            "resnet18",
            ResNetConfig::resnet18(),
            [64, 64, 128, 256, 512],
        ),
        (
            "resnet50",
            ResNetConfig::resnet50(),
            [64, 256, 512, 1024, 2048],
        ),
    ] {
        let Some(dir) = dir(name) else { return };
        let device = Device::flex();
        let r = Reference::load(&dir);
        assert_eq!(taps(&r), 5, "{name}: reference taps");
        let zoo = load_resnet(dir.join(format!("{name}.safetensors")), &cfg, 1000, &device)
            .unwrap()
            .backbone;
        let info = zoo.feature_info();
        let got: Vec<(usize, usize)> = info.iter().map(|f| (f.channels, f.reduction)).collect();
        let want: Vec<(usize, usize)> = channels.into_iter().zip([2, 4, 8, 16, 32]).collect();
        assert_eq!(got, want, "{name} feature_info");
        check(name, "zoo", &zoo, &r, &device);
        // The ONNX graph's own maps, found by structure: a bottleneck's output, not its first
        // 1×1 (which the shortcut bypasses).
        for variant in ["unfolded", "folded"] {
            let file = dir.join(format!("{name}_{variant}.onnx"));
            onnx_maps(&file, &want, name, variant, &r);
        }
    }
}

#[test]
fn resnet_v1_graph_with_its_shortcut_first_gives_the_same_maps() {
    let Some(dir) = dir("resnet50_v1") else {
        return;
    };
    let want = [(64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)];
    let file = dir.join("resnet50_v1_folded.onnx");
    onnx_maps(
        &file,
        &want,
        "resnet50_v1",
        "folded",
        &Reference::load(&dir),
    );
}

#[test]
fn vgg_maps_match_onnxruntime_from_the_zoo_and_from_onnx() {
    let want: Vec<(usize, usize)> = [64, 128, 256, 512, 512, 512]
        .into_iter()
        .zip([1, 2, 4, 8, 16, 32])
        .collect();
    let device = Device::flex();
    if let Some(dir) = dir("vgg16") {
        let r = Reference::load(&dir);
        assert_eq!(taps(&r), 6, "vgg16: reference taps");
        let zoo = load_vgg(
            dir.join("vgg16.safetensors"),
            &VggConfig::vgg16(),
            1000,
            &device,
        )
        .unwrap()
        .backbone;
        let got: Vec<(usize, usize)> = zoo
            .feature_info()
            .iter()
            .map(|f| (f.channels, f.reduction))
            .collect();
        assert_eq!(got, want, "vgg16 feature_info");
        check("vgg16", "zoo", &zoo, &r, &device);
    }
    if let Some(dir) = dir("vgg16_bn") {
        let r = Reference::load(&dir);
        let cfg = VggConfig::vgg16().with_batch_norm(true);
        let zoo = load_vgg(dir.join("vgg16_bn.pth"), &cfg, 1000, &device)
            .unwrap()
            .backbone;
        check("vgg16_bn", "zoo", &zoo, &r, &device);
        onnx_maps(
            &dir.join("vgg16_bn_folded.onnx"),
            &want,
            "vgg16_bn",
            "folded",
            &r,
        );
    }
}

#[test]
fn a_map_index_past_the_last_is_an_error_naming_the_count() {
    let device = Device::flex();
    let resnet = ResNetConfig::resnet18().init(&device);
    let x = Tensor::<4>::zeros([1, 3, 32, 32], &device);
    let err = resnet
        .forward_feature_maps(x.clone(), &[0, 5])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("feature map 5") && err.contains("has 5"),
        "{err}"
    );
    let err = resnet.forward_feature_maps(x, &[]).unwrap_err().to_string();
    assert!(err.contains("no feature map"), "{err}");
}
