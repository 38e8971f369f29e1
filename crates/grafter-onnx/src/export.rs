//! Writing a fine-tuned [`Classifier`] back out as ONNX.
//!
//! Any backbone implementing [`OnnxBackboneExport`] can be written: the [`OnnxBackbone`]
//! below, or a module of another crate built from [`OnnxEmitter`]'s layers (the zoo's
//! ResNet and VGG).
//!
//! The exporter re-emits the backbone's kept graph from the same step list the interpreter
//! runs (with the fine-tuned weights), then the head (global pooling, flatten, Gemm…). The
//! batch axis is a named dynamic dimension. burn-onnx's tracing exporter was not used: it
//! needs Burn's `capture`/`extension`/`ir` features (which would rebuild all of Burn for the
//! workspace) and bakes traced shapes, while the graph here already knows every ONNX op.

use std::path::Path;

use grafter_core::Classifier;
use grafter_core::head::{LinearHead, MlpHead, Pooling};
use onnx_ir::{Message, ModelProto};

use crate::emitter::{ExportError, OnnxEmitter, emit_bn, emit_linear, host};
use crate::graph::{Op, Operand, ResizeMode, ResizeSize};
use crate::proto::{Attr, Emitter, value_info};
use crate::{OnnxBackbone, OnnxError, Result};

/// A grafter head that can write itself as ONNX nodes.
pub trait OnnxHead {
    /// Emits nodes from `features` (`[N, C, h, w]`) to logits; returns the logits' name.
    fn emit_onnx(&self, e: &mut OnnxEmitter, features: &str) -> String;
}

/// A backbone that can write itself as ONNX nodes.
///
/// Implemented for [`OnnxBackbone`] here and for the zoo's ResNet, VGG and `AnyBackbone` in
/// grafter-zoo; [`export_classifier`] takes any backbone implementing it.
pub trait OnnxBackboneExport: grafter_core::Backbone {
    /// Emits nodes from `input` (`[N, 3, H, W]`) to the feature map (`[N, C, h, w]`);
    /// returns the features' value name, or why the backbone cannot be written.
    fn emit_backbone(
        &self,
        e: &mut OnnxEmitter,
        input: &str,
    ) -> std::result::Result<String, ExportError>;
}

fn emit_pooling(e: &mut Emitter, pooling: Pooling, x: &str) -> String {
    let pool = |e: &mut Emitter, op: &str| {
        let p = e.fresh("pool");
        e.node(op, &[x], &p, vec![]);
        let f = e.fresh("flat");
        e.node("Flatten", &[&p], &f, vec![("axis", Attr::Int(1))]);
        f
    };
    match pooling {
        Pooling::Avg => pool(e, "GlobalAveragePool"),
        Pooling::Max => pool(e, "GlobalMaxPool"),
        Pooling::AvgMax => {
            let a = pool(e, "GlobalAveragePool");
            let m = pool(e, "GlobalMaxPool");
            let out = e.fresh("avgmax");
            e.node("Concat", &[&a, &m], &out, vec![("axis", Attr::Int(1))]);
            out
        }
    }
}

impl OnnxHead for LinearHead {
    fn emit_onnx(&self, e: &mut OnnxEmitter, features: &str) -> String {
        let pooled = emit_pooling(&mut e.0, self.pooling, features);
        emit_linear(&mut e.0, &self.linear, &pooled)
    }
}

impl OnnxHead for MlpHead {
    fn emit_onnx(&self, e: &mut OnnxEmitter, features: &str) -> String {
        let mut x = emit_pooling(&mut e.0, self.pooling, features);
        for block in &self.blocks {
            x = emit_linear(&mut e.0, &block.linear, &x);
            if let Some(norm) = &block.norm {
                x = emit_bn(&mut e.0, norm, &x, None);
            }
            let r = e.0.fresh("relu");
            e.0.node("Relu", &[&x], &r, vec![]);
            x = r;
        }
        emit_linear(&mut e.0, &self.out, &x)
    }
}

