//! Reading the weights of a CNN from an ONNX file at run time (onnx-ir, no code generation),
//! by graph structure: the weighted layers in execution order, each convolution with the
//! BatchNorm that consumes it (absent in graphs exported with BatchNorm folded), then the
//! fully connected layers. Initializer names are never relied on: exporters rename them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::TensorData;
use grafter_core::tensor_layout::transpose2;
use onnx_ir::{Node, OnnxGraphBuilder};

use crate::ZooError;

/// A BatchNorm's parameters, in inference form.
#[derive(Clone, Debug)]
pub struct BnUnit {
    /// ONNX node name.
    pub node: String,
    /// Scale (γ).
    pub gamma: Vec<f32>,
    /// Shift (β).
    pub beta: Vec<f32>,
    /// Running mean.
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
    /// ε.
    pub epsilon: f64,
}

/// A convolution, with the BatchNorm right after it when the graph has one.
#[derive(Clone, Debug)]
pub struct ConvUnit {
    /// ONNX node name.
    pub node: String,
    /// Kernel `[out, in/groups, kh, kw]`.
    pub weight: TensorData,
    /// Bias, when the convolution has one (always, once BatchNorm was folded into it).
    pub bias: Option<Vec<f32>>,
    /// Stride `[h, w]`.
    pub stride: [usize; 2],
    /// Groups.
    pub groups: usize,
    /// The BatchNorm consuming this convolution's output.
    pub bn: Option<BnUnit>,
}

/// A fully connected layer (Gemm with `transB=1`, or MatMul with a constant weight).
#[derive(Clone, Debug)]
pub struct LinearUnit {
    /// ONNX node name.
    pub node: String,
    /// Weight in Burn's layout `[in, out]`.
    pub weight: TensorData,
    /// Bias.
    pub bias: Option<Vec<f32>>,
}

/// The weighted layers of an ONNX CNN, in execution order.
#[derive(Clone, Debug)]
pub struct OnnxWeights {
    /// The file they were read from.
    pub path: PathBuf,
    /// Convolutions (with their BatchNorms).
    pub convs: Vec<ConvUnit>,
    /// Fully connected layers.
    pub linears: Vec<LinearUnit>,
}

/// Operators that carry no weights and that a plain classification CNN may contain.
const WEIGHTLESS: &[&str] = &[
    "Relu",
    "MaxPool2d",
    "AveragePool2d",
    "GlobalAveragePool",
    // The dynamo exporter's global pooling (a mean over the spatial axes, axes as an input).
    "ReduceMean",
    "Add",
    "Flatten",
    "Reshape",
    "Dropout",
    "Identity",
    "Softmax",
    "Transpose",
    "Constant",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
];

