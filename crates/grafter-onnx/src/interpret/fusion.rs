//! Convolutions run together with the ReLU, or the residual addition and ReLU, that follow
//! them — one kernel call instead of two or three passes over the activation
//! ([`grafter_kernels::conv_relu_layer`]; ResNet's blocks, VGG's layers).
//!
//! A step sequence is fused only when the intermediate values have no other use (no other
//! step, no wanted output: a cut or feature tap on one keeps the steps apart) and the residual
//! is a 4-D activation. Under autodiff, when anything needs a gradient, the kernels record the
//! same three ops as the unfused steps, so training is unchanged.

use burn::nn::conv::Conv2d;

use super::{Value, as4};
use crate::graph::{Op, Operand, Step};

/// What follows the convolution at `steps[k]` inside the fused call.
pub(super) enum Fused {
    /// `relu(conv(x))`: steps `k`, `k + 1`.
    Relu,
    /// `relu(conv(x) + residual)`: steps `k` to `k + 2`.
    AddRelu { residual: usize },
}

impl Fused {
    /// Steps the fused call stands for.
    pub(super) fn steps(&self) -> usize {
        match self {
            Fused::Relu => 2,
            Fused::AddRelu { .. } => 3,
        }
    }
}

/// The fusion starting at `steps[k]`, if any; `uses[v]` counts the steps (and wanted outputs)
/// still to read value `v`.
pub(super) fn fusion(steps: &[Step], uses: &[usize], k: usize) -> Option<Fused> {
    let Op::Conv { .. } = steps[k].op else {
        return None;
    };
    let conv = steps[k].output;
    let only = |v: usize| uses[v] == 1;
    let next = steps.get(k + 1)?;
    let reads = |s: &Step, v: usize| s.inputs == [Operand::Value(v)];
    if !only(conv) {
        return None;
    }
    if matches!(next.op, Op::Relu) && reads(next, conv) {
        return Some(Fused::Relu);
    }
    let relu = steps.get(k + 2)?;
    let residual = match (&next.op, next.inputs.as_slice()) {
        (Op::Add, [Operand::Value(a), Operand::Value(b)]) if *a == conv && *b != conv => *b,
        (Op::Add, [Operand::Value(a), Operand::Value(b)]) if *b == conv && *a != conv => *a,
        _ => return None,
    };
    let fused = matches!(relu.op, Op::Relu) && reads(relu, next.output) && only(next.output);
    fused.then_some(Fused::AddRelu { residual })
}

/// `relu(conv(x) (+ residual))` on 4-D values.
pub(super) fn conv_add_relu(conv: &Conv2d, x: Value, residual: Option<Value>) -> Value {
    let residual = residual.map(|r| as4(r.tensor));
    Value::from_rank4(grafter_kernels::conv_relu_layer(
        conv,
        as4(x.tensor),
        residual,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(op: Op, inputs: &[usize], output: usize) -> Step {
        Step {
            name: format!("n{output}"),
            op,
            inputs: inputs.iter().map(|&v| Operand::Value(v)).collect(),
            output,
        }
    }

    fn conv(input: usize, output: usize) -> Step {
        let op = Op::Conv {
            index: 0,
            pads: [0; 4],
        };
        step(op, &[input], output)
    }

    /// Reads of each value by `steps`, plus one for each wanted value.
    fn uses(steps: &[Step], values: usize, wanted: &[usize]) -> Vec<usize> {
        let mut uses = vec![0; values];
        for s in steps {
            for o in &s.inputs {
                if let Operand::Value(v) = o {
                    uses[*v] += 1;
                }
            }
        }
        wanted.iter().for_each(|&w| uses[w] += 1);
        uses
    }

    #[test]
    fn a_resnet_block_fuses_its_relus_and_its_residual_addition() {
        // 0 → conv → 1 → relu → 2 → conv → 3 → add(3, 0) → 4 → relu → 5
        let steps = [
            conv(0, 1),
            step(Op::Relu, &[1], 2),
            conv(2, 3),
            step(Op::Add, &[0, 3], 4),
            step(Op::Relu, &[4], 5),
        ];
        let u = uses(&steps, 6, &[5]);
        assert!(matches!(fusion(&steps, &u, 0), Some(Fused::Relu)));
        assert!(matches!(
            fusion(&steps, &u, 2),
            Some(Fused::AddRelu { residual: 0 })
        ));
        assert!(
            fusion(&steps, &u, 1).is_none(),
            "only convolutions start a fusion"
        );
    }

    #[test]
    fn values_read_elsewhere_or_wanted_keep_the_steps_apart() {
        let steps = [
            conv(0, 1),
            step(Op::Relu, &[1], 2),
            step(Op::Add, &[1, 2], 3),
        ];
        // The convolution's output is read twice.
        assert!(fusion(&steps, &uses(&steps, 4, &[3]), 0).is_none());
        // A feature tap on the convolution's output, or on the addition's.
        let block = [
            conv(0, 1),
            step(Op::Add, &[1, 0], 2),
            step(Op::Relu, &[2], 3),
        ];
        assert!(fusion(&block, &uses(&block, 4, &[3, 1]), 0).is_none());
        assert!(fusion(&block, &uses(&block, 4, &[3, 2]), 0).is_none());
        assert!(fusion(&block, &uses(&block, 4, &[3]), 0).is_some());
        // conv + conv: an addition of the convolution to itself is not a residual.
        let doubled = [
            conv(0, 1),
            step(Op::Add, &[1, 1], 2),
            step(Op::Relu, &[2], 3),
        ];
        assert!(fusion(&doubled, &uses(&doubled, 4, &[3]), 0).is_none());
    }
}
