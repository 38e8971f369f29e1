//! Shape arithmetic on the host: integer ops on [`Ints`] (shapes, dimensions, indices).

use super::*;

/// An element-wise integer op, numpy-broadcast between a scalar and a vector.
pub(super) fn int_binary(a: Ints, b: Ints, f: impl Fn(i64, i64) -> i64) -> Ints {
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
pub(super) fn int_div(a: i64, b: i64) -> i64 {
    if b == 0 { 0 } else { a / b }
}

pub(super) fn host_ints(v: Value) -> Ints {
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
pub(super) fn clamp_index(index: i64, len: usize) -> usize {
    let len = len as i64;
    let i = if index < 0 { index + len } else { index };
    i.clamp(0, len) as usize
}

/// The ops that keep a shape vector on the host (indexing, slicing, concatenating,
/// reshaping a scalar); `None` for the others, which then take it as a tensor.
pub(super) fn apply_ints(op: &Op, x: &Ints, args: &mut Vec<Slot>, device: &Device) -> Option<Slot> {
    let vector = |data: Vec<i64>| {
        Some(Slot::Ints(Ints {
            shape: vec![data.len()],
            data,
        }))
    };
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
            Some(Slot::Ints(Ints {
                data,
                shape: idx.shape,
            }))
        }
        Op::Unsqueeze { .. } if x.shape.is_empty() => Some(Slot::Ints(Ints {
            data: x.data.clone(),
            shape: vec![1],
        })),
        Op::Squeeze { .. } if x.data.len() == 1 => Some(Slot::Ints(Ints {
            data: x.data.clone(),
            shape: vec![],
        })),
        Op::Concat { .. } => {
            let mut data = x.data.clone();
            for a in args.drain(..) {
                match a {
                    Slot::Ints(i) => data.extend(i.data),
                    Slot::Tensor(v) => data.extend(host_ints(v).data),
                }
            }
            vector(data)
        }
        Op::Slice { .. } | Op::SliceDynamic { .. } => {
            let ranges = match op {
                Op::Slice { ranges } => ranges.clone(),
                _ => dynamic_ranges(op, 1, std::mem::take(args), device),
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
            vector(data)
        }
        _ => None,
    }
}
