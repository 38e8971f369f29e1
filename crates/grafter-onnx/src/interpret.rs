//! The forward pass: the graph's steps run in order on Burn tensors.
//!
//! Burn tensors have a compile-time rank, ONNX values do not. Every tensor value is held as a
//! rank-[`MAX_RANK`] tensor whose true shape is right-aligned (leading axes of size 1):
//! exactly ONNX's (numpy's) broadcasting rule, so element-wise ops broadcast correctly for
//! free, and axis-taking ops shift their axis by `MAX_RANK - rank`. Convolutions, poolings and
//! BatchNorms see the last four axes.
//!
//! Shape arithmetic (`Shape` and the integer ops fed by it) runs on the host as [`Ints`], from
//! the actual input's shape, so a graph that computes a Reshape target from its input runs at
//! any batch and size.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, LayerNorm, Linear};
use burn::tensor::activation;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions, PadMode};
use burn::tensor::{Device, Tensor, TensorData};

use grafter_kernels::{batch_norm_layer, conv2d_layer};

use crate::graph::{Graph, MAX_RANK, Op, Operand};

/// The storage rank of every tensor value.
const R: usize = MAX_RANK;

/// A tensor value of any rank from 1 to [`MAX_RANK`].
#[derive(Clone, Debug)]
pub struct Value {
    /// The data, right-aligned in [`MAX_RANK`] axes.
    pub tensor: Tensor<R>,
    /// The true rank.
    pub rank: usize,
}

impl Value {
    /// The true shape.
    pub fn shape(&self) -> Vec<usize> {
        self.tensor.dims()[R - self.rank..].to_vec()
    }

    fn with_shape(tensor: Tensor<R>, shape: &[usize]) -> Self {
        Self {
            tensor: tensor.reshape(padded(shape)),
            rank: shape.len().max(1),
        }
    }

    /// A rank-4 tensor `[N, C, H, W]` (a lower rank is padded with leading axes of 1).
    pub fn from_rank4(tensor: Tensor<4>) -> Self {
        let [n, c, h, w] = tensor.dims();
        Self::with_shape(tensor.reshape(padded(&[n, c, h, w])), &[n, c, h, w])
    }

    /// The last four axes (a value of rank up to 4, padded with leading axes of 1).
    pub fn into_rank4(self) -> Tensor<4> {
        let d = self.tensor.dims();
        self.tensor
            .reshape([d[R - 4], d[R - 3], d[R - 2], d[R - 1]])
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

/// An integer value of shape arithmetic (a shape, a dimension, an index), on the host.
#[derive(Clone, Debug)]
pub(crate) struct Ints {
    pub data: Vec<i64>,
    /// Rank 0 (a scalar) or 1 (a vector).
    pub shape: Vec<usize>,
}

/// A value slot's content at run time.
#[derive(Clone, Debug)]
// Tensors are the hot path: boxing them would allocate at every step to save a few bytes in
// the rare shape-arithmetic slots.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Slot {
    Tensor(Value),
    Ints(Ints),
}

impl Slot {
    fn tensor(self, device: &Device) -> Value {
        match self {
            Slot::Tensor(v) => v,
            Slot::Ints(i) => {
                let data: Vec<f32> = i.data.iter().map(|&v| v as f32).collect();
                let t = Tensor::<1>::from_data(TensorData::new(data.clone(), [data.len()]), device);
                Value::with_shape(t.reshape(padded(&i.shape)), &i.shape)
            }
        }
    }
}

fn padded(shape: &[usize]) -> [usize; R] {
    let mut out = [1; R];
    let off = R - shape.len().min(R);
    for (i, &d) in shape.iter().take(R).enumerate() {
        out[off + i] = d;
    }
    out
}

/// The last four axes of a right-aligned tensor.
fn as4(t: Tensor<R>) -> Tensor<4> {
    let d = t.dims();
    t.reshape([d[R - 4], d[R - 3], d[R - 2], d[R - 1]])
}

fn from4(t: Tensor<4>) -> Tensor<R> {
    let [n, c, h, w] = t.dims();
    t.reshape(padded(&[n, c, h, w]))
}

/// The weighted modules the steps point into.
pub(crate) struct Modules<'a> {
    pub convs: &'a [Conv2d],
    pub bns: &'a [BatchNorm],
    pub linears: &'a [Linear],
    pub layer_norms: &'a [LayerNorm],
    pub params: &'a [Param<Tensor<1>>],
}

