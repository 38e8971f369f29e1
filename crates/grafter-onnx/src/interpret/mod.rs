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

mod fusion;
mod ints;
mod tensor_ops;

use ints::{apply_ints, clamp_index, host_ints, int_binary, int_div};
use tensor_ops::{apply_tensor, dynamic_ranges, gather};

/// The most elements a tensor made from a shape computed by the graph may have (1 GiB of
/// `f32`): a hostile ConstantOfShape or Expand target fails (in the load probe, as a typed
/// error) instead of exhausting memory.
const MAX_ELEMENTS: usize = 1 << 28;

/// The element count of `shape`, panicking (caught by the load probe) above [`MAX_ELEMENTS`].
pub(super) fn checked_elements(shape: &[usize]) -> usize {
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS);
    n.unwrap_or_else(|| panic!("a computed shape {shape:?} has too many elements"))
}

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

    pub(super) fn with_shape(tensor: Tensor<R>, shape: &[usize]) -> Self {
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

pub(super) fn padded(shape: &[usize]) -> [usize; R] {
    let mut out = [1; R];
    let off = R - shape.len().min(R);
    for (i, &d) in shape.iter().take(R).enumerate() {
        out[off + i] = d;
    }
    out
}

/// The last four axes of a right-aligned tensor.
pub(super) fn as4(t: Tensor<R>) -> Tensor<4> {
    let d = t.dims();
    t.reshape([d[R - 4], d[R - 3], d[R - 2], d[R - 1]])
}

pub(super) fn from4(t: Tensor<4>) -> Tensor<R> {
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
    // Nothing after the last wanted value is computed (early feature maps).
    let end = graph
        .steps
        .iter()
        .rposition(|s| wanted.contains(&s.output))
        .map_or(0, |k| k + 1);
    // Reads operand `o`, freeing a value at its last use.
    let take = |o: &Operand, uses: &mut [usize], values: &mut [Option<Slot>]| match o {
        Operand::Value(v) => read(*v, uses, values),
        Operand::Const(c) => constant(graph, m, *c, &device),
    };
    let mut k = 0;
    while k < end {
        let step = &graph.steps[k];
        if let Some(fused) = fusion::fusion(&graph.steps[..end], &uses, k)
            && let Some(done) = run_fused(graph, m, k, &fused, &mut uses, &mut values)
        {
            k += done;
            continue;
        }
        let args: Vec<Slot> = step
            .inputs
            .iter()
            .map(|o| take(o, &mut uses, &mut values))
            .collect();
        values[step.output] = Some(apply(&step.op, m, args, &device));
        k += 1;
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

/// Value `v` for one of its readers: moved out at its last read, else a copy of the handle.
fn read(v: usize, uses: &mut [usize], values: &mut [Option<Slot>]) -> Slot {
    uses[v] -= 1;
    let value = if uses[v] == 0 {
        values[v].take()
    } else {
        values[v].clone()
    };
    value.expect("graph is topologically sorted")
}

/// Runs the steps of `fused` from `k` as one call, storing the last step's value; the number of
/// steps run, or `None` (nothing consumed) when the values do not suit the fused kernel.
fn run_fused(
    graph: &Graph,
    m: &Modules,
    k: usize,
    fused: &fusion::Fused,
    uses: &mut [usize],
    values: &mut [Option<Slot>],
) -> Option<usize> {
    let conv = &graph.steps[k];
    let (Op::Conv { index, .. }, [Operand::Value(x)]) = (&conv.op, conv.inputs.as_slice()) else {
        return None;
    };
    let residual = match fused {
        fusion::Fused::Relu => None,
        fusion::Fused::AddRelu { residual } => Some(*residual),
    };
    let is_4d = |v: usize| matches!(&values[v], Some(Slot::Tensor(t)) if t.rank == 4);
    if !is_4d(*x) || residual.is_some_and(|r| !is_4d(r)) {
        return None;
    }
    // The reads the fused steps stand for (the input, the residual), each value freed at its
    // last use; the intermediate values are never stored.
    let mut take = |v: usize| match read(v, uses, values) {
        Slot::Tensor(t) => t,
        Slot::Ints(_) => unreachable!("checked to be a 4-D tensor"),
    };
    let x = take(*x);
    let residual = residual.map(&mut take);
    let y = fusion::conv_add_relu(&m.convs[*index], x, residual);
    let n = fused.steps();
    values[graph.steps[k + n - 1].output] = Some(Slot::Tensor(y));
    Some(n)
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

pub(super) fn unary(v: Value, f: impl FnOnce(Tensor<R>) -> Tensor<R>) -> Value {
    Value {
        tensor: f(v.tensor),
        rank: v.rank,
    }
}

pub(super) fn binary(
    a: Value,
    b: Value,
    f: impl FnOnce(Tensor<R>, Tensor<R>) -> Tensor<R>,
) -> Value {
    Value {
        rank: a.rank.max(b.rank),
        tensor: f(a.tensor, b.tensor),
    }
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
        let n = checked_elements(&shape);
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
    if let Slot::Ints(x) = &first
        && let Some(out) = apply_ints(op, x, &mut args, device)
    {
        return out;
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