impl OnnxWeights {
    /// Parses `path` and collects its weighted layers, the classifier included.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, ZooError> {
        Self::read_with(path.as_ref(), false)
    }

    /// Parses `path` and collects its convolutions only: whatever follows the last one (a
    /// custom head, Keras' flatten/dense/BatchNorm arithmetic) is ignored, not validated.
    pub fn read_backbone(path: impl AsRef<Path>) -> Result<Self, ZooError> {
        Self::read_with(path.as_ref(), true)
    }

    fn read_with(path: &Path, backbone_only: bool) -> Result<Self, ZooError> {
        let bad = |reason: String| ZooError::Weights {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(ZooError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        // onnx-ir may panic on malformed input; user files must never crash the caller.
        let parsed = std::panic::catch_unwind(|| OnnxGraphBuilder::new().parse_file(path))
            .map_err(|_| bad("not a readable ONNX model (the parser failed)".into()))?;
        let graph = parsed.map_err(|e| bad(format!("not a readable ONNX model: {e}")))?;

        let mut unsupported: Vec<(usize, String)> = Vec::new();
        let mut last_conv_node = 0;
        let mut convs: Vec<ConvUnit> = Vec::new();
        let mut conv_by_output: BTreeMap<String, usize> = BTreeMap::new();
        let mut linears = Vec::new();
        for (index, node) in graph.nodes.iter().enumerate() {
            match node {
                Node::Conv2d(n) => {
                    last_conv_node = index;
                    let weight = constant(&n.inputs, 1, &n.name).map_err(&bad)?;
                    let bias = match n.inputs.get(2) {
                        Some(_) => Some(floats(constant(&n.inputs, 2, &n.name).map_err(&bad)?)),
                        None => None,
                    };
                    let Some(out) = n.outputs.first() else {
                        return Err(bad(format!("node {} has no output", n.name)));
                    };
                    conv_by_output.insert(out.name.clone(), convs.len());
                    convs.push(ConvUnit {
                        node: n.name.clone(),
                        weight,
                        bias,
                        stride: n.config.stride,
                        groups: n.config.groups,
                        bn: None,
                    });
                }
                Node::BatchNormalization(n) => {
                    let input = n.inputs.first().map(|a| a.name.as_str()).unwrap_or("");
                    let Some(&i) = conv_by_output.get(input) else {
                        unsupported
                            .push((index, "BatchNormalization not directly after a Conv".into()));
                        continue;
                    };
                    last_conv_node = index;
                    let epsilon = match &n.config {
                        onnx_ir::batch_norm::BatchNormConfig::Static(c) => c.epsilon,
                        onnx_ir::batch_norm::BatchNormConfig::Runtime(c) => c.epsilon,
                    };
                    let get = |k| constant(&n.inputs, k, &n.name).map(floats).map_err(&bad);
                    convs[i].bn = Some(BnUnit {
                        node: n.name.clone(),
                        gamma: get(1)?,
                        beta: get(2)?,
                        mean: get(3)?,
                        var: get(4)?,
                        epsilon,
                    });
                }
                Node::Linear(n) if !backbone_only => {
                    let w = constant(&n.inputs, 1, &n.name).map_err(&bad)?;
                    if w.shape().len() != 2 {
                        return Err(bad(format!(
                            "node {}: a fully connected weight must be 2-D, found shape {:?}",
                            n.name,
                            w.shape().to_vec()
                        )));
                    }
                    let weight = if n.config.transpose_weight {
                        transpose2(w)
                    } else {
                        w
                    };
                    let bias = match n.inputs.get(2) {
                        Some(_) => Some(floats(constant(&n.inputs, 2, &n.name).map_err(&bad)?)),
                        None => None,
                    };
                    linears.push(LinearUnit {
                        node: n.name.clone(),
                        weight,
                        bias,
                    });
                }
                other => {
                    let kind = format!("{:?}", other.node_type());
                    if !WEIGHTLESS.contains(&kind.as_str()) {
                        unsupported.push((index, kind));
                    }
                }
            }
        }
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (index, kind) in unsupported {
            if !backbone_only || index < last_conv_node {
                *counts.entry(kind).or_default() += 1;
            }
        }
        if backbone_only {
            linears.clear();
        }
        if !counts.is_empty() {
            let list: Vec<String> = counts.iter().map(|(op, n)| format!("{op} ×{n}")).collect();
            return Err(bad(format!(
                "unsupported ONNX graph for a ResNet/VGG weight import: {} (use grafter-onnx for arbitrary graphs)",
                list.join(", ")
            )));
        }
        if convs.is_empty() {
            return Err(bad("the graph has no convolution: not a CNN".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            convs,
            linears,
        })
    }
}

fn constant(inputs: &[onnx_ir::Argument], index: usize, node: &str) -> Result<TensorData, String> {
    let arg = inputs
        .get(index)
        .ok_or_else(|| format!("node {node} lacks input {index}"))?;
    let data = arg.value().ok_or_else(|| {
        format!(
            "node {node}: input '{}' is computed at run time, not a stored weight",
            arg.name
        )
    })?;
    Ok(data.convert::<f32>())
}

fn floats(data: TensorData) -> Vec<f32> {
    data.try_into_vec::<f32>().unwrap_or_default()
}
