//! The forward pass: the graph's steps run in order on Burn tensors.
//!
//! Burn tensors have a compile-time rank, ONNX values do not. Every value is held as a rank-4
//! tensor whose true shape is right-aligned (leading axes of size 1): exactly ONNX's
//! (numpy's) broadcasting rule, so element-wise ops broadcast correctly for free, and
//! axis-taking ops shift their axis by `4 - rank`.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::activation;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions, PadMode};
use burn::tensor::{Device, Tensor, TensorData};

use grafter_kernels::{batch_norm_layer, conv2d_layer};

use crate::graph::{Graph, Op, Operand};

/// A value of any rank from 1 to 4.
#[derive(Clone, Debug)]
pub struct Value {
    /// The data, right-aligned in four axes.
    pub tensor: Tensor<4>,
    /// The true rank.
    pub rank: usize,
}

impl Value {
    /// The true shape.
    pub fn shape(&self) -> Vec<usize> {
        self.tensor.dims()[4 - self.rank..].to_vec()
    }

    fn with_shape(tensor: Tensor<4>, shape: &[usize]) -> Self {
        Self {
            tensor: tensor.reshape(padded(shape)),
            rank: shape.len().max(1),
        }
    }

    /// The first two true axes `[N, C]`, as a rank-2 tensor; a rank-4 value `[N, C, h, w]`
    /// with `h = w = 1` is accepted too.
    pub fn into_rank2(self) -> Tensor<2> {
        let s = self.shape();
        let n = s.first().copied().unwrap_or(1);
        let rest: usize = s.iter().skip(1).product();
        self.tensor.reshape([n, rest])
    }
}

fn padded(shape: &[usize]) -> [usize; 4] {
    let mut out = [1; 4];
    let off = 4 - shape.len().min(4);
    for (i, &d) in shape.iter().take(4).enumerate() {
        out[off + i] = d;
    }
    out
}

/// The weighted modules the steps point into.
pub(crate) struct Modules<'a> {
    pub convs: &'a [Conv2d],
    pub bns: &'a [BatchNorm],
    pub linears: &'a [Linear],
}

/// Runs `graph` on `input`, returning the values of the `wanted` slots.
pub(crate) fn run(graph: &Graph, m: &Modules, input: Tensor<4>, wanted: &[usize]) -> Vec<Value> {
    let device = input.device();
    let mut uses = vec![0usize; graph.value_names.len()];
    for step in &graph.steps {
        for o in &step.inputs {
            if let Operand::Value(v) = o {
                uses[*v] += 1;
            }
        }
    }
    for &w in wanted {
        uses[w] += 1;
    }
    let mut values: Vec<Option<Value>> = vec![None; graph.value_names.len()];
    values[graph.input] = Some(Value {
        tensor: input,
        rank: 4,
    });
    for step in &graph.steps {
        let mut args = Vec::with_capacity(step.inputs.len());
        for o in &step.inputs {
            args.push(match o {
                Operand::Value(v) => {
                    uses[*v] -= 1;
                    let value = values[*v].as_ref().expect("graph is topologically sorted");
                    let value = value.clone();
                    if uses[*v] == 0 {
                        values[*v] = None;
                    }
                    value
                }
                Operand::Const(c) => constant(graph, *c, &device),
            });
        }
        values[step.output] = Some(apply(&step.op, m, args));
    }
    wanted
        .iter()
        .map(|w| values[*w].clone().expect("wanted value computed"))
        .collect()
}

fn constant(graph: &Graph, index: usize, device: &Device) -> Value {
    let c = &graph.constants[index];
    let t = Tensor::<1>::from_data(TensorData::new(c.data.clone(), [c.data.len()]), device);
    Value {
        tensor: t.reshape(padded(&c.shape)),
        rank: c.shape.len().max(1),
    }
}

fn unary(v: Value, f: impl FnOnce(Tensor<4>) -> Tensor<4>) -> Value {
    Value {
        tensor: f(v.tensor),
        rank: v.rank,
    }
}

fn binary(a: Value, b: Value, f: impl FnOnce(Tensor<4>, Tensor<4>) -> Tensor<4>) -> Value {
    Value {
        rank: a.rank.max(b.rank),
        tensor: f(a.tensor, b.tensor),
    }
}

