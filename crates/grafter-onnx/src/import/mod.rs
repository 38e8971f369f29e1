//! Translating onnx-ir's typed nodes into [`Graph`] steps and host-side weights.
//!
//! Every node is looked at before anything is built: unsupported operators are collected
//! (with counts) and reported together, so a user sees the whole list at once and no
//! half-built backbone ever exists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use burn::tensor::TensorData;
use onnx_ir::{ArgType, Argument, Node, OnnxGraph};

use crate::graph::{Constant, Graph, MAX_RANK, Op, Operand, Pads, Step};
use crate::validate;
use crate::{OnnxError, Result};

mod auto_pad;
mod channels_last;
mod resample_nodes;
mod transformer_nodes;

/// A convolution's weights and geometry, before it becomes a Burn module.
#[derive(Clone, Debug)]
pub(crate) struct ConvSpec {
    pub weight: TensorData,
    pub bias: Option<Vec<f32>>,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

/// A BatchNormalization's parameters and statistics.
#[derive(Clone, Debug)]
pub(crate) struct BnSpec {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub epsilon: f64,
    /// ONNX momentum (weight of the old running value).
    pub momentum: f64,
}

/// A fully connected layer, weight in Burn's `[in, out]` layout.
#[derive(Clone, Debug)]
pub(crate) struct LinearSpec {
    pub weight: TensorData,
    pub bias: Option<Vec<f32>>,
}

/// A LayerNormalization's scale and bias (over the normalised axes, flattened).
#[derive(Clone, Debug)]
pub(crate) struct LayerNormSpec {
    pub scale: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub epsilon: f64,
}

/// The graph and the weights its steps point to.
pub(crate) struct Imported {
    pub graph: Graph,
    pub convs: Vec<ConvSpec>,
    pub bns: Vec<BnSpec>,
    pub linears: Vec<LinearSpec>,
    pub layer_norms: Vec<LayerNormSpec>,
    /// Slots of the graph outputs, in order.
    pub outputs: Vec<usize>,
    /// The image input's static `[N, C, H, W]`, each `None` where symbolic.
    pub input_shape: Vec<Option<usize>>,
}

struct Builder<'a> {
    path: &'a Path,
    slots: HashMap<String, usize>,
    names: Vec<String>,
    ranks: Vec<usize>,
    constants: Vec<Constant>,
    steps: Vec<Step>,
    convs: Vec<ConvSpec>,
    bns: Vec<BnSpec>,
    linears: Vec<LinearSpec>,
    layer_norms: Vec<LayerNormSpec>,
    unsupported: BTreeMap<String, usize>,
    /// The batch the graph was exported with, when its input's batch is static: a Reshape
    /// target starting with it is rewritten to keep the batch.
    export_batch: Option<usize>,
    /// The image input's name and slot, to recognise a channels-last (NHWC) input.
    image: Option<(String, usize)>,
    /// The values of a channels-last image before its transpose to NCHW, by name (held in
    /// NCHW: see `channels_last.rs`).
    channels_last: HashSet<String>,
    /// Channel count (axis 1) of the values where it is known without running the graph:
    /// the outputs of convolutions and of the ops that keep their input's channels. Lets a
    /// BatchNorm or convolution that does not fit its input fail at load.
    channels: HashMap<usize, usize>,
}

