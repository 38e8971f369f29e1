//! Structure-aware mutation of ONNX files for the fuzz targets that load them
//! (tests/onnx_backbone/fuzz.rs: `OnnxBackbone::load`; crates/grafter-zoo/tests/zoo/fuzz_onnx_weights.rs: the
//! zoo's ONNX weight reader): the file parsed as a `ModelProto` and mutated field by field —
//! attribute values, initializer dims, types and bytes, operator types, wiring, nodes removed
//! or duplicated, the input's shape, the opset — a fifth of the cases also byte-mutated after
//! encoding.

use onnx_ir::{Message, ModelProto};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use crate::fuzz_harness::mutate;

/// Integers that break arithmetic: zero, negatives, the i32 and i64 edges, huge sizes.
pub const INTERESTING: [i64; 14] = [
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
pub const OPS: [&str; 20] = [
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

/// One to three field-level mutations of the parsed graph; a fifth of the cases also get
/// byte-level ones on the encoding.
pub fn mutate_graph(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
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
