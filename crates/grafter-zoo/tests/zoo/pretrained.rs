//! `grafter_zoo::pretrained` and its offline variants, without network: names that resolve
//! (and those that do not), a cache that may not download, files checked against the
//! registry's hashes, ONNX files used as they are, and the random fallback that says why.

use burn::tensor::Device;
use grafter_core::{Backbone, Classifier, LinearHeadConfig};
use grafter_zoo::download::Cache;
use grafter_zoo::{
    AnyBackbone, Architecture, Weights, ZooError, pretrained, pretrained_from_file,
    pretrained_or_random, registry,
};

#[test]
fn names_resolve_to_weight_sets_or_an_architectures_default() {
    assert_eq!(
        registry::resolve("resnet50").unwrap().name,
        "resnet50.tv2_in1k"
    );
    assert_eq!(
        registry::resolve("resnet18").unwrap().name,
        "resnet18.tv_in1k"
    );
    assert_eq!(registry::resolve("vgg16").unwrap().name, "vgg16.tv_in1k");
    assert_eq!(
        registry::resolve("resnet50.a1_in1k").unwrap().name,
        "resnet50.a1_in1k"
    );
    assert!(registry::resolve("resnet42").is_none());
    for arch in Architecture::all() {
        assert_eq!(
            Architecture::from_name(&arch.name()).unwrap().name(),
            arch.name()
        );
    }
}

#[test]
fn unknown_names_are_a_typed_error_listing_the_known_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path()).offline(true);
    let err = pretrained("resnet42", &cache, &Device::flex()).unwrap_err();
    assert!(matches!(err, ZooError::Unknown { .. }), "{err}");
    assert!(err.to_string().contains("resnet50.tv2_in1k"), "{err}");
    let err = pretrained_or_random("resnet42", &cache, &Device::flex()).unwrap_err();
    assert!(matches!(err, ZooError::Unknown { .. }), "{err}");
}

#[test]
fn an_offline_cache_without_the_file_falls_back_to_random_weights_saying_why() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path()).offline(true);
    let device = Device::flex();
    let err = pretrained("resnet18", &cache, &device).unwrap_err();
    assert!(matches!(err, ZooError::Offline { .. }), "{err}");
    let (backbone, weights) = pretrained_or_random("resnet18", &cache, &device).unwrap();
    assert!(matches!(backbone, AnyBackbone::ResNet(_)));
    assert_eq!(backbone.feature_channels(), 512);
    match &weights {
        Weights::Random { reason } => assert!(reason.contains("resnet18-f37072fd.pth"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(weights.to_string().starts_with("RANDOM initialisation"));
}

#[test]
fn a_file_that_is_not_the_published_one_is_refused_by_its_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("resnet18-f37072fd.pth");
    std::fs::write(&path, b"not the weights").unwrap();
    let err = pretrained_from_file("resnet18.tv_in1k", &path, &Device::flex()).unwrap_err();
    assert!(matches!(err, ZooError::Checksum { .. }), "{err}");
    let missing = tmp.path().join("missing.pth");
    let err = pretrained_from_file("resnet18", &missing, &Device::flex()).unwrap_err();
    assert!(err.to_string().contains("missing.pth"), "{err}");
}

#[test]
fn an_onnx_file_is_a_backbone_with_its_own_weights_and_provenance() {
    let tmp = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let source = Architecture::from_name("resnet18").unwrap().init(&device);
    let head = LinearHeadConfig::new(512, 7).try_init(&device).unwrap();
    let path = tmp.path().join("exported.onnx");
    grafter_onnx::export_classifier(&Classifier::new(source, head).unwrap(), &path).unwrap();
    let cache = Cache::new(tmp.path()).offline(true);
    let name = path.to_str().unwrap();
    let p = pretrained(name, &cache, &device).unwrap();
    assert!(matches!(p.backbone, AnyBackbone::Onnx(_)));
    assert_eq!(p.backbone.feature_channels(), 512);
    assert_eq!(p.provenance.weight_set, "exported.onnx");
    assert_eq!(p.provenance.sha256.len(), 64);
    assert_eq!(p.provenance.top1, None);
    let bad = tmp.path().join("bad.onnx");
    std::fs::write(&bad, b"no protobuf").unwrap();
    let err = pretrained_or_random(bad.to_str().unwrap(), &cache, &device).unwrap_err();
    assert!(err.to_string().contains("bad.onnx"), "{err}");
}