/// Writes `model` to `path` as an ONNX model (opset 17) with input `input [N, 3, H, W]` and
/// output `logits [N, K]`; `N`, `H` and `W` are named dynamic dimensions. The file is written
/// atomically (a temporary file beside `path`, then a rename).
///
/// The backbone can be an [`OnnxBackbone`] (its kept graph is re-emitted with the fine-tuned
/// weights) or one of the zoo's typed backbones (ResNet with basic or bottleneck blocks, v1
/// or v1.5 strides; VGG with or without BatchNorm; `AnyBackbone`); any
/// [`OnnxBackboneExport`] works. BatchNorms are written as
/// `BatchNormalization` nodes with their running statistics (inference mode), not folded.
/// The head is a [`LinearHead`], an [`MlpHead`], the zoo's VGG classifier (dropout omitted)
/// or any other [`OnnxHead`].
///
/// Errors: [`OnnxError::Export`] when the model cannot be expressed (a backbone that does
/// not end at a feature map, `Same` padding…), [`OnnxError::Io`] naming `path` when the file
/// cannot be written (a missing directory, say).
pub fn export_classifier<B: OnnxBackboneExport, H: OnnxHead + grafter_core::Head>(
    model: &Classifier<B, H>,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(model).map_err(|e| OnnxError::Export {
        path: path.to_path_buf(),
        reason: e.reason,
    })?;
    let tmp = path.with_extension("onnx.tmp");
    let io = |source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        io(source)
    })
}

