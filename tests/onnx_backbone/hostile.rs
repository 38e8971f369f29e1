//! Malformed graphs built from scratch (no fixtures needed): every one must be refused with a
//! typed error naming the file and the problem, at load, without a panic or an allocation
//! sized by a hostile attribute.

use burn::tensor::Device;
use grafter_onnx::{CutPoint, OnnxBackbone, OnnxBackboneOptions, OnnxError};
use onnx_ir::{
    AttributeProto, AttributeType, Message, ModelProto, NodeProto, TensorProto, ValueInfoProto,
};

pub(crate) const FLOAT: i32 = 1;
pub(crate) const INT64: i32 = 7;

/// An attribute value of a hand-built node.
pub(crate) enum A {
    I(i64),
    Is(Vec<i64>),
    F(f32),
}

pub(crate) fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<(&str, A)>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = format!("{op}_{output}");
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![output.into()];
    for (name, value) in attrs {
        let mut a = AttributeProto::new();
        a.name = name.into();
        match value {
            A::I(i) => {
                a.i = i;
                a.type_ = AttributeType::INT.into();
            }
            A::Is(v) => {
                a.ints = v;
                a.type_ = AttributeType::INTS.into();
            }
            A::F(f) => {
                a.f = f;
                a.type_ = AttributeType::FLOAT.into();
            }
        }
        n.attribute.push(a);
    }
    n
}

pub(crate) fn floats(name: &str, dims: &[i64]) -> TensorProto {
    let n: i64 = dims.iter().product();
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.to_vec();
    t.data_type = FLOAT;
    t.raw_data = (0..n)
        .flat_map(|i| (0.01 * (i % 7) as f32 + 0.5).to_le_bytes())
        .collect();
    t
}

