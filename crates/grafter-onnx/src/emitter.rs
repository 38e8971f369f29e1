//! [`OnnxEmitter`]: the node builder that backbones and heads write themselves with when a
//! classifier is exported ([`export_classifier`](crate::export_classifier)).
//!
//! Layers are written from the Burn module's own fields (kernel, strides, padding, dilation,
//! groups; BatchNorm running statistics), so a module implementing
//! [`OnnxBackboneExport`](crate::OnnxBackboneExport) outside this crate (the zoo's ResNet and
//! VGG) only strings these calls together in the order of its `forward`.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::tensor::Tensor;

pub use crate::proto::Attr as OnnxAttr;
use crate::proto::{Attr, Emitter};

/// Why a module cannot be written as ONNX (a `Same` padding, a graph that does not end at a
/// feature map…). [`export_classifier`](crate::export_classifier) reports it as
/// [`OnnxError::Export`](crate::OnnxError::Export) with the destination file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ExportError {
    /// What cannot be expressed.
    pub reason: String,
}

impl ExportError {
    /// An error saying `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Accumulates the nodes and initializers of the exported graph, with unique generated names.
/// Every method returns the name of the value it produced.
pub struct OnnxEmitter(pub(crate) Emitter);

pub(crate) fn host<const D: usize>(p: &Param<Tensor<D>>) -> (Vec<usize>, Vec<f32>) {
    let t = p.val();
    let dims = t.dims().to_vec();
    let v = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    (dims, v)
}

fn ints(v: &[usize]) -> Attr {
    Attr::Ints(v.iter().map(|&d| d as i64).collect())
}

/// ONNX `pads` (`[top, left, bottom, right]`) of a Burn 2-D padding.
fn pads(p: &PaddingConfig2d, what: &str) -> Result<[usize; 4], ExportError> {
    match p {
        PaddingConfig2d::Valid => Ok([0; 4]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => Ok([*top, *left, *bottom, *right]),
        PaddingConfig2d::Same => Err(ExportError::new(format!(
            "{what}: `Same` padding depends on the input size and is not exported"
        ))),
    }
}

impl OnnxEmitter {
    /// A fresh, unique value name starting with `prefix`.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.0.fresh(prefix)
    }

    /// A float initializer of shape `dims`.
    pub fn floats(&mut self, prefix: &str, dims: &[usize], data: &[f32]) -> String {
        self.0.floats(prefix, dims, data)
    }

    /// A 1-D int64 initializer.
    pub fn ints(&mut self, prefix: &str, data: &[i64]) -> String {
        self.0.ints(prefix, data)
    }

    /// A node `op(inputs) -> output` with attributes.
    pub fn node(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<(&str, OnnxAttr)>) {
        self.0.node(op, inputs, output, attrs);
    }

    /// A one-input node without attributes (`Relu`, `Sigmoid`…) on `x`.
    pub fn unary(&mut self, op: &str, x: &str) -> String {
        let out = self.0.fresh(&op.to_lowercase());
        self.0.node(op, &[x], &out, vec![]);
        out
    }

    /// `conv(x)`: a `Conv` node with the module's weight, bias, strides, padding, dilation
    /// and groups.
    pub fn conv2d(&mut self, conv: &Conv2d, x: &str) -> Result<String, ExportError> {
        let e = &mut self.0;
        let (wd, w) = host(&conv.weight);
        let wname = e.floats("W", &wd, &w);
        let mut inputs = vec![x.to_string(), wname];
        if let Some(bias) = &conv.bias {
            let (bd, bv) = host(bias);
            inputs.push(e.floats("B", &bd, &bv));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let out = e.fresh("conv");
        e.node(
            "Conv",
            &refs,
            &out,
            vec![
                ("kernel_shape", ints(&wd[2..])),
                ("strides", ints(&conv.stride)),
                ("pads", ints(&pads(&conv.padding, "Conv2d")?)),
                ("dilations", ints(&conv.dilation)),
                ("group", Attr::Int(conv.groups as i64)),
            ],
        );
        Ok(out)
    }

    /// `pool(x)`: a `MaxPool` node.
    pub fn max_pool2d(&mut self, pool: &MaxPool2d, x: &str) -> Result<String, ExportError> {
        let out = self.0.fresh("maxpool");
        self.0.node(
            "MaxPool",
            &[x],
            &out,
            vec![
                ("kernel_shape", ints(&pool.kernel_size)),
                ("strides", ints(&pool.stride)),
                ("pads", ints(&pads(&pool.padding, "MaxPool2d")?)),
                ("dilations", ints(&pool.dilation)),
                ("ceil_mode", Attr::Int(pool.ceil_mode as i64)),
            ],
        );
        Ok(out)
    }

    /// `bn(x)`: a `BatchNormalization` node in inference mode with the running statistics
    /// (not folded into the convolution).
    pub fn batch_norm(&mut self, bn: &BatchNorm, x: &str) -> String {
        emit_bn(&mut self.0, bn, x, None)
    }

    /// `linear(x)` on `[N, in]`: a `Gemm` node.
    pub fn linear(&mut self, linear: &Linear, x: &str) -> String {
        emit_linear(&mut self.0, linear, x)
    }
}

/// A `Gemm` with `transB = 1` and the weight stored `[out, in]`, as PyTorch exports a
/// `Linear` (so readers that expect torch's layout, like the zoo's, take it as well).
pub(crate) fn emit_linear(e: &mut Emitter, linear: &Linear, x: &str) -> String {
    let (wd, w) = host(&linear.weight);
    let (inputs, outputs) = (wd[0], wd[1]);
    let mut t = vec![0f32; w.len()];
    for i in 0..inputs {
        for o in 0..outputs {
            t[o * inputs + i] = w[i * outputs + o];
        }
    }
    let wname = e.floats("W", &[outputs, inputs], &t);
    let out = e.fresh("gemm");
    // alpha and beta spelled out: onnx-ir reads a Gemm as a Linear only when all three are.
    let trans_b = || {
        vec![
            ("alpha", Attr::Float(1.0)),
            ("beta", Attr::Float(1.0)),
            ("transB", Attr::Int(1)),
        ]
    };
    match &linear.bias {
        Some(b) => {
            let (bd, bv) = host(b);
            let bname = e.floats("B", &bd, &bv);
            e.node("Gemm", &[x, &wname, &bname], &out, trans_b());
        }
        None => e.node("Gemm", &[x, &wname], &out, trans_b()),
    }
    out
}

pub(crate) fn emit_bn(e: &mut Emitter, bn: &BatchNorm, x: &str, out: Option<&str>) -> String {
    let (d, g) = host(&bn.gamma);
    let (_, b) = host(&bn.beta);
    let mean = bn.running_mean.value().into_data().convert::<f32>();
    let var = bn.running_var.value().into_data().convert::<f32>();
    let names = [
        e.floats("gamma", &d, &g),
        e.floats("beta", &d, &b),
        e.floats("mean", &d, &mean.try_into_vec::<f32>().unwrap_or_default()),
        e.floats("var", &d, &var.try_into_vec::<f32>().unwrap_or_default()),
    ];
    let out = out.map_or_else(|| e.fresh("bn"), str::to_string);
    e.node(
        "BatchNormalization",
        &[x, &names[0], &names[1], &names[2], &names[3]],
        &out,
        vec![
            ("epsilon", Attr::Float(bn.epsilon as f32)),
            ("momentum", Attr::Float((1.0 - bn.momentum) as f32)),
        ],
    );
    out
}