impl OnnxBackboneExport for OnnxBackbone {
    fn emit_backbone(
        &self,
        e: &mut OnnxEmitter,
        input: &str,
    ) -> std::result::Result<String, ExportError> {
        let b = self;
        let e = &mut e.0;
        let graph = &b.meta().graph;
        let names = &graph.value_names;
        let name_of = |e: &mut Emitter, o: &Operand| -> String {
            match o {
                Operand::Value(v) => names[*v].clone(),
                Operand::Const(c) => {
                    let c = &graph.constants[*c];
                    match (c.param, &c.ints) {
                        (Some(p), _) => {
                            let (_, v) = host(&b.params[p]);
                            e.floats("param", &c.shape, &v)
                        }
                        (None, Some(ints)) => e.ints_shaped("const", &c.shape, ints),
                        (None, None) => e.floats("const", &c.shape, &c.data),
                    }
                }
            }
        };
        let input_name = input;
        for step in &graph.steps {
            let ins: Vec<String> = step
                .inputs
                .iter()
                .map(|o| {
                    if *o == Operand::Value(graph.input) {
                        input_name.to_string()
                    } else {
                        name_of(e, o)
                    }
                })
                .collect();
            let x = ins[0].as_str();
            let out = names[step.output].as_str();
            let ints = |v: &[usize]| Attr::Ints(v.iter().map(|&d| d as i64).collect());
            match &step.op {
                Op::Conv { index, pads } => {
                    let conv = &b.convs[*index];
                    let (wd, w) = host(&conv.weight);
                    let wname = e.floats("W", &wd, &w);
                    let mut inputs = vec![x.to_string(), wname];
                    if let Some(bias) = &conv.bias {
                        let (bd, bv) = host(bias);
                        inputs.push(e.floats("B", &bd, &bv));
                    }
                    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                    e.node(
                        "Conv",
                        &refs,
                        out,
                        vec![
                            ("kernel_shape", ints(&wd[2..])),
                            ("strides", ints(&conv.stride)),
                            ("pads", ints(pads)),
                            ("dilations", ints(&conv.dilation)),
                            ("group", Attr::Int(conv.groups as i64)),
                        ],
                    );
                }
                Op::BatchNorm { index } => {
                    emit_bn(e, &b.bns[*index], x, Some(out));
                }
                Op::Linear { index } => {
                    let lin = &b.linears[*index];
                    let (wd, w) = host(&lin.weight);
                    let wname = e.floats("W", &wd, &w);
                    match &lin.bias {
                        Some(bias) => {
                            let mm = e.fresh("matmul");
                            e.node("MatMul", &[x, &wname], &mm, vec![]);
                            let (bd, bv) = host(bias);
                            let bname = e.floats("B", &bd, &bv);
                            e.node("Add", &[&mm, &bname], out, vec![]);
                        }
                        None => e.node("MatMul", &[x, &wname], out, vec![]),
                    }
                }
                Op::Relu => e.node("Relu", &[x], out, vec![]),
                Op::LeakyRelu(a) => {
                    e.node("LeakyRelu", &[x], out, vec![("alpha", Attr::Float(*a))])
                }
                Op::Clip { min, max } => {
                    let lo = min.map(|v| e.floats("min", &[], &[v])).unwrap_or_default();
                    let hi = max.map(|v| e.floats("max", &[], &[v])).unwrap_or_default();
                    e.node("Clip", &[x, &lo, &hi], out, vec![]);
                }
                Op::Sigmoid => e.node("Sigmoid", &[x], out, vec![]),
                Op::HardSigmoid { alpha, beta } => e.node(
                    "HardSigmoid",
                    &[x],
                    out,
                    vec![("alpha", Attr::Float(*alpha)), ("beta", Attr::Float(*beta))],
                ),
                Op::HardSwish => e.node("HardSwish", &[x], out, vec![]),
                Op::Swish => {
                    let s = e.fresh("sigmoid");
                    e.node("Sigmoid", &[x], &s, vec![]);
                    e.node("Mul", &[x, &s], out, vec![]);
                }
                Op::Tanh => e.node("Tanh", &[x], out, vec![]),
                Op::MaxPool {
                    kernel,
                    stride,
                    pads,
                    dilation,
                    ceil,
                } => e.node(
                    "MaxPool",
                    &[x],
                    out,
                    vec![
                        ("kernel_shape", ints(kernel)),
                        ("strides", ints(stride)),
                        ("pads", ints(pads)),
                        ("dilations", ints(dilation)),
                        ("ceil_mode", Attr::Int(*ceil as i64)),
                    ],
                ),
                Op::AvgPool {
                    kernel,
                    stride,
                    pads,
                    count_include_pad,
                    ceil,
                } => e.node(
                    "AveragePool",
                    &[x],
                    out,
                    vec![
                        ("kernel_shape", ints(kernel)),
                        ("strides", ints(stride)),
                        ("pads", ints(pads)),
                        ("count_include_pad", Attr::Int(*count_include_pad as i64)),
                        ("ceil_mode", Attr::Int(*ceil as i64)),
                    ],
                ),
                Op::GlobalAvgPool => e.node("GlobalAveragePool", &[x], out, vec![]),
                Op::Add | Op::Sub | Op::Mul | Op::Div => {
                    let op = match step.op {
                        Op::Add => "Add",
                        Op::Sub => "Sub",
                        Op::Mul => "Mul",
                        _ => "Div",
                    };
                    e.node(op, &[x, &ins[1]], out, vec![]);
                }
                Op::Concat { axis } => {
                    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                    e.node(
                        "Concat",
                        &refs,
                        out,
                        vec![("axis", Attr::Int(*axis as i64))],
                    );
                }
                Op::Flatten { axis } => e.node(
                    "Flatten",
                    &[x],
                    out,
                    vec![("axis", Attr::Int(*axis as i64))],
                ),
                Op::Reshape { shape } => {
                    let s = e.ints("shape", shape);
                    e.node("Reshape", &[x, &s], out, vec![]);
                }
                Op::Transpose { perm } => {
                    e.node("Transpose", &[x], out, vec![("perm", ints(perm))])
                }
                Op::Pad { pads, value } => {
                    let mut p: Vec<i64> = pads.iter().map(|(b, _)| *b as i64).collect();
                    p.extend(pads.iter().map(|(_, a)| *a as i64));
                    let pname = e.ints("pads", &p);
                    let vname = e.floats("pad_value", &[], &[*value]);
                    e.node("Pad", &[x, &pname, &vname], out, vec![]);
                }
                Op::Identity => e.node("Identity", &[x], out, vec![]),
                Op::Softmax { axis } => e.node(
                    "Softmax",
                    &[x],
                    out,
                    vec![("axis", Attr::Int(*axis as i64))],
                ),
                Op::ReduceMean { axes, keepdims } => e.node(
                    "ReduceMean",
                    &[x],
                    out,
                    vec![
                        ("axes", ints(axes)),
                        ("keepdims", Attr::Int(*keepdims as i64)),
                    ],
                ),
                Op::ReduceMax { axes, keepdims } => e.node(
                    "ReduceMax",
                    &[x],
                    out,
                    vec![
                        ("axes", ints(axes)),
                        ("keepdims", Attr::Int(*keepdims as i64)),
                    ],
                ),
                Op::ReduceSum { axes, keepdims } => {
                    let a: Vec<i64> = axes.iter().map(|&v| v as i64).collect();
                    let aname = e.ints("axes", &a);
                    e.node(
                        "ReduceSum",
                        &[x, &aname],
                        out,
                        vec![("keepdims", Attr::Int(*keepdims as i64))],
                    );
                }
                Op::Pow => e.node("Pow", &[x, &ins[1]], out, vec![]),
                Op::Tile { repeats } => {
                    let r: Vec<i64> = repeats.iter().map(|&v| v as i64).collect();
                    let rname = e.ints("repeats", &r);
                    e.node("Tile", &[x, &rname], out, vec![]);
                }
                Op::Resize { mode, size } => {
                    let (name, coords) = match mode {
                        ResizeMode::Nearest => ("nearest", "asymmetric"),
                        ResizeMode::Linear {
                            align_corners: false,
                        } => ("linear", "half_pixel"),
                        ResizeMode::Linear {
                            align_corners: true,
                        } => ("linear", "align_corners"),
                    };
                    let attrs = vec![
                        ("mode", Attr::String(name.into())),
                        (
                            "coordinate_transformation_mode",
                            Attr::String(coords.into()),
                        ),
                        ("nearest_mode", Attr::String("floor".into())),
                    ];
                    match size {
                        ResizeSize::Scales([h, w]) => {
                            let s = e.floats("scales", &[4], &[1.0, 1.0, *h, *w]);
                            e.node("Resize", &[x, "", &s], out, attrs);
                        }
                        ResizeSize::Sizes([h, w]) => {
                            // N and C from the input, H and W fixed
                            let shape = e.fresh("shape");
                            e.node("Shape", &[x], &shape, vec![("end", Attr::Int(2))]);
                            let hw = e.ints("hw", &[*h as i64, *w as i64]);
                            let sizes = e.fresh("sizes");
                            e.node(
                                "Concat",
                                &[&shape, &hw],
                                &sizes,
                                vec![("axis", Attr::Int(0))],
                            );
                            e.node("Resize", &[x, "", "", &sizes], out, attrs);
                        }
                        ResizeSize::Computed => {
                            e.node("Resize", &[x, "", "", &ins[1]], out, attrs);
                        }
                    }
                }
                Op::Squeeze { axes } | Op::Unsqueeze { axes } => {
                    let op = if matches!(step.op, Op::Squeeze { .. }) {
                        "Squeeze"
                    } else {
                        "Unsqueeze"
                    };
                    if axes.is_empty() {
                        // every axis of size 1
                        e.node(op, &[x], out, vec![]);
                    } else {
                        let a: Vec<i64> = axes.iter().map(|&v| v as i64).collect();
                        let aname = e.ints("axes", &a);
                        e.node(op, &[x, &aname], out, vec![]);
                    }
                }
                Op::Erf => e.node("Erf", &[x], out, vec![]),
                Op::Sqrt => e.node("Sqrt", &[x], out, vec![]),
                Op::MatMul => e.node("MatMul", &[x, &ins[1]], out, vec![]),
                Op::LayerNorm {
                    index,
                    axis,
                    epsilon,
                } => {
                    let ln = &b.layer_norms[*index];
                    let (gd, g) = host(&ln.gamma);
                    let mut inputs = vec![x.to_string(), e.floats("scale", &gd, &g)];
                    if let Some(beta) = &ln.beta {
                        let (bd, bv) = host(beta);
                        inputs.push(e.floats("bias", &bd, &bv));
                    }
                    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                    e.node(
                        "LayerNormalization",
                        &refs,
                        out,
                        vec![
                            ("axis", Attr::Int(*axis as i64)),
                            ("epsilon", Attr::Float(*epsilon as f32)),
                        ],
                    );
                }
                op => {
                    if !crate::export_shape::emit(e, op, &ins, out)? {
                        return Err(ExportError::new(format!(
                            "node {}: exporting {op:?} back to ONNX is not supported",
                            step.name
                        )));
                    }
                }
            }
        }
        if graph.value_ranks[graph.output] != 4 {
            return Err(ExportError::new(
                "the backbone does not end at a feature map [N, C, h, w]",
            ));
        }
        Ok(if graph.output == graph.input {
            input_name.to_string()
        } else {
            names[graph.output].clone()
        })
    }
}

fn to_bytes<B: OnnxBackboneExport, H: OnnxHead + grafter_core::Head>(
    model: &Classifier<B, H>,
) -> std::result::Result<Vec<u8>, ExportError> {
    let input_name = "input";
    let mut head = OnnxEmitter(Emitter::default());
    let features = model.backbone.emit_backbone(&mut head, input_name)?;
    let logits = model.head.emit_onnx(&mut head, &features);
    let mut e = head.0;
    e.node("Identity", &[&logits], "logits", vec![]);
    let mut graph_proto = e.graph;
    graph_proto.name = "grafter".into();
    graph_proto.input.push(value_info(
        input_name,
        &[Err("N"), Ok(3), Err("H"), Err("W")],
    ));
    graph_proto
        .output
        .push(value_info("logits", &[Err("N"), Ok(model.num_outputs())]));
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.producer_name = "grafter".into();
    m.opset_import.push(Default::default());
    m.opset_import[0].version = 17;
    m.graph = Some(graph_proto).into();
    m.write_to_bytes()
        .map_err(|e| ExportError::new(e.to_string()))
}