pub(crate) fn ints(name: &str, data: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = vec![data.len() as i64];
    t.data_type = INT64;
    t.raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

pub(crate) fn value(name: &str, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    let t = v.type_.mut_or_insert_default().mut_tensor_type();
    t.elem_type = FLOAT;
    let shape = t.shape.mut_or_insert_default();
    for d in dims {
        shape.dim.push(Default::default());
        let dim = shape.dim.last_mut().unwrap();
        match d {
            Ok(n) => dim.set_dim_value(*n),
            Err(p) => dim.set_dim_param(p.to_string()),
        }
    }
    v
}

/// A model with image input `input [N, 3, 8, 8]`, `nodes`, `inits` and the output `out` of
/// rank `out_rank`, opset `opset`.
pub(crate) fn model(
    opset: i64,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    out_rank: usize,
) -> ModelProto {
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.opset_import.push(Default::default());
    m.opset_import[0].version = opset;
    let g = m.graph.mut_or_insert_default();
    g.name = "hostile".into();
    g.input
        .push(value("input", &[Err("N"), Ok(3), Ok(8), Ok(8)]));
    let dims: Vec<Result<i64, &str>> = (0..out_rank)
        .map(|i| Err(["a", "b", "c", "d"][i]))
        .collect();
    g.output.push(value("out", &dims));
    g.node = nodes;
    g.initializer = inits;
    m
}

/// Writes [`model`] and loads it with the whole graph as the backbone.
fn load_graph(
    name: &str,
    opset: i64,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    out_rank: usize,
) -> (
    std::path::PathBuf,
    Result<OnnxBackbone, OnnxError>,
    tempfile::TempDir,
) {
    let m = model(opset, nodes, inits, out_rank);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(format!("{name}.onnx"));
    std::fs::write(&path, m.write_to_bytes().unwrap()).unwrap();
    let options = OnnxBackboneOptions::default().with_cut(CutPoint::Full);
    let _l = crate::lock();
    let result = OnnxBackbone::load(&path, &options, &Device::flex());
    (path, result, tmp)
}

/// Loads the graph and checks it is refused with an error naming the file and saying `says`.
fn refused(
    name: &str,
    opset: i64,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    out_rank: usize,
    says: &str,
) {
    let (path, result, _tmp) = load_graph(name, opset, nodes, inits, out_rank);
    let err = match result {
        Ok(_) => panic!("{name}: the malformed graph loaded"),
        Err(e) => e,
    };
    assert!(
        matches!(err, OnnxError::Graph { .. } | OnnxError::Parse { .. }),
        "{name}: {err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{name}: {msg}");
    assert!(msg.contains(says), "{name}: expected '{says}' in: {msg}");
    println!("REFUSED {name:<28} {msg}");
}

pub(crate) fn conv(inputs: &[&str], out: &str, attrs: Vec<(&str, A)>) -> NodeProto {
    node("Conv", inputs, out, attrs)
}

#[test]
fn a_well_formed_hand_built_graph_loads() {
    // The builder itself is sound: the same shapes with valid attributes load and run. The
    // BatchNorm has no epsilon attribute: ONNX's default (1e-5) applies, not 0 (which Burn
    // refuses with a panic).
    let nodes = vec![
        conv(&["input", "w", "b"], "c", vec![("group", A::I(1))]),
        node(
            "BatchNormalization",
            &["c", "g", "be", "m", "v"],
            "out",
            vec![],
        ),
    ];
    let inits = vec![
        floats("w", &[4, 3, 1, 1]),
        floats("b", &[4]),
        floats("g", &[4]),
        floats("be", &[4]),
        floats("m", &[4]),
        floats("v", &[4]),
    ];
    let (_p, result, _t) = load_graph("sound", 17, nodes, inits, 4);
    let b = result.unwrap();
    assert_eq!(grafter::Backbone::feature_channels(&b), 4);
}

#[test]
fn conv_group_zero_or_not_dividing_the_channels_is_refused() {
    refused(
        "conv_group_zero",
        17,
        vec![conv(&["input", "w"], "out", vec![("group", A::I(0))])],
        vec![floats("w", &[4, 3, 1, 1])],
        4,
        "group",
    );
    refused(
        "conv_group_not_dividing",
        17,
        vec![conv(&["input", "w"], "out", vec![("group", A::I(3))])],
        vec![floats("w", &[4, 1, 1, 1])],
        4,
        "group",
    );
}

#[test]
fn conv_bias_and_batchnorm_lengths_must_match_the_channels() {
    refused(
        "conv_bias_length",
        17,
        vec![conv(&["input", "w", "b"], "out", vec![])],
        vec![floats("w", &[4, 3, 1, 1]), floats("b", &[7])],
        4,
        "bias",
    );
    let bn = |gamma: i64, mean: i64| {
        (
            vec![
                conv(&["input", "w"], "c", vec![]),
                node(
                    "BatchNormalization",
                    &["c", "g", "be", "m", "v"],
                    "out",
                    vec![],
                ),
            ],
            vec![
                floats("w", &[4, 3, 1, 1]),
                floats("g", &[gamma]),
                floats("be", &[gamma]),
                floats("m", &[mean]),
                floats("v", &[mean]),
            ],
        )
    };
    let (nodes, inits) = bn(4, 5);
    refused("bn_mean_length", 17, nodes, inits, 4, "BatchNormalization");
    let (nodes, inits) = bn(6, 6);
    refused("bn_channels", 17, nodes, inits, 4, "channels");
    for (name, attr, value, says) in [
        ("bn_epsilon", "epsilon", -1.0, "epsilon"),
        ("bn_momentum", "momentum", 2.0, "momentum"),
    ] {
        let (mut nodes, inits) = bn(4, 4);
        nodes[1] = node(
            "BatchNormalization",
            &["c", "g", "be", "m", "v"],
            "out",
            vec![(attr, A::F(value))],
        );
        refused(name, 17, nodes, inits, 4, says);
    }
}

#[test]
fn gemm_with_a_weight_of_the_wrong_rank_is_refused() {
    let head = |b: TensorProto, trans_b: i64| {
        (
            vec![
                node("GlobalAveragePool", &["input"], "p", vec![]),
                node("Flatten", &["p"], "f", vec![("axis", A::I(1))]),
                node("Gemm", &["f", "B"], "out", vec![("transB", A::I(trans_b))]),
            ],
            vec![b],
        )
    };
    let (nodes, inits) = head(floats("B", &[2, 3, 1]), 1);
    refused("gemm_transb_rank3", 17, nodes, inits, 2, "2-D");
    let (nodes, inits) = head(floats("B", &[3]), 0);
    refused("gemm_rank1", 17, nodes, inits, 2, "2-D");
}

#[test]
fn axes_out_of_range_are_refused() {
    refused(
        "concat_axis",
        17,
        vec![node(
            "Concat",
            &["input", "input"],
            "out",
            vec![("axis", A::I(7))],
        )],
        vec![],
        4,
        "axis",
    );
    refused(
        "reducemean_axes",
        18,
        vec![node("ReduceMean", &["input", "axes"], "out", vec![])],
        vec![ints("axes", &[-9])],
        4,
        "axis",
    );
    refused(
        "squeeze_axes",
        17,
        vec![
            node("GlobalAveragePool", &["input"], "p", vec![]),
            node("Squeeze", &["p", "axes"], "out", vec![]),
        ],
        vec![ints("axes", &[-9])],
        3,
        "axis",
    );
    refused(
        "transpose_perm",
        17,
        vec![node(
            "Transpose",
            &["input"],
            "out",
            vec![("perm", A::Is(vec![0, 1, 1, 9]))],
        )],
        vec![],
        4,
        "perm",
    );
}

#[test]
fn reshape_dims_below_minus_one_are_refused() {
    refused(
        "reshape_dims",
        17,
        vec![node("Reshape", &["input", "shape"], "out", vec![])],
        vec![ints("shape", &[1, -5, 8, 8])],
        4,
        "Reshape",
    );
}

#[test]
fn huge_pads_and_strides_are_refused_before_allocating() {
    let big = 1i64 << 40;
    refused(
        "conv_pads_2_40",
        17,
        vec![conv(
            &["input", "w"],
            "out",
            vec![("pads", A::Is(vec![big, big, big, big]))],
        )],
        vec![floats("w", &[4, 3, 1, 1])],
        4,
        "pad",
    );
    refused(
        "pad_op_2_40",
        17,
        vec![node("Pad", &["input", "pads"], "out", vec![])],
        vec![ints("pads", &[0, 0, big, big, 0, 0, big, big])],
        4,
        "pad",
    );
    refused(
        "maxpool_pads_2_40",
        17,
        vec![node(
            "MaxPool",
            &["input"],
            "out",
            vec![
                ("kernel_shape", A::Is(vec![2, 2])),
                ("pads", A::Is(vec![big, big, big, big])),
            ],
        )],
        vec![],
        4,
        "pad",
    );
    // Two convolutions of stride 2^33: the product of strides overflows 64 bits.
    let s = 1i64 << 33;
    refused(
        "conv_strides_2_33",
        17,
        vec![
            conv(&["input", "w"], "c", vec![("strides", A::Is(vec![s, s]))]),
            conv(&["c", "w2"], "out", vec![("strides", A::Is(vec![s, s]))]),
        ],
        vec![floats("w", &[4, 3, 1, 1]), floats("w2", &[4, 4, 1, 1])],
        4,
        "stride",
    );
}

#[test]
fn a_graph_that_fails_in_the_probe_is_a_typed_error() {
    // A Reshape baking a batch of 2 (torch.onnx.export(dynamo=True) without dynamic shapes):
    // the load probe runs batch 1, which cannot take that shape.
    refused(
        "fixed_batch_reshape",
        17,
        vec![node("Reshape", &["input", "shape"], "out", vec![])],
        vec![ints("shape", &[2, 3, 8, 8])],
        4,
        "probe",
    );
}

/// A graph exported with a fixed batch of 2 whose Reshape target starts with that batch
/// (`torch.onnx.export(dynamo=True)` without dynamic shapes flattens so): the target is
/// rewritten to keep the input's batch, so the graph runs at any batch.
#[test]
fn a_reshape_baking_the_static_export_batch_runs_at_other_batches() {
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.opset_import.push(Default::default());
    m.opset_import[0].version = 17;
    let g = m.graph.mut_or_insert_default();
    g.name = "static_batch".into();
    g.input.push(value("input", &[Ok(2), Ok(3), Ok(8), Ok(8)]));
    g.output.push(value("out", &[Ok(2), Ok(192)]));
    g.node = vec![
        node("Relu", &["input"], "r", vec![]),
        node("Reshape", &["r", "shape"], "out", vec![]),
    ];
    g.initializer = vec![ints("shape", &[2, 192])];
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("static_batch.onnx");
    std::fs::write(&path, m.write_to_bytes().unwrap()).unwrap();
    let _l = crate::lock();
    let device = Device::flex();
    let options = OnnxBackboneOptions::default().with_cut(CutPoint::Full);
    let b = OnnxBackbone::load(&path, &options, &device).unwrap_or_else(|e| panic!("{e}"));
    for batch in [1, 3] {
        let x = burn::tensor::Tensor::<4>::ones([batch, 3, 8, 8], &device);
        assert_eq!(b.forward_value(x).shape(), vec![batch, 192]);
    }
}

/// A ConstantOfShape whose (static) target has 2^24 · 192 elements: refused in the load probe
/// as a typed error before anything of that size is allocated.
#[test]
fn a_huge_computed_shape_is_refused_before_allocating() {
    refused(
        "huge_constant_of_shape",
        17,
        vec![
            node("ConstantOfShape", &["shape"], "c", vec![]),
            node("Add", &["input", "c"], "out", vec![]),
        ],
        vec![ints("shape", &[1 << 24, 3, 8, 8])],
        4,
        "too many elements",
    );
}

/// A channels-last input (`[N, 8, 8, 3]`, as tf2onnx writes Keras models) that reaches a
/// convolution before any transpose to NCHW: refused at load naming the node, not a panic
/// in the probe.
#[test]
fn a_channels_last_image_convolved_before_its_transpose_is_refused() {
    let mut m = model(
        17,
        vec![
            node("Mul", &["input", "scale"], "x", vec![]),
            conv(&["x", "w"], "out", vec![]),
        ],
        vec![floats("scale", &[3]), floats("w", &[4, 3, 1, 1])],
        4,
    );
    let g = m.graph.mut_or_insert_default();
    g.input[0] = value("input", &[Err("N"), Ok(8), Ok(8), Ok(3)]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nhwc_conv.onnx");
    std::fs::write(&path, m.write_to_bytes().unwrap()).unwrap();
    let options = OnnxBackboneOptions::default().with_cut(CutPoint::Full);
    let _l = crate::lock();
    let err = match OnnxBackbone::load(&path, &options, &Device::flex()) {
        Ok(_) => panic!("a convolution over NHWC loaded"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(matches!(err, OnnxError::Graph { .. }), "{msg}");
    assert!(
        msg.contains("nhwc_conv.onnx") && msg.contains("channels-last"),
        "{msg}"
    );
    println!("REFUSED {msg}");
}
