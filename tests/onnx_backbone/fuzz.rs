//! Structure-aware fuzzing of the ONNX loader: small valid graphs (convolution, BatchNorm,
//! pooling, residual add, concatenation, reshapes and transposes of rank 5, Gemm) mutated
//! field by field (tests/support/onnx_mutation.rs). Every case must load or be refused with a typed error, within the
//! harness's memory limit and timeout (tests/support/fuzz_harness.rs). 400 cases in the test
//! command (a probe forward per load makes a case cost milliseconds, not microseconds).

use std::path::Path;

use burn::tensor::Device;
use grafter_onnx::{CutPoint, OnnxBackbone, OnnxBackboneOptions, OnnxError};
use onnx_ir::Message;

use crate::fuzz_harness::{Target, drive};
use crate::hostile::{A, conv, floats, ints, model, node};
use crate::onnx_mutation::mutate_graph;

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