/// Runs `graph` on `input`, returning the values of the `wanted` slots.
///
/// Panics (caught by the load probe) when a value of shape arithmetic is wanted or a shape
/// does not fit; load-time checks refuse every malformed graph they can recognise.
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
    let mut values: Vec<Option<Slot>> = vec![None; graph.value_names.len()];
    values[graph.input] = Some(Slot::Tensor(Value::from_rank4(input)));
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
                Operand::Const(c) => constant(graph, m, *c, &device),
            });
        }
        values[step.output] = Some(apply(&step.op, m, args, &device));
    }
    wanted
        .iter()
        .map(|w| {
            values[*w]
                .clone()
                .expect("wanted value computed")
                .tensor(&device)
        })
        .collect()
}

fn constant(graph: &Graph, m: &Modules, index: usize, device: &Device) -> Slot {
    let c = &graph.constants[index];
    if let Some(p) = c.param {
        return Slot::Tensor(Value::with_shape(
            m.params[p].val().reshape(padded(&c.shape)),
            &c.shape,
        ));
    }
    if let Some(ints) = &c.ints {
        return Slot::Ints(Ints {
            data: ints.clone(),
            shape: c.shape.clone(),
        });
    }
    let t = Tensor::<1>::from_data(TensorData::new(c.data.clone(), [c.data.len()]), device);
    Slot::Tensor(Value {
        tensor: t.reshape(padded(&c.shape)),
        rank: c.shape.len().max(1),
    })
}

fn unary(v: Value, f: impl FnOnce(Tensor<R>) -> Tensor<R>) -> Value {
    Value {
        tensor: f(v.tensor),
        rank: v.rank,
    }
}

fn binary(a: Value, b: Value, f: impl FnOnce(Tensor<R>, Tensor<R>) -> Tensor<R>) -> Value {
    Value {
        rank: a.rank.max(b.rank),
        tensor: f(a.tensor, b.tensor),
    }
}

/// An element-wise integer op, numpy-broadcast between a scalar and a vector.
fn int_binary(a: Ints, b: Ints, f: impl Fn(i64, i64) -> i64) -> Ints {
    let n = a.data.len().max(b.data.len());
    let at = |v: &Ints, i: usize| v.data[if v.data.len() == 1 { 0 } else { i }];
    Ints {
        data: (0..n).map(|i| f(at(&a, i), at(&b, i))).collect(),
        shape: if a.shape.len() >= b.shape.len() {
            a.shape
        } else {
            b.shape
        },
    }
}

/// ONNX integer division truncates toward zero (C semantics); Rust's `/` does the same.
fn int_div(a: i64, b: i64) -> i64 {
    if b == 0 { 0 } else { a / b }
}

fn host_ints(v: Value) -> Ints {
    let shape = v.shape();
    let data = v
        .tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
        .into_iter()
        .map(|x| x as i64)
        .collect();
    Ints { data, shape }
}

/// `index` (negative from the end) clamped into `0..=len`.
fn clamp_index(index: i64, len: usize) -> usize {
    let len = len as i64;
    let i = if index < 0 { index + len } else { index };
    i.clamp(0, len) as usize
}

/// The element-wise binary ops: on integers when both sides are shape arithmetic.
fn arith(
    a: Slot,
    b: Slot,
    device: &Device,
    ints: impl Fn(i64, i64) -> i64,
    floats: impl FnOnce(Tensor<R>, Tensor<R>) -> Tensor<R>,
) -> Slot {
    match (a, b) {
        (Slot::Ints(a), Slot::Ints(b)) => Slot::Ints(int_binary(a, b, ints)),
        (a, b) => Slot::Tensor(binary(a.tensor(device), b.tensor(device), floats)),
    }
}

