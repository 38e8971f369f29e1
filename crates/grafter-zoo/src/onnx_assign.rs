//! Putting [`OnnxWeights`] into the zoo's typed ResNet and VGG, layer by layer in execution
//! order, checking every shape.
//!
//! A graph exported with BatchNorm folded into the convolutions still fits a model that has
//! BatchNorm layers: they become identities (γ=1, mean 0, var 1−ε) and the folded bias goes
//! to β (or to the convolution's bias where it has one).

use std::path::Path;

use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use grafter_core::{Classifier, LinearHeadConfig, Preprocess};

use crate::ZooError;
use crate::onnx_weights::{ConvUnit, LinearUnit, OnnxWeights};
use crate::resnet::{Block, ResNetConfig};
use crate::torchvision::{TorchvisionResNet, TorchvisionVgg};
use crate::vgg::{Vgg, VggConfig};
use crate::vgg_head::VggHead;

/// One of our convolutions (with its BatchNorm) waiting for weights.
struct Slot<'a> {
    name: String,
    conv: &'a mut Conv2d,
    bn: Option<&'a mut BatchNorm>,
}

/// A full ResNet (backbone and 1000-class `fc`) from an ONNX classifier.
pub fn load_resnet_onnx(
    path: impl AsRef<Path>,
    cfg: &ResNetConfig,
    device: &Device,
) -> Result<TorchvisionResNet, ZooError> {
    let onnx = OnnxWeights::read(path)?;
    let classes = onnx_classes(&onnx)?;
    let head = LinearHeadConfig::new(cfg.feature_channels(), classes)
        .try_init(device)
        .map_err(|e| ZooError::Config(e.to_string()))?;
    let mut model =
        Classifier::new(cfg.init(device), head).map_err(|e| ZooError::Config(e.to_string()))?;
    {
        let r = &mut model.backbone;
        let mut convs = onnx.convs.iter();
        let mut stem = vec![Slot {
            name: "conv1".into(),
            conv: &mut r.conv1,
            bn: Some(&mut r.bn1),
        }];
        assign_seq(&onnx.path, &mut stem, &mut convs, device)?;
        let layers = [&mut r.layer1, &mut r.layer2, &mut r.layer3, &mut r.layer4];
        for (li, layer) in layers.into_iter().enumerate() {
            for (bi, block) in layer.iter_mut().enumerate() {
                assign_block(
                    &onnx.path,
                    &format!("layer{}.{bi}", li + 1),
                    block,
                    &mut convs,
                    device,
                )?;
            }
        }
        if let Some(extra) = convs.next() {
            return Err(weights(
                &onnx.path,
                format!(
                    "convolution {} has no place in the model (more conv layers than the architecture)",
                    extra.node
                ),
            ));
        }
    }
    expect_linears(&onnx, 1)?;
    set_linear(
        &onnx.path,
        "fc",
        &mut model.head.linear,
        &onnx.linears[0],
        device,
    )?;
    Ok(model)
}

/// A full VGG (backbone and classifier) from an ONNX classifier.
pub fn load_vgg_onnx(
    path: impl AsRef<Path>,
    cfg: &VggConfig,
    device: &Device,
) -> Result<TorchvisionVgg, ZooError> {
    let onnx = OnnxWeights::read(path)?;
    let classes = onnx_classes(&onnx)?;
    let mut model = Classifier::new(cfg.init(device), VggHead::new(classes, 0.5, device))
        .map_err(|e| ZooError::Config(e.to_string()))?;
    fill_vgg(&onnx, &mut model.backbone, device)?;
    expect_linears(&onnx, 3)?;
    let h = &mut model.head;
    for (i, (name, linear)) in [
        ("fc1", &mut h.fc1),
        ("fc2", &mut h.fc2),
        ("fc3", &mut h.fc3),
    ]
    .into_iter()
    .enumerate()
    {
        set_linear(&onnx.path, name, linear, &onnx.linears[i], device)?;
    }
    Ok(model)
}

/// The convolutional base of a VGG from any ONNX file that contains one — a torchvision or
/// ONNX Model Zoo classifier, or a Keras model exported by tf2onnx (NHWC input and a custom
/// head: everything after the last convolution is ignored). `preprocess` is the convention the
/// weights were trained with (e.g. [`Preprocess::caffe`] for Keras' VGG16).
pub fn load_vgg_backbone_onnx(
    path: impl AsRef<Path>,
    cfg: &VggConfig,
    preprocess: Preprocess,
    device: &Device,
) -> Result<Vgg, ZooError> {
    let onnx = OnnxWeights::read_backbone(path)?;
    let mut vgg = cfg.init(device);
    fill_vgg(&onnx, &mut vgg, device)?;
    vgg.preprocess = preprocess;
    Ok(vgg)
}

