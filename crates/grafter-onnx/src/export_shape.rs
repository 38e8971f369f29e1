//! Writing the interpreter's shape-arithmetic and transformer ops back out as ONNX nodes, so
//! a backbone that computes its own shapes (ShuffleNet's channel shuffle, dynamic-batch
//! exports) or uses Gelu exports like any other. Integers are written as int64 throughout.

use crate::emitter::ExportError;
use crate::graph::Op;
use crate::proto::{Attr, Emitter};

const FLOAT: i64 = 1;
const INT64: i64 = 7;

/// Emits `op` on the operands `ins` (ONNX names) into `out`; `false` when `op` is not one of
/// this file's ops.
pub(crate) fn emit(
    e: &mut Emitter,
    op: &Op,
    ins: &[String],
    out: &str,
) -> Result<bool, ExportError> {
    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
    let x = refs[0];
    match op {
        Op::Shape { start, end } => e.node(
            "Shape",
            &[x],
            out,
            vec![
                ("start", Attr::Int(*start as i64)),
                ("end", Attr::Int((*end).min(i64::MAX as usize) as i64)),
            ],
        ),
        Op::Gather { axis } => e.node(
            "Gather",
            &refs,
            out,
            vec![("axis", Attr::Int(*axis as i64))],
        ),
        Op::Cast { to_int } => {
            let to = if *to_int { INT64 } else { FLOAT };
            e.node("Cast", &[x], out, vec![("to", Attr::Int(to))])
        }
        Op::Slice { ranges } => {
            let pick = |f: fn(&(usize, i64, i64, i64)) -> i64| -> Vec<i64> {
                ranges.iter().map(f).collect()
            };
            let starts = e.ints("starts", &pick(|r| r.1));
            let ends = e.ints("ends", &pick(|r| r.2));
            let axes = e.ints("axes", &pick(|r| r.0 as i64));
            let steps = e.ints("steps", &pick(|r| r.3));
            e.node("Slice", &[x, &starts, &ends, &axes, &steps], out, vec![])
        }
        Op::SliceDynamic { .. } => e.node("Slice", &refs, out, vec![]),
        Op::ReshapeDynamic => e.node("Reshape", &refs, out, vec![]),
        Op::Expand { shape } => match shape {
            Some(s) => {
                let sname = e.ints("shape", s);
                e.node("Expand", &[x, &sname], out, vec![])
            }
            None => e.node("Expand", &refs, out, vec![]),
        },
        Op::ConstantOfShape { shape, value, int } => {
            // Expand of the one value: ConstantOfShape's value is a tensor attribute.
            let v = if *int {
                e.ints("value", &[*value as i64])
            } else {
                e.floats("value", &[1], &[*value as f32])
            };
            let s = match shape {
                Some(s) => e.ints("shape", s),
                None => ins[0].clone(),
            };
            e.node("Expand", &[&v, &s], out, vec![])
        }
        Op::Equal => e.node("Equal", &refs, out, vec![]),
        Op::Where => e.node("Where", &refs, out, vec![]),
        Op::Mod { fmod } => e.node("Mod", &refs, out, vec![("fmod", Attr::Int(*fmod as i64))]),
        Op::Range => e.node("Range", &refs, out, vec![]),
        Op::Gelu { tanh } => gelu(e, x, out, *tanh),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Gelu from opset-17 ops: `x · ½ (1 + erf(x / √2))`, or with the tanh approximation
/// `x · ½ (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
fn gelu(e: &mut Emitter, x: &str, out: &str, tanh: bool) {
    let scalar = |e: &mut Emitter, name: &str, v: f32| e.floats(name, &[], &[v]);
    let inner = if tanh {
        let cube = e.fresh("gelu_cube");
        let three = scalar(e, "three", 3.0);
        e.node("Pow", &[x, &three], &cube, vec![]);
        let k = scalar(e, "k", 0.044715);
        let scaled = e.fresh("gelu_scaled");
        e.node("Mul", &[&cube, &k], &scaled, vec![]);
        let sum = e.fresh("gelu_sum");
        e.node("Add", &[x, &scaled], &sum, vec![]);
        let c = scalar(e, "c", (2.0 / std::f32::consts::PI).sqrt());
        let arg = e.fresh("gelu_arg");
        e.node("Mul", &[&sum, &c], &arg, vec![]);
        let t = e.fresh("gelu_tanh");
        e.node("Tanh", &[&arg], &t, vec![]);
        t
    } else {
        let r = scalar(e, "sqrt2", std::f32::consts::SQRT_2);
        let d = e.fresh("gelu_div");
        e.node("Div", &[x, &r], &d, vec![]);
        let t = e.fresh("gelu_erf");
        e.node("Erf", &[&d], &t, vec![]);
        t
    };
    let one = scalar(e, "one", 1.0);
    let half = scalar(e, "half", 0.5);
    let p = e.fresh("gelu_1p");
    e.node("Add", &[&inner, &one], &p, vec![]);
    let h = e.fresh("gelu_half");
    e.node("Mul", &[&p, &half], &h, vec![]);
    e.node("Mul", &[x, &h], out, vec![]);
}
