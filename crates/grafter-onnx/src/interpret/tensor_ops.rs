//! The ops on tensor values, each on the right-aligned storage of [`Value`].

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::*;
use crate::graph::{ResizeMode, ResizeSize};

pub(super) fn apply_tensor(
    op: &Op,
    m: &Modules,
    x: Value,
    rest: &mut dyn Iterator<Item = Value>,
) -> Value {
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
        Op::Relu => unary(x, grafter_kernels::relu),
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
                tensor: {
                    checked_elements(&out);
                    x.tensor.expand(padded(&out))
                },
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
        Op::ReduceMean { axes, keepdims } => reduce(x, axes, *keepdims, |t, d| t.mean_dim(d)),
        Op::ReduceSum { axes, keepdims } => reduce(x, axes, *keepdims, |t, d| t.sum_dim(d)),
        Op::ReduceMax { axes, keepdims } => reduce(x, axes, *keepdims, |t, d| t.max_dim(d)),
        Op::Pow => {
            let exponent = rest.next().expect("Pow has an exponent");
            binary(x, exponent, |a, b| a.powf(b))
        }
        Op::Tile { repeats } => {
            let s = x.shape();
            let out: Vec<usize> = s.iter().zip(repeats).map(|(d, r)| d * r).collect();
            checked_elements(&out);
            let mut all = [1usize; R];
            all[R - repeats.len()..].copy_from_slice(repeats);
            Value::with_shape(x.tensor.repeat(&all), &out)
        }
        Op::Resize { mode, size } => {
            let [n, c, h, w] = as4(x.tensor.clone()).dims();
            let [oh, ow] = match size {
                ResizeSize::Scales([sh, sw]) => [
                    (h as f64 * *sh as f64).floor() as usize,
                    (w as f64 * *sw as f64).floor() as usize,
                ],
                ResizeSize::Sizes(s) => *s,
                ResizeSize::Computed => {
                    let sizes = host_ints(rest.next().expect("Resize has sizes")).data;
                    let at = |i: usize| sizes.get(i).map_or(0, |&d| d.max(0) as usize);
                    [at(2), at(3)]
                }
            };
            let (mode, align_corners) = match mode {
                ResizeMode::Nearest => (InterpolateMode::Nearest, false),
                ResizeMode::Linear { align_corners } => (InterpolateMode::Bilinear, *align_corners),
            };
            let out = [oh.max(1), ow.max(1)];
            checked_elements(&[n, c, out[0], out[1]]);
            let options = InterpolateOptions::new(mode)
                .with_align_corners(align_corners)
                .with_output_size(out);
            unary(x, |t| from4(interpolate(as4(t), options)))
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
pub(super) fn dynamic_ranges(
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
pub(super) fn gather(x: Value, axis: usize, idx: Ints) -> Value {
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
pub(super) fn reshape(x: Value, shape: &[i64]) -> Value {
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

/// A reduction `f` over `axes`, dropping them unless `keepdims`.
fn reduce(
    x: Value,
    axes: &[usize],
    keepdims: bool,
    f: impl Fn(Tensor<R>, usize) -> Tensor<R>,
) -> Value {
    let s = x.shape();
    let off = R - x.rank;
    let mut t = x.tensor;
    for &a in axes {
        t = f(t, a + off);
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