fn apply(op: &Op, m: &Modules, mut args: Vec<Slot>, device: &Device) -> Slot {
    if let Op::ConstantOfShape { shape, value, int } = op {
        let shape: Vec<usize> = match (shape, args.pop()) {
            (Some(s), _) => s.iter().map(|&d| d.max(0) as usize).collect(),
            (None, Some(Slot::Ints(i))) => i.data.iter().map(|&d| d.max(0) as usize).collect(),
            (None, Some(Slot::Tensor(v))) => host_ints(v)
                .data
                .iter()
                .map(|&d| d.max(0) as usize)
                .collect(),
            (None, None) => panic!("ConstantOfShape without a shape"),
        };
        let n: usize = shape.iter().product();
        return if *int && shape.len() <= 1 {
            Slot::Ints(Ints {
                data: vec![*value as i64; n],
                shape,
            })
        } else {
            Slot::Tensor(Value::with_shape(
                Tensor::<R>::full(padded(&shape), *value as f32, device),
                &shape,
            ))
        };
    }
    if let Op::Range = op {
        let scalar = |s: Slot| match s {
            Slot::Ints(i) => i.data.first().copied().unwrap_or(0),
            Slot::Tensor(v) => host_ints(v).data.first().copied().unwrap_or(0),
        };
        let mut it = args.into_iter().map(scalar);
        let (start, limit, delta) = (
            it.next().unwrap_or(0),
            it.next().unwrap_or(0),
            it.next().unwrap_or(1),
        );
        let count = if delta == 0 {
            0.0
        } else {
            ((limit - start) as f64 / delta as f64).ceil().max(0.0)
        };
        assert!(
            count <= (1u64 << 24) as f64,
            "Range of {count} values is too long"
        );
        let mut data = Vec::new();
        let mut v = start;
        while delta != 0 && ((delta > 0 && v < limit) || (delta < 0 && v > limit)) {
            data.push(v);
            v += delta;
        }
        return Slot::Ints(Ints {
            shape: vec![data.len()],
            data,
        });
    }
    let first = args.remove(0);
    // Ops meaningful on shape arithmetic first.
    match op {
        Op::Add => {
            return arith(first, args.remove(0), device, |a, b| a + b, |a, b| a + b);
        }
        Op::Sub => {
            return arith(first, args.remove(0), device, |a, b| a - b, |a, b| a - b);
        }
        Op::Mul => {
            return arith(first, args.remove(0), device, |a, b| a * b, |a, b| a * b);
        }
        Op::Div => return arith(first, args.remove(0), device, int_div, |a, b| a / b),
        Op::Equal => {
            return arith(
                first,
                args.remove(0),
                device,
                |a, b| (a == b) as i64,
                |a, b| a.equal(b).float(),
            );
        }
        Op::Mod { fmod } => {
            let fmod = *fmod;
            return arith(
                first,
                args.remove(0),
                device,
                move |a, b| match (b, fmod) {
                    (0, _) => 0,
                    (b, true) => a % b,
                    (b, false) => ((a % b) + b) % b,
                },
                move |a, b| {
                    let q = a.clone() / b.clone();
                    let q = if fmod {
                        q.clone().sign() * q.abs().floor()
                    } else {
                        q.floor()
                    };
                    a - b * q
                },
            );
        }
        Op::Where => {
            let (a, b) = (args.remove(0), args.remove(0));
            return match (first, a, b) {
                (Slot::Ints(c), Slot::Ints(a), Slot::Ints(b)) => {
                    let n = c.data.len().max(a.data.len()).max(b.data.len());
                    let at = |v: &Ints, i: usize| v.data[if v.data.len() == 1 { 0 } else { i }];
                    let shape = [&c, &a, &b]
                        .iter()
                        .map(|v| v.shape.clone())
                        .max_by_key(Vec::len)
                        .unwrap_or_default();
                    let data = (0..n)
                        .map(|i| if at(&c, i) != 0 { at(&a, i) } else { at(&b, i) })
                        .collect();
                    Slot::Ints(Ints { data, shape })
                }
                (c, a, b) => {
                    let (c, a, b) = (c.tensor(device), a.tensor(device), b.tensor(device));
                    let rank = c.rank.max(a.rank).max(b.rank);
                    let mask = c.tensor.equal_elem(0.0).bool_not();
                    let zero = a.tensor.clone() * 0.0 + b.tensor.clone() * 0.0;
                    let tensor = (zero.clone() + b.tensor)
                        .mask_where(mask.clone().expand(zero.dims()), zero + a.tensor);
                    Slot::Tensor(Value { tensor, rank })
                }
            };
        }
        Op::Shape { start, end } => {
            let s = match &first {
                Slot::Tensor(v) => v.shape(),
                Slot::Ints(i) => i.shape.clone(),
            };
            let (start, end) = (clamp_index(*start as i64, s.len()), (*end).min(s.len()));
            let data: Vec<i64> = s[start..end.max(start)].iter().map(|&d| d as i64).collect();
            return Slot::Ints(Ints {
                shape: vec![data.len()],
                data,
            });
        }
        Op::Cast { to_int } => {
            return match (first, to_int) {
                (Slot::Ints(i), true) => Slot::Ints(i),
                (Slot::Tensor(v), true) => Slot::Ints(host_ints(v)),
                (s, false) => Slot::Tensor(s.tensor(device)),
            };
        }
        Op::Identity => return first,
        _ => {}
    }
    if let Slot::Ints(x) = &first {
        match op {
            Op::Gather { axis: 0 } => {
                let idx = match args.remove(0) {
                    Slot::Ints(i) => i,
                    Slot::Tensor(v) => host_ints(v),
                };
                let len = x.data.len();
                let data = idx
                    .data
                    .iter()
                    .map(|&i| x.data[clamp_index(i, len).min(len.saturating_sub(1))])
                    .collect();
                return Slot::Ints(Ints {
                    data,
                    shape: idx.shape,
                });
            }
            Op::Unsqueeze { .. } if x.shape.is_empty() => {
                return Slot::Ints(Ints {
                    data: x.data.clone(),
                    shape: vec![1],
                });
            }
            Op::Squeeze { .. } if x.data.len() == 1 => {
                return Slot::Ints(Ints {
                    data: x.data.clone(),
                    shape: vec![],
                });
            }
            Op::Concat { .. } => {
                let mut data = x.data.clone();
                for a in args {
                    match a {
                        Slot::Ints(i) => data.extend(i.data),
                        Slot::Tensor(v) => data.extend(host_ints(v).data),
                    }
                }
                return Slot::Ints(Ints {
                    shape: vec![data.len()],
                    data,
                });
            }
            Op::Slice { .. } | Op::SliceDynamic { .. } => {
                let ranges = match op {
                    Op::Slice { ranges } => ranges.clone(),
                    _ => dynamic_ranges(op, 1, args, device),
                };
                let [(0, start, end, step)] = ranges[..] else {
                    panic!("a Slice of a shape vector takes axis 0 only, got {ranges:?}");
                };
                let len = x.data.len();
                let (s, e) = (clamp_index(start, len), clamp_index(end, len));
                let data: Vec<i64> = if step > 0 {
                    (s..e).step_by(step as usize).map(|i| x.data[i]).collect()
                } else {
                    Vec::new()
                };
                return Slot::Ints(Ints {
                    shape: vec![data.len()],
                    data,
                });
            }
            _ => {}
        }
    }
    if let Op::Gather { axis } = op {
        let indices = match args.pop().expect("Gather has indices") {
            Slot::Ints(i) => i,
            Slot::Tensor(v) => host_ints(v),
        };
        return Slot::Tensor(gather(first.tensor(device), *axis, indices));
    }
    let x = first.tensor(device);
    let mut rest = args.into_iter().map(|a| a.tensor(device));
    Slot::Tensor(apply_tensor(op, m, x, &mut rest))
}