fn fill_vgg(onnx: &OnnxWeights, vgg: &mut Vgg, device: &Device) -> Result<(), ZooError> {
    let mut slots: Vec<Slot> = Vec::new();
    for (b, block) in vgg.blocks.iter_mut().enumerate() {
        for (l, layer) in block.layers.iter_mut().enumerate() {
            slots.push(Slot {
                name: format!("blocks.{b}.layers.{l}"),
                conv: &mut layer.conv,
                bn: layer.bn.as_mut(),
            });
        }
    }
    let mut convs = onnx.convs.iter();
    assign_seq(&onnx.path, &mut slots, &mut convs, device)?;
    if let Some(extra) = convs.next() {
        return Err(weights(
            &onnx.path,
            format!("convolution {} has no place in the model", extra.node),
        ));
    }
    Ok(())
}

fn weights(path: &Path, reason: String) -> ZooError {
    ZooError::Weights {
        path: path.to_path_buf(),
        reason,
    }
}

fn onnx_classes(onnx: &OnnxWeights) -> Result<usize, ZooError> {
    let last = onnx.linears.last().ok_or_else(|| {
        weights(
            &onnx.path,
            "the graph has no fully connected classifier".into(),
        )
    })?;
    Ok(last.weight.shape().to_vec()[1])
}

fn expect_linears(onnx: &OnnxWeights, n: usize) -> Result<(), ZooError> {
    if onnx.linears.len() != n {
        return Err(weights(
            &onnx.path,
            format!(
                "the classifier has {} fully connected layers, the architecture {n}",
                onnx.linears.len()
            ),
        ));
    }
    Ok(())
}

/// A block's convolutions in execution order. torchvision exports the projection shortcut
/// after the main branch, other exporters before it: the order whose shapes fit is taken.
fn assign_block<'a>(
    path: &Path,
    name: &str,
    block: &mut Block,
    convs: &mut std::slice::Iter<'a, ConvUnit>,
    device: &Device,
) -> Result<(), ZooError> {
    let Block {
        conv1,
        bn1,
        conv2,
        bn2,
        conv3,
        bn3,
        downsample,
        drop_path: _,
    } = block;
    let mut main = vec![
        Slot {
            name: format!("{name}.conv1"),
            conv: conv1,
            bn: Some(bn1),
        },
        Slot {
            name: format!("{name}.conv2"),
            conv: conv2,
            bn: Some(bn2),
        },
    ];
    if let (Some(c), Some(b)) = (conv3.as_mut(), bn3.as_mut()) {
        main.push(Slot {
            name: format!("{name}.conv3"),
            conv: c,
            bn: Some(b),
        });
    }
    let Some(ds) = downsample.as_mut() else {
        return assign_seq(path, &mut main, convs, device);
    };
    // Kernel shapes decide; a shortcut may share its shape with conv3 (layer1.0 of a
    // ResNet-50: [256, 64, 1, 1]), so the whole block is compared, not its first unit.
    let ds_shape = ds.conv.weight.dims().to_vec();
    let main_shapes: Vec<Vec<usize>> = main.iter().map(|s| s.conv.weight.dims().to_vec()).collect();
    let ahead: Vec<Vec<usize>> = convs
        .clone()
        .take(main.len() + 1)
        .map(|u| u.weight.shape().to_vec())
        .collect();
    let main_first: Vec<&Vec<usize>> = main_shapes.iter().chain([&ds_shape]).collect();
    let shortcut_first_order: Vec<&Vec<usize>> =
        [&ds_shape].into_iter().chain(&main_shapes).collect();
    let fits = |order: &[&Vec<usize>]| order.iter().copied().eq(ahead.iter());
    let shortcut_first = !fits(&main_first) && fits(&shortcut_first_order);
    let n = main.len();
    let shortcut = Slot {
        name: format!("{name}.downsample"),
        conv: &mut ds.conv,
        bn: Some(&mut ds.bn),
    };
    let mut order: Vec<Slot> = Vec::with_capacity(n + 1);
    if shortcut_first {
        order.push(shortcut);
        order.extend(main);
    } else {
        order.extend(main);
        order.push(shortcut);
    }
    assign_seq(path, &mut order, convs, device)
}

fn assign_seq<'a>(
    path: &Path,
    slots: &mut [Slot],
    convs: &mut std::slice::Iter<'a, ConvUnit>,
    device: &Device,
) -> Result<(), ZooError> {
    for slot in slots.iter_mut() {
        let unit = convs.next().ok_or_else(|| {
            weights(
                path,
                format!(
                    "the graph ends before layer {} (fewer conv layers than the architecture)",
                    slot.name
                ),
            )
        })?;
        set_conv(path, slot, unit, device)?;
    }
    Ok(())
}

fn tensor1(v: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
}

