//! Building ONNX protobuf messages (onnx-ir's re-exported types) for the exporter.

use onnx_ir::{AttributeProto, AttributeType, GraphProto, NodeProto, TensorProto, ValueInfoProto};

const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// Accumulates nodes and initializers of one graph, with unique generated names.
#[derive(Default)]
pub(crate) struct Emitter {
    pub graph: GraphProto,
    counter: usize,
}

/// A node attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// `INT`.
    Int(i64),
    /// `INTS`.
    Ints(Vec<i64>),
    /// `FLOAT`.
    Float(f32),
    /// `STRING` (UTF-8).
    String(String),
}

impl Emitter {
    /// A fresh name with `prefix`.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("grafter/{prefix}_{}", self.counter)
    }

    /// Adds a float initializer; returns its name.
    pub fn floats(&mut self, prefix: &str, dims: &[usize], data: &[f32]) -> String {
        let name = self.fresh(prefix);
        let mut t = TensorProto::new();
        t.name = name.clone();
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.data_type = FLOAT;
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        t.raw_data = bytes.into();
        self.graph.initializer.push(t);
        name
    }

    /// Adds an int64 vector initializer; returns its name.
    pub fn ints(&mut self, prefix: &str, data: &[i64]) -> String {
        self.ints_shaped(prefix, &[data.len()], data)
    }

    /// Adds an int64 initializer of shape `dims` (`[]`: a scalar); returns its name.
    pub fn ints_shaped(&mut self, prefix: &str, dims: &[usize], data: &[i64]) -> String {
        let name = self.fresh(prefix);
        let mut t = TensorProto::new();
        t.name = name.clone();
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.data_type = INT64;
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        t.raw_data = bytes.into();
        self.graph.initializer.push(t);
        name
    }

    /// Adds a node.
    pub fn node(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<(&str, Attr)>) {
        let mut n = NodeProto::new();
        n.op_type = op.to_string();
        n.name = self.fresh(op);
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec![output.to_string()];
        for (name, value) in attrs {
            let mut a = AttributeProto::new();
            a.name = name.to_string();
            match value {
                Attr::Int(i) => {
                    a.i = i;
                    a.type_ = AttributeType::INT.into();
                }
                Attr::Ints(v) => {
                    a.ints = v;
                    a.type_ = AttributeType::INTS.into();
                }
                Attr::Float(f) => {
                    a.f = f;
                    a.type_ = AttributeType::FLOAT.into();
                }
                Attr::String(v) => {
                    a.s = v.into_bytes().into();
                    a.type_ = AttributeType::STRING.into();
                }
            }
            n.attribute.push(a);
        }
        self.graph.node.push(n);
    }
}

/// A float tensor's value info; `None` dimensions are named `dynamic` parameters.
pub(crate) fn value_info(name: &str, dims: &[Result<usize, &str>]) -> ValueInfoProto {
    let mut v = ValueInfoProto::new();
    v.name = name.to_string();
    let t = v.type_.mut_or_insert_default().mut_tensor_type();
    t.elem_type = FLOAT;
    let shape = t.shape.mut_or_insert_default();
    for d in dims {
        shape.dim.push(Default::default());
        let dim = shape.dim.last_mut().expect("just pushed");
        match d {
            Ok(n) => dim.set_dim_value(*n as i64),
            Err(p) => dim.set_dim_param(p.to_string()),
        }
    }
    v
}