fn apply_tensor(op: &Op, m: &Modules, x: Value, rest: &mut dyn Iterator<Item = Value>) -> Value {
    match op {
        Op::Conv { index, .. } => unary(x, |t| from4(conv2d_layer(&m.convs[*index], as4(t)))),
        Op::BatchNorm { index } => {
            let shape = x.shape();
            let mut as_4 = shape.clone();
            as_4.resize(4, 1);
            let t = x.tensor.reshape([as_4[0], as_4[1], as_4[2], as_4[3]]);
            Value::with_shape(from4(batch_norm_layer(&m.bns[*index], t)), &shape)
        }
        Op::Linear { index } => unary(x, |t| m.linears[*index].forward(t)),
        Op::LayerNorm { index, axis, .. } => {
            let shape = x.shape();
            let outer: usize = shape[..*axis].iter().product();
            let inner: usize = shape[*axis..].iter().product();
            let t: Tensor<2> = x.tensor.reshape([outer, inner]);
            Value::with_shape(
                m.layer_norms[*index].forward(t).reshape(padded(&shape)),
                &shape,
            )
        }
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
        Op::Erf => unary(x, |t| t.erf()),
        Op::Sqrt => unary(x, |t| t.sqrt()),
        Op::Gelu { tanh } => unary(x, |t| {
            if *tanh {
                // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
                let inner = (t.clone() + t.clone().powi_scalar(3) * 0.044715)
                    * (2.0 / std::f64::consts::PI).sqrt();
                t * (activation::tanh(inner) + 1.0) * 0.5
            } else {
                activation::gelu(t)
            }
        }),
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
            from4(grafter_kernels::max_pool2d(as4(t), options))
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
            from4(avg_pool2d(as4(t), options))
        }),
        Op::GlobalAvgPool => unary(x, |t| {
            let t = as4(t);
            let [n, c, h, w] = t.dims();
            let flat: Tensor<3> = t.reshape([n, c, h * w]);
            from4(flat.mean_dim(2).reshape([n, c, 1, 1]))
        }),
        Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Shape { .. }
        | Op::Cast { .. }
        | Op::ConstantOfShape { .. }
        | Op::Equal
        | Op::Range
        | Op::Where
        | Op::Mod { .. } => {
            unreachable!("handled by apply")
        }
        Op::Identity => x,
        Op::Concat { axis } => {
            let mut all = vec![x];
            all.extend(rest);
            let rank = all.iter().map(|a| a.rank).max().unwrap_or(1);
            let tensors = all.into_iter().map(|a| a.tensor).collect();
            Value {
                tensor: Tensor::cat(tensors, axis + R - rank),
                rank,
            }
        }
        Op::Flatten { axis } => {
            let s = x.shape();
            let outer: usize = s[..*axis].iter().product();
            let inner: usize = s[*axis..].iter().product();
            Value::with_shape(x.tensor, &[outer, inner])
        }
        Op::Reshape { shape } => reshape(x, shape),
        Op::ReshapeDynamic => {
            let target = rest.next().expect("Reshape has a shape input");
            let shape = host_ints(target).data;
            reshape(x, &shape)
        }
        Op::Expand { shape } => {
            let target = match shape {
                Some(s) => s.clone(),
                None => host_ints(rest.next().expect("Expand has a shape input")).data,
            };
            let s = x.shape();
            let rank = s.len().max(target.len());
            let dim = |v: &[usize], i: usize| {
                let off = rank - v.len();
                if i < off { 1 } else { v[i - off] }
            };
            let t: Vec<usize> = target.iter().map(|&d| d.max(0) as usize).collect();
            let out: Vec<usize> = (0..rank)
                .map(|i| {
                    let (a, b) = (dim(&s, i), dim(&t, i));
                    if a == 1 { b } else { a }
                })
                .collect();
            Value {
                tensor: x.tensor.expand(padded(&out)),
                rank,
            }
        }
        Op::Transpose { perm } => {
            let off = R - x.rank;
            let mut full: [usize; R] = std::array::from_fn(|i| i);
            for (i, &p) in perm.iter().enumerate() {
                full[off + i] = off + p;
            }
            unary(x, |t| t.permute(full))
        }
        // Burn applies fewer pairs than axes to the last axes: the right alignment.
        Op::Pad { pads, value } => {
            let pads = pads.clone();
            unary(x, |t| t.pad(pads, PadMode::Constant(*value)))
        }
        Op::Softmax { axis } => {
            let dim = axis + R - x.rank;
            unary(x, |t| activation::softmax(t, dim))
        }
        Op::ReduceMean { axes, keepdims } => {
            let s = x.shape();
            let off = R - x.rank;
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
                .filter(|&(i, &d)| {
                    if axes.is_empty() {
                        d != 1
                    } else {
                        !axes.contains(&i)
                    }
                })
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
        Op::Gather { .. } => unreachable!("handled by apply"),
        Op::Slice { .. } | Op::SliceDynamic { .. } => {
            let ranges = match op {
                Op::Slice { ranges } => ranges.clone(),
                _ => dynamic_ranges(
                    op,
                    x.rank,
                    rest.map(Slot::Tensor).collect(),
                    &x.tensor.device(),
                ),
            };
            let s = x.shape();
            let off = R - x.rank;
            let mut t = x.tensor;
            let mut out = s.clone();
            for &(axis, start, end, step) in &ranges {
                let len = s[axis];
                let (b, e) = (clamp_index(start, len), clamp_index(end, len));
                let e = e.max(b);
                let step = step.max(1) as usize;
                let picks: Vec<i64> = (b..e).step_by(step).map(|i| i as i64).collect();
                out[axis] = picks.len();
                let indices = Tensor::<1, burn::tensor::Int>::from_data(
                    TensorData::new(picks.clone(), [picks.len()]),
                    &t.device(),
                );
                t = t.select(axis + off, indices);
            }
            Value::with_shape(t, &out)
        }
        Op::MatMul => {
            let y = rest.next().expect("MatMul has two inputs");
            let rank = x.rank.max(y.rank);
            Value {
                tensor: x.tensor.matmul(y.tensor),
                rank,
            }
        }
    }
}