/// Translates a parsed graph.
pub(crate) fn import(path: &Path, parsed: &OnnxGraph) -> Result<Imported> {
    let input = find_image_input(path, parsed)?;
    let mut b = Builder {
        path,
        slots: HashMap::new(),
        names: Vec::new(),
        ranks: Vec::new(),
        constants: Vec::new(),
        steps: Vec::new(),
        convs: Vec::new(),
        bns: Vec::new(),
        linears: Vec::new(),
        layer_norms: Vec::new(),
        unsupported: BTreeMap::new(),
        export_batch: None,
        image: None,
        channels_last: HashSet::new(),
        channels: HashMap::new(),
    };
    let input_shape: Vec<Option<usize>> = input
        .ty
        .static_shape()
        .cloned()
        .unwrap_or_else(|| vec![None; 4]);
    b.export_batch = input_shape.first().copied().flatten();
    let input_slot = b.new_value(input)?;
    b.image = Some((input.name.clone(), input_slot));
    // `[N, H, W, 3]`: a channels-last export (the rule `OnnxBackbone::load` sizes inputs by)
    let dim = |i: usize| input_shape.get(i).copied().flatten();
    if input_shape.len() == 4 && dim(3) == Some(3) && dim(1) != Some(3) {
        b.channels_last.insert(input.name.clone());
    }
    for node in &parsed.nodes {
        b.node(node)?;
    }
    if !b.unsupported.is_empty() {
        return Err(OnnxError::UnsupportedOps {
            path: path.to_path_buf(),
            ops: b.unsupported.into_iter().collect(),
        });
    }
    let mut outputs = Vec::new();
    for out in &parsed.outputs {
        let slot = b
            .slots
            .get(&out.name)
            .copied()
            .ok_or_else(|| OnnxError::Graph {
                path: path.to_path_buf(),
                reason: format!(
                    "graph output '{}' is not computed from the image input",
                    out.name
                ),
            })?;
        outputs.push(slot);
    }
    if outputs.is_empty() {
        return Err(b.graph_err("the graph has no output".into()));
    }
    let conv_strides = b.convs.iter().map(|c| c.stride).collect();
    Ok(Imported {
        graph: Graph {
            steps: b.steps,
            value_names: b.names,
            value_ranks: b.ranks,
            input: input_slot,
            output: outputs[0],
            constants: b.constants,
            conv_strides,
        },
        convs: b.convs,
        bns: b.bns,
        linears: b.linears,
        layer_norms: b.layer_norms,
        outputs,
        input_shape,
    })
}

