//! Structure-aware fuzzing of the ONNX loader: small valid graphs (convolution, BatchNorm,
//! pooling, residual add, concatenation, reshapes and transposes of rank 5, Gemm) parsed as
//! `ModelProto`s and mutated field by field — attributes, initializer dims, types and bytes,
//! operator types, wiring, the input's shape, the opset — with some byte-level mutation of the
//! encoded file on top. Every case must load or be refused with a typed error, within the
//! harness's memory limit and timeout (tests/support/fuzz_harness.rs). 400 cases in the test
//! command (a probe forward per load makes a case cost milliseconds, not microseconds).

use std::path::Path;

use burn::tensor::Device;
use grafter_onnx::{CutPoint, OnnxBackbone, OnnxBackboneOptions, OnnxError};
use onnx_ir::{Message, ModelProto};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use crate::fuzz_harness::{Target, drive, mutate};
use crate::hostile::{A, conv, floats, ints, model, node};

/// Integers that break arithmetic: zero, negatives, the i32 and i64 edges, huge sizes.
const INTERESTING: [i64; 14] = [
    0,
    1,
    2,
    3,
    -1,
    -2,
    -5,
    7,
    1 << 20,
    1 << 31,
    -(1 << 31),
    1 << 40,
    i64::MAX,
    i64::MIN,
];

/// Operators a mutation may swap in: most supported, some not.
const OPS: [&str; 20] = [
    "Conv",
    "Relu",
    "Add",
    "Mul",
    "Concat",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "BatchNormalization",
    "Reshape",
    "Transpose",
    "Flatten",
    "Gemm",
    "MatMul",
    "Sigmoid",
    "Softmax",
    "ReduceMean",
    "Slice",
    "Gather",
    "Unknown",
];

fn seeds(_: &Path) -> Vec<Vec<u8>> {
    let bn =
        |x: &str, out: &str| node("BatchNormalization", &[x, "g", "be", "m", "v"], out, vec![]);
    let bn_inits = |c: i64| {
        vec![
            floats("g", &[c]),
            floats("be", &[c]),
            floats("m", &[c]),
            floats("v", &[c]),
        ]
    };
    let mut graphs = Vec::new();
    // conv → BatchNorm → ReLU → max pool
    let mut inits = vec![floats("w", &[4, 3, 3, 3]), floats("b", &[4])];
    inits.extend(bn_inits(4));
    graphs.push(model(
        17,
        vec![
            conv(
                &["input", "w", "b"],
                "c",
                vec![
                    ("pads", A::Is(vec![1, 1, 1, 1])),
                    ("strides", A::Is(vec![1, 1])),
                ],
            ),
            bn("c", "n"),
            node("Relu", &["n"], "r", vec![]),
            node(
                "MaxPool",
                &["r"],
                "out",
                vec![
                    ("kernel_shape", A::Is(vec![2, 2])),
                    ("strides", A::Is(vec![2, 2])),
                ],
            ),
        ],
        inits,
        4,
    ));
    // a residual block: two convolutions, an add, a strided 1×1 projection, concat
    graphs.push(model(
        17,
        vec![
            conv(
                &["input", "w1"],
                "a",
                vec![("pads", A::Is(vec![1, 1, 1, 1]))],
            ),
            node("Relu", &["a"], "ar", vec![]),
            conv(&["ar", "w2"], "b", vec![("pads", A::Is(vec![1, 1, 1, 1]))]),
            conv(&["input", "wp"], "p", vec![]),
            node("Add", &["b", "p"], "s", vec![]),
            node("Concat", &["s", "ar"], "cat", vec![("axis", A::I(1))]),
            conv(&["cat", "w3"], "out", vec![("strides", A::Is(vec![2, 2]))]),
        ],
        vec![
            floats("w1", &[4, 3, 3, 3]),
            floats("w2", &[4, 4, 3, 3]),
            floats("wp", &[4, 3, 1, 1]),
            floats("w3", &[6, 8, 1, 1]),
        ],
        4,
    ));
    // a channel shuffle: reshape to rank 5, transpose, reshape back; SiLU
    graphs.push(model(
        17,
        vec![
            conv(&["input", "w"], "c", vec![]),
            node("Reshape", &["c", "s5"], "r5", vec![]),
            node(
                "Transpose",
                &["r5"],
                "t5",
                vec![("perm", A::Is(vec![0, 2, 1, 3, 4]))],
            ),
            node("Reshape", &["t5", "s4"], "r4", vec![]),
            node("Sigmoid", &["r4"], "sg", vec![]),
            node("Mul", &["r4", "sg"], "out", vec![]),
        ],
        vec![
            floats("w", &[4, 3, 1, 1]),
            ints("s5", &[0, 2, 2, 8, 8]),
            ints("s4", &[0, 4, 8, 8]),
        ],
        4,
    ));
    // global pooling, flatten, a fully connected layer (a classifier head)
    graphs.push(model(
        13,
        vec![
            conv(&["input", "w"], "c", vec![("group", A::I(1))]),
            node("GlobalAveragePool", &["c"], "gp", vec![]),
            node("Flatten", &["gp"], "f", vec![("axis", A::I(1))]),
            node("Gemm", &["f", "fc", "fb"], "out", vec![("transB", A::I(1))]),
        ],
        vec![
            floats("w", &[4, 3, 3, 3]),
            floats("fc", &[5, 4]),
            floats("fb", &[5]),
        ],
        2,
    ));
    graphs
        .into_iter()
        .map(|m| m.write_to_bytes().unwrap())
        .collect()
}