/// A run-time Slice's `(axis, start, end, step)` from its inputs after the data.
fn dynamic_ranges(
    op: &Op,
    rank: usize,
    args: Vec<Slot>,
    device: &Device,
) -> Vec<(usize, i64, i64, i64)> {
    let Op::SliceDynamic { axes, steps } = op else {
        unreachable!("only for SliceDynamic")
    };
    let mut ints = args.into_iter().map(|a| match a {
        Slot::Ints(i) => i.data,
        Slot::Tensor(v) => host_ints(v).data,
    });
    let _ = device;
    let starts = ints.next().expect("Slice starts");
    let ends = ints.next().expect("Slice ends");
    let axes: Vec<i64> = if *axes {
        ints.next().expect("Slice axes")
    } else {
        (0..starts.len() as i64).collect()
    };
    let steps: Vec<i64> = if *steps {
        ints.next().expect("Slice steps")
    } else {
        vec![1; starts.len()]
    };
    (0..starts.len())
        .map(|i| {
            let a = axes[i];
            let a = if a < 0 { a + rank as i64 } else { a } as usize;
            (a, starts[i], ends[i], steps[i])
        })
        .collect()
}

/// `Gather` of `indices` (a scalar drops the axis) along `axis`.
fn gather(x: Value, axis: usize, idx: Ints) -> Value {
    let s = x.shape();
    let dim = R - x.rank + axis;
    let len = s[axis];
    let picks: Vec<i64> = idx
        .data
        .iter()
        .map(|&i| clamp_index(i, len).min(len.saturating_sub(1)) as i64)
        .collect();
    let indices = Tensor::<1, burn::tensor::Int>::from_data(
        TensorData::new(picks.clone(), [picks.len()]),
        &x.tensor.device(),
    );
    let picked = x.tensor.select(dim, indices);
    let mut out: Vec<usize> = s[..axis].to_vec();
    out.extend(&idx.shape);
    out.extend(&s[axis + 1..]);
    Value::with_shape(picked, &out)
}

/// ONNX Reshape semantics: 0 copies the input's dimension, -1 is inferred.
fn reshape(x: Value, shape: &[i64]) -> Value {
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