fn find_image_input<'g>(path: &Path, parsed: &'g OnnxGraph) -> Result<&'g Argument> {
    let dynamic: Vec<&Argument> = parsed
        .inputs
        .iter()
        .filter(|a| a.value().is_none())
        .collect();
    let image = dynamic.iter().find(|a| match &a.ty {
        ArgType::Tensor(t) => t.rank == 4 && t.dtype.is_float(),
        _ => false,
    });
    match image {
        Some(a) if dynamic.len() == 1 => Ok(a),
        _ => Err(OnnxError::NoImageInput {
            path: path.to_path_buf(),
            found: if dynamic.is_empty() {
                "no input".into()
            } else {
                dynamic
                    .iter()
                    .map(|a| format!("'{}': {:?}", a.name, a.ty))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

fn floats(data: TensorData) -> Vec<f32> {
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

fn pads4(p: &onnx_ir::padding::PaddingConfig2d) -> Pads {
    match p {
        onnx_ir::padding::PaddingConfig2d::Valid => [0; 4],
        onnx_ir::padding::PaddingConfig2d::Explicit(t, l, b, r) => [*t, *l, *b, *r],
    }
}

/// A 2-D weight `[a, b]` as `[b, a]`; any other rank is refused.
fn transpose2(w: TensorData) -> std::result::Result<TensorData, String> {
    if w.shape().len() != 2 {
        return Err(format!(
            "weight of shape {:?} cannot be transposed (must be 2-D)",
            w.shape().to_vec()
        ));
    }
    Ok(grafter_core::tensor_layout::transpose2(w))
}

/// Whether an op's output has its (first) input's channel count.
fn keeps_channels(op: &Op) -> bool {
    op.is_activation()
        || matches!(
            op,
            Op::BatchNorm { .. }
                | Op::MaxPool { .. }
                | Op::AvgPool { .. }
                | Op::GlobalAvgPool
                | Op::Resize { .. }
        )
}

impl Builder<'_> {
    fn graph_err(&self, reason: String) -> OnnxError {
        OnnxError::Graph {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    /// A validation failure of node `name`, as a typed error naming the file and the node.
    fn check<T>(&self, name: &str, r: std::result::Result<T, String>) -> Result<T> {
        r.map_err(|reason| self.graph_err(format!("node {name}: {reason}")))
    }

    /// The channel count of the node's first input, where known at load.
    fn input_channels(&self, node: &Node) -> Option<usize> {
        let slot = self.slots.get(&node.inputs().first()?.name)?;
        self.channels.get(slot).copied()
    }

    /// The rank of the node's input `i` (0 when absent).
    fn input_rank(node: &Node, i: usize) -> usize {
        node.inputs().get(i).map_or(0, |a| a.ty.rank())
    }

    /// Records an unsupported node, and gives its outputs slots so later nodes still
    /// translate (and report their own problems) instead of failing on a missing input.
    fn skip(&mut self, node: &Node, what: impl Into<String>) {
        *self.unsupported.entry(what.into()).or_default() += 1;
        for out in node.outputs() {
            let slot = self.names.len();
            self.names.push(out.name.clone());
            self.ranks.push(out.ty.rank().min(MAX_RANK));
            self.slots.insert(out.name.clone(), slot);
        }
    }

    fn new_value(&mut self, arg: &Argument) -> Result<usize> {
        let rank = arg.ty.rank();
        if rank > MAX_RANK {
            return Err(self.graph_err(format!(
                "value '{}' has rank {rank}; only tensors of rank up to {MAX_RANK} are supported",
                arg.name
            )));
        }
        let slot = self.names.len();
        self.names.push(arg.name.clone());
        self.ranks.push(rank);
        self.slots.insert(arg.name.clone(), slot);
        Ok(slot)
    }

    /// A constant weight input, as `f32` data.
    fn weight(&self, node: &str, inputs: &[Argument], i: usize) -> Result<TensorData> {
        let arg = inputs
            .get(i)
            .ok_or_else(|| self.graph_err(format!("node {node} lacks input {i}")))?;
        arg.value().map(|d| d.convert::<f32>()).ok_or_else(|| {
            self.graph_err(format!(
                "node {node}: input '{}' is computed at run time, not a stored weight",
                arg.name
            ))
        })
    }

    fn optional_weight(
        &self,
        node: &str,
        inputs: &[Argument],
        i: usize,
    ) -> Result<Option<Vec<f32>>> {
        match inputs.get(i) {
            Some(a) if !a.is_optional() && (a.value().is_some() || !a.name.is_empty()) => {
                Ok(Some(floats(self.weight(node, inputs, i)?)))
            }
            _ => Ok(None),
        }
    }

    fn operand(&mut self, arg: &Argument) -> Option<Operand> {
        if let Some(&slot) = self.slots.get(&arg.name) {
            return Some(Operand::Value(slot));
        }
        let data = arg.value()?;
        let shape = data.shape().to_vec();
        let ints = data
            .dtype()
            .is_int()
            .then(|| data.clone().convert::<i64>().try_into_vec::<i64>().ok())
            .flatten();
        self.constants.push(Constant {
            data: floats(data),
            shape,
            ints,
            param: None,
        });
        Some(Operand::Const(self.constants.len() - 1))
    }

    /// Adds a step whose data inputs are `inputs` (indices into the node's inputs).
    fn step(&mut self, node: &Node, op: Op, inputs: &[usize]) -> Result<()> {
        self.step_to(node, op, inputs, 0)
    }

    /// An integer constant operand made at load (a bound lifted into a node's config).
    fn int_operand(&mut self, v: i64) -> Operand {
        self.constants.push(Constant {
            data: vec![v as f32],
            shape: vec![],
            ints: Some(vec![v]),
            param: None,
        });
        Operand::Const(self.constants.len() - 1)
    }

    /// Adds a step computing the node's output `out_index`.
    fn step_to(&mut self, node: &Node, op: Op, inputs: &[usize], out_index: usize) -> Result<()> {
        self.step_operands(node, op, inputs, Vec::new(), out_index)
    }

    /// Adds a step whose operands are the node's inputs `inputs`, then `extra`.
    fn step_operands(
        &mut self,
        node: &Node,
        op: Op,
        inputs: &[usize],
        extra: Vec<Operand>,
        out_index: usize,
    ) -> Result<()> {
        let mut operands = Vec::new();
        for &i in inputs {
            let Some(arg) = node.inputs().get(i) else {
                return Err(self.graph_err(format!("node {} lacks input {i}", node.name())));
            };
            match self.operand(arg) {
                Some(o) => operands.push(o),
                // Not computed from the image (a second graph input): cannot run.
                None => {
                    return Err(self.graph_err(format!(
                        "node {}: input '{}' is neither computed from the image nor constant",
                        node.name(),
                        arg.name
                    )));
                }
            }
        }
        operands.extend(extra);
        let out = node.outputs().get(out_index).ok_or_else(|| {
            self.graph_err(format!("node {} lacks output {out_index}", node.name()))
        })?;
        let output = self.new_value(out)?;
        let in_channels = match operands.first() {
            Some(Operand::Value(v)) => self.channels.get(v).copied(),
            _ => None,
        };
        let out_channels = match &op {
            Op::Conv { index, .. } => self.convs[*index].weight.shape().first().copied(),
            op if keeps_channels(op) => in_channels,
            _ => None,
        };
        if let Some(c) = out_channels {
            self.channels.insert(output, c);
        }
        let name = if out_index == 0 {
            node.name().to_string()
        } else {
            format!("{}#{out_index}", node.name())
        };
        self.steps.push(Step {
            name,
            op,
            inputs: operands,
            output,
        });
        Ok(())
    }

    /// ReduceMean, ReduceSum or ReduceMax (`kind`) over axes known at load.
    fn reduce(
        &mut self,
        node: &Node,
        name: &str,
        config: &onnx_ir::reduce::ReduceConfig,
        kind: &str,
    ) -> Result<()> {
        let rank = Self::input_rank(node, 0);
        let axes = match &config.axes {
            onnx_ir::reduce::ReduceAxes::Static(a) if a.is_empty() => {
                if config.noop_with_empty_axes {
                    return self.step(node, Op::Identity, &[0]);
                }
                Some((0..rank).collect())
            }
            onnx_ir::reduce::ReduceAxes::Static(a) => {
                for &x in a {
                    self.check(name, validate::axis_below(x, rank, rank))?;
                }
                Some(a.clone())
            }
            onnx_ir::reduce::ReduceAxes::Runtime(r) => match self.static_input(node, r.input_index)
            {
                Some(v) => Some(self.check(name, validate::axes(&v, rank))?),
                None => None,
            },
        };
        let Some(axes) = axes else {
            self.skip(node, format!("{kind} (axes computed at run time)"));
            return Ok(());
        };
        let keepdims = config.keepdims;
        let op = match kind {
            "ReduceSum" => Op::ReduceSum { axes, keepdims },
            "ReduceMax" => Op::ReduceMax { axes, keepdims },
            _ => Op::ReduceMean { axes, keepdims },
        };
        self.step(node, op, &[0])
    }

    fn static_input(&self, node: &Node, i: usize) -> Option<Vec<i64>> {
        let data = node.inputs().get(i)?.value()?;
        data.convert::<i64>().try_into_vec::<i64>().ok()
    }

    fn node(&mut self, node: &Node) -> Result<()> {
        if let Some(result) = self.channels_last_node(node) {
            return result;
        }
        let kind = format!("{:?}", node.node_type());
        match node {
            Node::Constant(_) => Ok(()),
            Node::Conv2d(n) => {
                let c = &n.config;
                let pads = match auto_pad::resolve(
                    &c.auto_pad,
                    &c.padding,
                    c.kernel_size,
                    c.stride,
                    c.dilation,
                ) {
                    Ok(pads) => pads,
                    Err(what) => {
                        self.skip(node, format!("Conv ({what})"));
                        return Ok(());
                    }
                };
                let weight = self.weight(&n.name, &n.inputs, 1)?;
                let bias = self.optional_weight(&n.name, &n.inputs, 2)?;
                let channels = self.input_channels(node);
                self.check(
                    &n.name,
                    conv_fits(&weight, bias.as_deref(), c, &pads, channels),
                )?;
                self.convs.push(ConvSpec {
                    weight,
                    bias,
                    stride: c.stride,
                    dilation: c.dilation,
                    groups: c.groups,
                });
                let op = Op::Conv {
                    index: self.convs.len() - 1,
                    pads,
                };
                self.step(node, op, &[0])
            }
            Node::BatchNormalization(n) => {
                let (epsilon, momentum) = match &n.config {
                    onnx_ir::batch_norm::BatchNormConfig::Static(c) => (c.epsilon, c.momentum),
                    onnx_ir::batch_norm::BatchNormConfig::Runtime(c) => (c.epsilon, c.momentum),
                };
                // onnx-ir reports an absent epsilon as 0; ONNX's default is 1e-5 (and Burn
                // needs a positive one).
                let epsilon = if epsilon == 0.0 { 1e-5 } else { epsilon };
                let get = |k| self.weight(&n.name, &n.inputs, k).map(floats);
                let spec = BnSpec {
                    gamma: get(1)?,
                    beta: get(2)?,
                    mean: get(3)?,
                    var: get(4)?,
                    epsilon,
                    momentum,
                };
                let channels = self.input_channels(node);
                self.check(&n.name, bn_fits(&spec, channels))?;
                self.bns.push(spec);
                let op = Op::BatchNorm {
                    index: self.bns.len() - 1,
                };
                self.step(node, op, &[0])
            }
            Node::Linear(n) => {
                let w = self.weight(&n.name, &n.inputs, 1)?;
                let weight = if n.config.transpose_weight {
                    self.check(&n.name, transpose2(w))?
                } else {
                    w
                };
                let bias = self.optional_weight(&n.name, &n.inputs, 2)?;
                self.push_linear(node, weight, bias)
            }
            Node::Gemm(n) => {
                let c = &n.config;
                let constant_b = n.inputs.get(1).is_some_and(|a| a.value().is_some());
                if c.alpha != 1.0 || c.beta != 1.0 || c.trans_a != 0 || !constant_b {
                    self.skip(node, "Gemm (alpha/beta ≠ 1, transA or non-constant B)");
                    return Ok(());
                }
                let w = self.weight(&n.name, &n.inputs, 1)?;
                let weight = if c.trans_b != 0 {
                    self.check(&n.name, transpose2(w))?
                } else {
                    w
                };
                let bias = self.optional_weight(&n.name, &n.inputs, 2)?;
                self.push_linear(node, weight, bias)
            }
            Node::MatMul(n) => {
                let constant = n.inputs.get(1).and_then(|a| a.value());
                match constant {
                    Some(w) if w.shape().len() == 2 => {
                        self.push_linear(node, w.convert::<f32>(), None)
                    }
                    _ => self.step(node, Op::MatMul, &[0, 1]),
                }
            }
            Node::Relu(_) => self.step(node, Op::Relu, &[0]),
            Node::LeakyRelu(n) => self.step(node, Op::LeakyRelu(n.config.alpha as f32), &[0]),
            Node::Clip(n) => {
                let bound = |b: &Option<onnx_ir::clip::ClipInput>| -> Option<Option<f32>> {
                    match b {
                        None => Some(None),
                        Some(onnx_ir::clip::ClipInput::Static(v)) => Some(Some(*v as f32)),
                        Some(onnx_ir::clip::ClipInput::Runtime(r)) => {
                            let v = n.inputs.get(r.input_index)?.value()?;
                            Some(floats(v).first().copied())
                        }
                    }
                };
                match (bound(&n.config.min), bound(&n.config.max)) {
                    (Some(min), Some(max)) => self.step(node, Op::Clip { min, max }, &[0]),
                    _ => {
                        self.skip(node, "Clip (bounds computed at run time)");
                        Ok(())
                    }
                }
            }
            Node::Sigmoid(_) => self.step(node, Op::Sigmoid, &[0]),
            Node::HardSigmoid(n) => {
                let op = Op::HardSigmoid {
                    alpha: n.config.alpha as f32,
                    beta: n.config.beta as f32,
                };
                self.step(node, op, &[0])
            }
            Node::HardSwish(_) => self.step(node, Op::HardSwish, &[0]),
            Node::Swish(_) => self.step(node, Op::Swish, &[0]),
            Node::Tanh(_) => self.step(node, Op::Tanh, &[0]),
            Node::MaxPool2d(n) => {
                let c = &n.config;
                let pads = match auto_pad::resolve(
                    &c.auto_pad,
                    &c.padding,
                    c.kernel_size,
                    c.strides,
                    c.dilation,
                ) {
                    Ok(pads) => pads,
                    Err(what) => {
                        self.skip(node, format!("MaxPool ({what})"));
                        return Ok(());
                    }
                };
                self.check(&n.name, pool_fits(c.kernel_size, c.strides, &pads))?;
                self.check(&n.name, validate::positive_extents("dilation", &c.dilation))?;
                let op = Op::MaxPool {
                    kernel: c.kernel_size,
                    stride: c.strides,
                    pads,
                    dilation: c.dilation,
                    ceil: c.ceil_mode,
                };
                self.step(node, op, &[0])
            }
            Node::AveragePool2d(n) => {
                let c = &n.config;
                if c.dilation != [1, 1] {
                    self.skip(node, "AveragePool (dilation)");
                    return Ok(());
                }
                let pads = match auto_pad::resolve(
                    &c.auto_pad,
                    &c.padding,
                    c.kernel_size,
                    c.strides,
                    [1, 1],
                ) {
                    Ok(pads) => pads,
                    Err(what) => {
                        self.skip(node, format!("AveragePool ({what})"));
                        return Ok(());
                    }
                };
                self.check(&n.name, pool_fits(c.kernel_size, c.strides, &pads))?;
                let op = Op::AvgPool {
                    kernel: c.kernel_size,
                    stride: c.strides,
                    pads,
                    count_include_pad: c.count_include_pad,
                    ceil: c.ceil_mode,
                };
                self.step(node, op, &[0])
            }
            Node::GlobalAveragePool(_) => self.step(node, Op::GlobalAvgPool, &[0]),
            Node::Add(_) => self.step(node, Op::Add, &[0, 1]),
            Node::Sub(_) => self.step(node, Op::Sub, &[0, 1]),
            Node::Mul(_) => self.step(node, Op::Mul, &[0, 1]),
            Node::Div(_) => self.step(node, Op::Div, &[0, 1]),
            Node::Concat(n) => {
                let rank = n.outputs.first().map_or(0, |o| o.ty.rank());
                self.check(&n.name, validate::axis_below(n.config.axis, rank, rank))?;
                let idx: Vec<usize> = (0..n.inputs.len()).collect();
                self.step(
                    node,
                    Op::Concat {
                        axis: n.config.axis,
                    },
                    &idx,
                )
            }
            Node::Flatten(n) => {
                let rank = Self::input_rank(node, 0);
                self.check(&n.name, validate::axis_below(n.config.axis, rank + 1, rank))?;
                self.step(
                    node,
                    Op::Flatten {
                        axis: n.config.axis,
                    },
                    &[0],
                )
            }
            Node::Reshape(n) => {
                let shape = match &n.config.shape {
                    onnx_ir::reshape::ReshapeInput::Static(s) => Some(s.clone()),
                    onnx_ir::reshape::ReshapeInput::Runtime(r) => {
                        self.static_input(node, r.input_index)
                    }
                };
                match shape {
                    Some(shape) => {
                        self.check(&n.name, validate::reshape_dims(&shape))?;
                        let shape = self.batch_agnostic(&n.name, node, shape);
                        self.step(node, Op::Reshape { shape }, &[0])
                    }
                    None => match &n.config.shape {
                        onnx_ir::reshape::ReshapeInput::Runtime(r) => {
                            self.step(node, Op::ReshapeDynamic, &[0, r.input_index])
                        }
                        onnx_ir::reshape::ReshapeInput::Static(_) => unreachable!(),
                    },
                }
            }
            Node::Transpose(n) => {
                let rank = Self::input_rank(node, 0);
                let perm = self.check(&n.name, validate::perm(&n.config.perm, rank))?;
                // A channels-last export (Keras via tf2onnx) takes NHWC and transposes it to
                // NCHW first: the backbone takes NCHW like every other, so that transpose
                // becomes the identity on the image input.
                if let Some((name, slot)) = &self.image
                    && perm == [0, 3, 1, 2]
                    && n.inputs.first().is_some_and(|a| &a.name == name)
                    && let Some(out) = n.outputs.first()
                {
                    self.slots.insert(out.name.clone(), *slot);
                    return Ok(());
                }
                self.step(node, Op::Transpose { perm }, &[0])
            }
            Node::Pad(n) => {
                use onnx_ir::pad::{ConstantValueInput, PadInput, PadMode};
                let pads = match &n.config.pads {
                    PadInput::Static(p) => Some(p.clone()),
                    PadInput::Runtime { .. } => None,
                };
                let value = match &n.config.constant_value {
                    ConstantValueInput::Static(v) => Some(*v),
                    ConstantValueInput::Runtime(_) => None,
                };
                match (pads, value, &n.config.mode) {
                    (Some(pads), Some(value), PadMode::Constant) => {
                        let flat: Vec<usize> = pads.iter().flat_map(|&(a, b)| [a, b]).collect();
                        self.check(&n.name, validate::pads(&flat))?;
                        self.step(node, Op::Pad { pads, value }, &[0])
                    }
                    _ => {
                        self.skip(node, "Pad (non-constant mode or run-time pads)");
                        Ok(())
                    }
                }
            }
            Node::Dropout(_) | Node::Identity(_) => self.step(node, Op::Identity, &[0]),
            Node::Softmax(n) => {
                let rank = Self::input_rank(node, 0);
                self.check(&n.name, validate::axis_below(n.config.axis, rank, rank))?;
                self.step(
                    node,
                    Op::Softmax {
                        axis: n.config.axis,
                    },
                    &[0],
                )
            }
            Node::ReduceMean(n) => self.reduce(node, &n.name, &n.config, "ReduceMean"),
            Node::ReduceSum(n) => self.reduce(node, &n.name, &n.config, "ReduceSum"),
            Node::ReduceMax(n) => self.reduce(node, &n.name, &n.config, "ReduceMax"),
            Node::Squeeze(n) => {
                let rank = Self::input_rank(node, 0);
                let axes = match &n.config.axes {
                    Some(onnx_ir::squeeze::SqueezeInput::Static(a)) => Some(a.clone()),
                    Some(onnx_ir::squeeze::SqueezeInput::Runtime(r)) => {
                        self.static_input(node, r.input_index)
                    }
                    None => None,
                };
                match axes {
                    Some(a) => {
                        let axes = self.check(&n.name, validate::axes(&a, rank))?;
                        self.step(node, Op::Squeeze { axes }, &[0])
                    }
                    None if n.config.axes.is_none() => {
                        self.step(node, Op::Squeeze { axes: Vec::new() }, &[0])
                    }
                    None => {
                        self.skip(node, "Squeeze (axes computed at run time)");
                        Ok(())
                    }
                }
            }
            Node::Unsqueeze(n) => {
                let out_rank = n.outputs.first().map_or(0, |o| o.ty.rank());
                let axes = match &n.config {
                    onnx_ir::unsqueeze::UnsqueezeConfig::Static(a) => Some(a.clone()),
                    onnx_ir::unsqueeze::UnsqueezeConfig::Runtime(r) => {
                        self.static_input(node, r.input_index)
                    }
                };
                match axes {
                    Some(a) => {
                        let axes = self.check(&n.name, validate::axes(&a, out_rank))?;
                        self.step(node, Op::Unsqueeze { axes }, &[0])
                    }
                    None => {
                        self.skip(node, "Unsqueeze (axes computed at run time)");
                        Ok(())
                    }
                }
            }
            _ => match self
                .transformer_node(node)
                .or_else(|| self.resample_node(node))
            {
                Some(result) => result,
                None => {
                    self.skip(node, kind);
                    Ok(())
                }
            },
        }
    }

    /// A constant Reshape target whose leading dimension is the export batch (the graph was
    /// exported without a dynamic batch) keeps the input's batch instead (`0`), so the graph
    /// runs at any batch size.
    fn batch_agnostic(&self, name: &str, node: &Node, mut shape: Vec<i64>) -> Vec<i64> {
        let from_image = node
            .inputs()
            .first()
            .is_some_and(|a| self.slots.contains_key(&a.name) && a.ty.rank() >= 2);
        if let Some(batch) = self.export_batch
            && from_image
            && shape.len() >= 2
            && shape[0] == batch as i64
            && !shape[1..].contains(&0)
        {
            log::info!(
                "{}: node {name}: Reshape target {shape:?} bakes the export batch {batch}; keeping the input's batch instead",
                self.path.display()
            );
            shape[0] = 0;
        }
        shape
    }

    fn push_linear(
        &mut self,
        node: &Node,
        weight: TensorData,
        bias: Option<Vec<f32>>,
    ) -> Result<()> {
        let shape = weight.shape().to_vec();
        if shape.len() != 2 {
            return Err(self.graph_err(format!(
                "node {}: a fully connected weight must be 2-D, found shape {shape:?}",
                node.name()
            )));
        }
        if let Some(b) = &bias
            && b.len() != shape[1]
        {
            return Err(self.graph_err(format!(
                "node {}: bias has {} values for {} outputs",
                node.name(),
                b.len(),
                shape[1]
            )));
        }
        self.linears.push(LinearSpec { weight, bias });
        let op = Op::Linear {
            index: self.linears.len() - 1,
        };
        self.step(node, op, &[0])
    }
}

/// A convolution's weight, bias and attributes must describe a module Burn can build and run:
/// a 4-D weight, a group dividing the channels, a bias per output channel, bounded strides,
/// dilations and pads, and (when known) as many input channels as the input has.
fn conv_fits(
    weight: &TensorData,
    bias: Option<&[f32]>,
    c: &onnx_ir::conv2d::Conv2dConfig,
    pads: &Pads,
    input_channels: Option<usize>,
) -> std::result::Result<(), String> {
    let s = weight.shape().to_vec();
    let &[out, in_per_group, kh, kw] = s.as_slice() else {
        return Err(format!("Conv weight must be 4-D, found shape {s:?}"));
    };
    if c.groups == 0 {
        return Err("Conv group is 0".into());
    }
    if out % c.groups != 0 {
        return Err(format!(
            "Conv group {} does not divide the {out} output channels",
            c.groups
        ));
    }
    if let Some(b) = bias
        && b.len() != out
    {
        return Err(format!(
            "Conv bias has {} values for {out} output channels",
            b.len()
        ));
    }
    validate::positive_extents("kernel size", &[kh, kw])?;
    validate::positive_extents("stride", &c.stride)?;
    validate::positive_extents("dilation", &c.dilation)?;
    validate::pads(pads)?;
    let expected = in_per_group
        .checked_mul(c.groups)
        .ok_or_else(|| format!("Conv group {} is too large", c.groups))?;
    if let Some(have) = input_channels
        && have != expected
    {
        return Err(format!(
            "Conv takes {expected} input channels (group {} × {in_per_group}) but its input has {have} channels",
            c.groups
        ));
    }
    Ok(())
}

/// A BatchNorm's four vectors must have one length, and it must be the input's channel
/// count when that is known.
fn bn_fits(spec: &BnSpec, input_channels: Option<usize>) -> std::result::Result<(), String> {
    let lens = [
        spec.gamma.len(),
        spec.beta.len(),
        spec.mean.len(),
        spec.var.len(),
    ];
    if lens.iter().any(|&l| l != lens[0]) {
        return Err(format!(
            "BatchNormalization scale/bias/mean/var have different lengths {lens:?}"
        ));
    }
    if let Some(have) = input_channels
        && have != lens[0]
    {
        return Err(format!(
            "BatchNormalization has parameters for {} channels but its input has {have} channels",
            lens[0]
        ));
    }
    if lens[0] == 0 {
        return Err("BatchNormalization has no channels".into());
    }
    if !(spec.epsilon.is_finite() && spec.epsilon > 0.0) {
        return Err(format!(
            "BatchNormalization epsilon {} is not a positive number",
            spec.epsilon
        ));
    }
    if !(0.0..=1.0).contains(&spec.momentum) {
        return Err(format!(
            "BatchNormalization momentum {} is outside [0, 1]",
            spec.momentum
        ));
    }
    Ok(())
}

/// A pooling's kernel, strides and pads must be bounded and non-zero where they divide.
fn pool_fits(
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: &Pads,
) -> std::result::Result<(), String> {
    validate::positive_extents("kernel size", &kernel)?;
    validate::positive_extents("stride", &strides)?;
    validate::pads(pads)
}
