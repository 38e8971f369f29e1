use burn::tensor::Device;
use grafter_zoo::{ResNetConfig, ZooError, load_resnet};

use crate::fixtures::dir;

#[test]
fn resnet50_weights_into_resnet18_is_a_typed_error() {
    let Some(dir) = dir("resnet50") else { return };
    let err = load_resnet(
        dir.join("resnet50.safetensors"),
        &ResNetConfig::resnet18(),
        1000,
        &Device::flex(),
    )
    .unwrap_err();
    assert!(matches!(err, ZooError::Weights { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("resnet50.safetensors"), "{msg}");
    // names the first mismatch: layer, expected and found shapes
    assert!(msg.contains("backbone.layer1.0.conv1.weight"), "{msg}");
    assert!(
        msg.contains("[64, 64, 3, 3]") && msg.contains("[64, 64, 1, 1]"),
        "{msg}"
    );
    assert!(msg.len() < 400, "error too long: {msg}");
}

#[test]
fn truncated_and_foreign_files_are_typed_errors() {
    let Some(dir) = dir("resnet18") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(dir.join("resnet18.safetensors")).unwrap();
    let truncated = tmp.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err =
        load_resnet(&truncated, &ResNetConfig::resnet18(), 1000, &Device::flex()).unwrap_err();
    assert!(matches!(err, ZooError::Weights { .. }), "{err}");
    assert!(err.to_string().contains("truncated.safetensors"), "{err}");

    let garbage = tmp.path().join("random.pth");
    std::fs::write(&garbage, b"\x80\x02not a pickle at all").unwrap();
    let err = load_resnet(&garbage, &ResNetConfig::resnet18(), 1000, &Device::flex()).unwrap_err();
    assert!(matches!(err, ZooError::Weights { .. }), "{err}");

    let err = load_resnet(
        tmp.path().join("absent.safetensors"),
        &ResNetConfig::resnet18(),
        1000,
        &Device::flex(),
    )
    .unwrap_err();
    assert!(matches!(err, ZooError::Io { .. }), "{err}");
}
