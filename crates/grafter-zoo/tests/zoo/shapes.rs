use burn::tensor::{Device, Tensor};
use grafter_core::Backbone;
use grafter_zoo::{ResNetConfig, VggConfig};

/// Feature-map shapes and channel counts of every depth, at 224×224 and at 160×208.
#[test]
fn every_resnet_depth_has_the_documented_feature_map() {
    let device = Device::flex();
    for (depth, channels) in [(18, 512), (34, 512), (50, 2048), (101, 2048), (152, 2048)] {
        let cfg = ResNetConfig::depth(depth).unwrap();
        let net = cfg.init(&device);
        assert_eq!(net.feature_channels(), channels, "resnet{depth}");
        assert_eq!(net.stages().len(), 5);
        for ([h, w], [fh, fw]) in [([224, 224], [7, 7]), ([160, 208], [5, 7])] {
            let x = Tensor::<4>::zeros([1, 3, h, w], &device);
            assert_eq!(
                net.forward_features(x).dims(),
                [1, channels, fh, fw],
                "resnet{depth} at {h}x{w}"
            );
        }
    }
    assert!(ResNetConfig::depth(42).is_none());
}

#[test]
fn every_vgg_depth_has_the_documented_feature_map() {
    let device = Device::flex();
    for depth in [11, 13, 16, 19] {
        for bn in [false, true] {
            let net = VggConfig::depth(depth, bn).unwrap().init(&device);
            assert_eq!(net.feature_channels(), 512);
            assert_eq!(net.stages().len(), 5);
            for ([h, w], [fh, fw]) in [([224, 224], [7, 7]), ([160, 208], [5, 6])] {
                let x = Tensor::<4>::zeros([1, 3, h, w], &device);
                assert_eq!(
                    net.forward_features(x).dims(),
                    [1, 512, fh, fw],
                    "vgg{depth} bn={bn}"
                );
            }
        }
    }
}

#[test]
fn torchvision_vgg16_indices() {
    let idx = VggConfig::vgg16().torchvision_indices();
    assert_eq!(idx[0], vec![(0, None), (2, None)]);
    assert_eq!(idx[4].last(), Some(&(28, None)));
    let bn = VggConfig::vgg16()
        .with_batch_norm(true)
        .torchvision_indices();
    assert_eq!(bn[0], vec![(0, Some(1)), (3, Some(4))]);
    assert_eq!(bn[4].last(), Some(&(40, Some(41))));
}

#[test]
fn fine_tuned_weights_round_trip_through_burns_record_format() {
    use grafter_core::weights::{load_weights, save_weights};
    let device = Device::flex();
    let trained = ResNetConfig::resnet18().init(&device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.bpk");
    save_weights(&trained, &path).unwrap();
    let reloaded = load_weights(ResNetConfig::resnet18().init(&device), &path).unwrap();
    let x = Tensor::<4>::ones([1, 3, 64, 64], &device);
    assert_eq!(
        trained.forward_features(x.clone()).into_data(),
        reloaded.forward_features(x).into_data()
    );
    let err = load_weights(ResNetConfig::resnet50().init(&device), &path).unwrap_err();
    assert!(err.to_string().contains("resnet18.bpk"), "{err}");
    std::fs::write(&path, b"garbage").unwrap();
    assert!(load_weights(ResNetConfig::resnet18().init(&device), &path).is_err());
}