fn set_conv(
    path: &Path,
    slot: &mut Slot,
    unit: &ConvUnit,
    device: &Device,
) -> Result<(), ZooError> {
    let mismatch = |what: &str, expected: String, found: String| {
        weights(
            path,
            format!(
                "layer {} (ONNX node {}): {what} expected {expected}, found {found}",
                slot.name, unit.node
            ),
        )
    };
    let expected = slot.conv.weight.dims().to_vec();
    let found = unit.weight.shape().to_vec();
    if expected != found {
        return Err(mismatch(
            "kernel shape",
            format!("{expected:?}"),
            format!("{found:?}"),
        ));
    }
    if slot.conv.stride != unit.stride {
        return Err(mismatch(
            "stride",
            format!("{:?}", slot.conv.stride),
            format!("{:?}", unit.stride),
        ));
    }
    if slot.conv.groups != unit.groups {
        return Err(mismatch(
            "groups",
            slot.conv.groups.to_string(),
            unit.groups.to_string(),
        ));
    }
    let out = expected[0];
    // Lengths a forward pass would only trip over later: refused here, naming the layer.
    if let Some(b) = &unit.bias
        && b.len() != out
    {
        return Err(mismatch(
            "bias length",
            out.to_string(),
            b.len().to_string(),
        ));
    }
    if let Some(src) = &unit.bn {
        for (what, v) in [
            ("BatchNorm scale length", &src.gamma),
            ("BatchNorm shift length", &src.beta),
            ("BatchNorm running mean length", &src.mean),
            ("BatchNorm running variance length", &src.var),
        ] {
            if v.len() != out {
                return Err(mismatch(what, out.to_string(), v.len().to_string()));
            }
        }
    }
    let w = Tensor::<4>::from_data(unit.weight.clone(), device);
    slot.conv.weight = Param::initialized(slot.conv.weight.id, w);
    let mut leftover_bias = unit.bias.clone();
    if let Some(bias) = slot.conv.bias.as_mut() {
        let b = leftover_bias.take().unwrap_or_else(|| vec![0.0; out]);
        *bias = Param::initialized(bias.id, tensor1(&b, device));
    }
    match (slot.bn.as_deref_mut(), &unit.bn) {
        (Some(bn), Some(src)) => {
            if leftover_bias.is_some() {
                return Err(mismatch(
                    "bias",
                    "none before BatchNorm".into(),
                    "a bias".into(),
                ));
            }
            bn.gamma = Param::initialized(bn.gamma.id, tensor1(&src.gamma, device));
            bn.beta = Param::initialized(bn.beta.id, tensor1(&src.beta, device));
            bn.running_mean = RunningState::new(tensor1(&src.mean, device));
            bn.running_var = RunningState::new(tensor1(&src.var, device));
            bn.epsilon = src.epsilon;
        }
        (Some(bn), None) => {
            // folded graph: BatchNorm becomes the identity, carrying the folded bias
            let beta = leftover_bias.take().unwrap_or_else(|| vec![0.0; out]);
            let var = vec![(1.0 - bn.epsilon) as f32; out];
            bn.gamma = Param::initialized(bn.gamma.id, tensor1(&vec![1.0; out], device));
            bn.beta = Param::initialized(bn.beta.id, tensor1(&beta, device));
            bn.running_mean = RunningState::new(tensor1(&vec![0.0; out], device));
            bn.running_var = RunningState::new(tensor1(&var, device));
        }
        (None, Some(src)) => {
            return Err(weights(
                path,
                format!(
                    "layer {} has no BatchNorm but ONNX node {} is followed by BatchNorm {} (use the _bn architecture)",
                    slot.name, unit.node, src.node
                ),
            ));
        }
        (None, None) => {
            if leftover_bias.is_some() {
                return Err(mismatch("bias", "none".into(), "a bias".into()));
            }
        }
    }
    Ok(())
}

fn set_linear(
    path: &Path,
    name: &str,
    linear: &mut Linear,
    unit: &LinearUnit,
    device: &Device,
) -> Result<(), ZooError> {
    let expected = linear.weight.dims().to_vec();
    let found = unit.weight.shape().to_vec();
    if expected != found {
        return Err(weights(
            path,
            format!(
                "layer {name} (ONNX node {}): weight [in, out] expected {expected:?}, found {found:?}",
                unit.node
            ),
        ));
    }
    if let Some(b) = &unit.bias
        && b.len() != expected[1]
    {
        return Err(weights(
            path,
            format!(
                "layer {name} (ONNX node {}): bias length expected {}, found {}",
                unit.node,
                expected[1],
                b.len()
            ),
        ));
    }
    linear.weight = Param::initialized(
        linear.weight.id,
        Tensor::<2>::from_data(unit.weight.clone(), device),
    );
    if let Some(bias) = linear.bias.as_mut() {
        let b = unit.bias.clone().unwrap_or_else(|| vec![0.0; expected[1]]);
        *bias = Param::initialized(bias.id, tensor1(&b, device));
    }
    Ok(())
}