/// One to three field-level mutations of the parsed graph; a fifth of the cases also get
/// byte-level ones on the encoding.
fn mutate_graph(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let Ok(mut m) = ModelProto::parse_from_bytes(seed) else {
        return mutate(seed, rng);
    };
    let interesting = |rng: &mut StdRng| *INTERESTING.choose(rng).unwrap();
    for _ in 0..rng.random_range(1..=3) {
        let g = m.graph.mut_or_insert_default();
        let names: Vec<String> = g
            .node
            .iter()
            .flat_map(|n| n.output.clone())
            .chain(g.initializer.iter().map(|t| t.name.clone()))
            .chain(["input".to_string(), String::new(), "missing".into()])
            .collect();
        match rng.random_range(0..9) {
            // an attribute's value
            0 | 1 => {
                let Some(n) = pick(&mut g.node, rng) else {
                    continue;
                };
                let Some(a) = pick(&mut n.attribute, rng) else {
                    continue;
                };
                if a.ints.is_empty() || rng.random_bool(0.2) {
                    a.i = interesting(rng);
                } else if rng.random_bool(0.2) {
                    a.ints.push(interesting(rng));
                } else {
                    let i = rng.random_range(0..a.ints.len());
                    a.ints[i] = interesting(rng);
                }
            }
            // an initializer's dims, type or bytes
            2 | 3 => {
                let Some(t) = pick(&mut g.initializer, rng) else {
                    continue;
                };
                match rng.random_range(0..4) {
                    0 if !t.dims.is_empty() => {
                        let i = rng.random_range(0..t.dims.len());
                        t.dims[i] = interesting(rng);
                    }
                    1 => t.dims.push(interesting(rng).clamp(-1, 4)),
                    2 => t.data_type = rng.random_range(0..17),
                    _ => {
                        let keep = rng.random_range(0..=t.raw_data.len());
                        t.raw_data.truncate(keep);
                    }
                }
            }
            // an operator swapped for another
            4 => {
                let Some(n) = pick(&mut g.node, rng) else {
                    continue;
                };
                n.op_type = OPS.choose(rng).unwrap().to_string();
            }
            // an input rewired
            5 => {
                let Some(n) = pick(&mut g.node, rng) else {
                    continue;
                };
                if n.input.is_empty() || rng.random_bool(0.2) {
                    n.input.push(names.choose(rng).unwrap().clone());
                } else {
                    let i = rng.random_range(0..n.input.len());
                    n.input[i] = names.choose(rng).unwrap().clone();
                }
            }
            // a node removed or duplicated
            6 => {
                if g.node.is_empty() {
                    continue;
                }
                let i = rng.random_range(0..g.node.len());
                if rng.random_bool(0.5) {
                    g.node.remove(i);
                } else {
                    let copy = g.node[i].clone();
                    g.node.insert(i, copy);
                }
            }
            // the image input's shape
            7 => {
                let Some(input) = g.input.first_mut() else {
                    continue;
                };
                let shape = input
                    .type_
                    .mut_or_insert_default()
                    .mut_tensor_type()
                    .shape
                    .mut_or_insert_default();
                if shape.dim.is_empty() || rng.random_bool(0.2) {
                    shape.dim.pop();
                } else {
                    let i = rng.random_range(0..shape.dim.len());
                    shape.dim[i].set_dim_value(interesting(rng));
                }
            }
            // the opset
            _ => {
                if let Some(o) = m.opset_import.first_mut() {
                    o.version = *[1, 6, 11, 13, 17, 20, 99, -1].choose(rng).unwrap();
                }
            }
        }
    }
    let bytes = m.write_to_bytes().unwrap_or_else(|_| seed.to_vec());
    if rng.random_bool(0.2) {
        mutate(&bytes, rng)
    } else {
        bytes
    }
}

fn pick<'a, T>(items: &'a mut [T], rng: &mut StdRng) -> Option<&'a mut T> {
    if items.is_empty() {
        return None;
    }
    let i = rng.random_range(0..items.len());
    items.get_mut(i)
}

/// Loads the case with the whole graph as the backbone, and with the automatic cut.
fn load(input: &[u8], dir: &Path) {
    let path = dir.join("m.onnx");
    std::fs::write(&path, input).unwrap();
    let device = Device::flex();
    for cut in [CutPoint::Full, CutPoint::default()] {
        let options = OnnxBackboneOptions::default().with_cut(cut);
        // the harness tallies these: how deep the cases get
        match OnnxBackbone::load(&path, &options, &device) {
            Ok(_) => println!("OUTCOME loaded"),
            Err(OnnxError::Parse { .. }) => println!("OUTCOME parse_error"),
            Err(OnnxError::Graph { .. }) => println!("OUTCOME graph_error"),
            Err(_) => println!("OUTCOME other_error"),
        }
    }
}

#[test]
fn seeds_are_graphs_the_loader_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let _l = crate::lock();
    for (i, seed) in seeds(dir.path()).iter().enumerate() {
        let path = dir.path().join(format!("seed{i}.onnx"));
        std::fs::write(&path, seed).unwrap();
        let options = OnnxBackboneOptions::default().with_cut(CutPoint::Full);
        if let Err(e) = OnnxBackbone::load(&path, &options, &Device::flex()) {
            panic!("seed {i} does not load: {e}");
        }
    }
}

#[test]
fn fuzz_onnx_loading() {
    drive(
        Target {
            name: "onnx",
            seeds,
            mutate: mutate_graph,
            run: load,
            cases: 400,
        },
        "fuzz::fuzz_onnx_loading",
    )
    .unwrap();
}