fn apply(op: &Op, m: &Modules, mut args: Vec<Value>) -> Value {
    let x = args[0].clone();
    match op {
        Op::Conv { index, .. } => unary(x, |t| conv2d_layer(&m.convs[*index], t)),
        Op::BatchNorm { index } => {
            let shape = x.shape();
            let mut as4 = shape.clone();
            as4.resize(4, 1);
            let t = x.tensor.reshape([as4[0], as4[1], as4[2], as4[3]]);
            Value::with_shape(batch_norm_layer(&m.bns[*index], t), &shape)
        }
        Op::Linear { index } => unary(x, |t| m.linears[*index].forward(t)),
        Op::Relu => unary(x, activation::relu),
        Op::LeakyRelu(a) => unary(x, |t| activation::leaky_relu(t, *a as f64)),
        Op::Clip { min, max } => unary(x, |mut t| {
            if let Some(lo) = min {
                t = t.clamp_min(*lo);
            }
            if let Some(hi) = max {
                t = t.clamp_max(*hi);
            }
            t
        }),
        Op::Sigmoid => unary(x, activation::sigmoid),
        Op::HardSigmoid { alpha, beta } => unary(x, |t| {
            activation::hard_sigmoid(t, *alpha as f64, *beta as f64)
        }),
        Op::HardSwish => unary(x, |t| {
            t.clone() * activation::hard_sigmoid(t, 1.0 / 6.0, 0.5)
        }),
        Op::Swish => unary(x, |t| t.clone() * activation::sigmoid(t)),
        Op::Tanh => unary(x, activation::tanh),
        Op::MaxPool {
            kernel,
            stride,
            pads,
            dilation,
            ceil,
        } => unary(x, |t| {
            let options = MaxPoolOptions {
                kernel_size: *kernel,
                stride: *stride,
                padding: [(pads[0], pads[2]), (pads[1], pads[3])],
                dilation: *dilation,
                ceil_mode: *ceil,
            };
            grafter_kernels::max_pool2d(t, options)
        }),
        Op::AvgPool {
            kernel,
            stride,
            pads,
            count_include_pad,
            ceil,
        } => unary(x, |t| {
            let options = AvgPoolOptions {
                kernel_size: *kernel,
                stride: *stride,
                padding: [(pads[0], pads[2]), (pads[1], pads[3])],
                count_include_pad: *count_include_pad,
                ceil_mode: *ceil,
            };
            avg_pool2d(t, options)
        }),
        Op::GlobalAvgPool => unary(x, |t| {
            let [n, c, h, w] = t.dims();
            let flat: Tensor<3> = t.reshape([n, c, h * w]);
            flat.mean_dim(2).reshape([n, c, 1, 1])
        }),
        Op::Add => binary(x, args.swap_remove(1), |a, b| a + b),
        Op::Sub => binary(x, args.swap_remove(1), |a, b| a - b),
        Op::Mul => binary(x, args.swap_remove(1), |a, b| a * b),
        Op::Div => binary(x, args.swap_remove(1), |a, b| a / b),
        Op::Concat { axis } => {
            let rank = args.iter().map(|a| a.rank).max().unwrap_or(1);
            let tensors = args.into_iter().map(|a| a.tensor).collect();
            Value {
                tensor: Tensor::cat(tensors, axis + 4 - rank),
                rank,
            }
        }
        Op::Flatten { axis } => {
            let s = x.shape();
            let outer: usize = s[..*axis].iter().product();
            let inner: usize = s[*axis..].iter().product();
            Value::with_shape(x.tensor, &[outer, inner])
        }
        Op::Reshape { shape } => {
            let s = x.shape();
            let total: usize = s.iter().product();
            let mut out: Vec<usize> = Vec::with_capacity(shape.len());
            let mut infer = None;
            for (i, &d) in shape.iter().enumerate() {
                match d {
                    0 => out.push(s.get(i).copied().unwrap_or(1)),
                    -1 => {
                        infer = Some(i);
                        out.push(1);
                    }
                    d => out.push(d as usize),
                }
            }
            if let Some(i) = infer {
                let known: usize = out.iter().product();
                out[i] = total / known.max(1);
            }
            Value::with_shape(x.tensor, &out)
        }
        Op::Transpose { perm } => {
            let off = 4 - x.rank;
            let mut full = [0, 1, 2, 3];
            for (i, &p) in perm.iter().enumerate() {
                full[off + i] = off + p;
            }
            unary(x, |t| t.permute(full))
        }
        Op::Pad { pads, value } => {
            let pads = pads.clone();
            unary(x, |t| t.pad(pads, PadMode::Constant(*value)))
        }
        Op::Identity => x,
        Op::Softmax { axis } => {
            let dim = axis + 4 - x.rank;
            unary(x, |t| activation::softmax(t, dim))
        }
        Op::ReduceMean { axes, keepdims } => {
            let s = x.shape();
            let off = 4 - x.rank;
            let mut t = x.tensor;
            for &a in axes {
                t = t.mean_dim(a + off);
            }
            let out: Vec<usize> = s
                .iter()
                .enumerate()
                .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
                    (false, _) => Some(d),
                    (true, true) => Some(1),
                    (true, false) => None,
                })
                .collect();
            Value::with_shape(t, &out)
        }
        Op::Squeeze { axes } => {
            let s = x.shape();
            let out: Vec<usize> = s
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect();
            Value::with_shape(x.tensor, &out)
        }
        Op::Unsqueeze { axes } => {
            let s = x.shape();
            let rank = s.len() + axes.len();
            let mut it = s.into_iter();
            let out: Vec<usize> = (0..rank)
                .map(|i| {
                    if axes.contains(&i) {
                        1
                    } else {
                        it.next().unwrap_or(1)
                    }
                })
                .collect();
            Value::with_shape(x.tensor, &out)
        }
    }
}
