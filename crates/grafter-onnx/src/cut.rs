//! Finding the cut point: the feature map a pretrained classifier starts from.
//!
//! Walking back from the graph's output: first the non-spatial tail (fully connected layers,
//! activations, dropout, flatten/reshape/softmax), then the pooling that removed the spatial
//! axes (global or plain average pooling, a mean over the spatial axes). When no fully
//! connected layer was met, the classifier may be a 1×1 convolution before the pooling
//! (SqueezeNet): it and its activation go too. What remains is the feature map. A
//! channels-last graph's transpose before its flatten goes with the head. A
//! transformer's head starts from its class token (`Gather` of token 0 of `[N, T, C]`): the
//! cut is that `[N, C]` vector.

use crate::graph::{Graph, Op, Operand, Step};

/// The slot of the automatically found feature map, or `None` when there is none.
pub(crate) fn auto_cut(graph: &Graph, is_pointwise_conv: impl Fn(usize) -> bool) -> Option<usize> {
    let single_input = |s: &Step| -> Option<usize> {
        let values: Vec<usize> = s
            .inputs
            .iter()
            .filter_map(|o| match o {
                Operand::Value(v) => Some(*v),
                Operand::Const(_) => None,
            })
            .collect();
        (values.len() == 1).then(|| values[0])
    };
    let mut cur = graph.output;
    let mut passed_linear = false;
    // 1. the non-spatial tail
    while graph.value_ranks[cur] < 4 {
        let step = graph.producer(cur)?;
        // A transformer's token pooling: the class token `x[:, 0]` of the `[N, T, C]`
        // sequence is the feature vector the head starts from.
        if let Op::Gather { axis: 1 } = step.op
            && let Some(Operand::Value(tokens)) = step.inputs.first()
            && graph.value_ranks[*tokens] == 3
        {
            return Some(cur);
        }
        let tail = matches!(
            step.op,
            Op::Linear { .. }
                | Op::BatchNorm { .. }
                | Op::Flatten { .. }
                | Op::Reshape { .. }
                | Op::ReshapeDynamic
                | Op::Squeeze { .. }
                | Op::Unsqueeze { .. }
                | Op::ReduceMean { .. }
                | Op::Softmax { .. }
                | Op::Add
                | Op::Mul
        ) || step.op.is_activation();
        if !tail {
            return None;
        }
        passed_linear |= matches!(step.op, Op::Linear { .. });
        cur = match step.op {
            // the data input; the other computes the target shape
            Op::ReshapeDynamic => match step.inputs.first() {
                Some(Operand::Value(v)) => *v,
                _ => return None,
            },
            _ => single_input(step)?,
        };
    }
    // A channels-last export (Keras via tf2onnx) flattens in NHWC order: the transpose to
    // channels-last before the flatten belongs to the head.
    if let Some(step) = graph.producer(cur)
        && matches!(&step.op, Op::Transpose { perm } if perm == &[0, 2, 3, 1])
    {
        cur = single_input(step)?;
    }
    // 2. the pooling that removed the spatial axes, behind the head's own normalisation
    //    where it has one (ConvNeXt's LayerNorm2d: Transpose → LayerNorm → Transpose)
    loop {
        let mut probe = cur;
        while let Some(step) = graph.producer(probe)
            && matches!(
                step.op,
                Op::Transpose { .. }
                    | Op::LayerNorm { .. }
                    | Op::Identity
                    | Op::Reshape { .. }
                    | Op::ReshapeDynamic
                    | Op::Flatten { .. }
                    | Op::Squeeze { .. }
                    | Op::Unsqueeze { .. }
                    | Op::Gather { .. }
            )
        {
            // the data input (a Reshape's or Gather's others compute shapes or indices)
            let Some(Operand::Value(v)) = step.inputs.first() else {
                break;
            };
            probe = *v;
        }
        match graph.producer(probe) {
            Some(step)
                if matches!(
                    step.op,
                    Op::GlobalAvgPool | Op::AvgPool { .. } | Op::ReduceMean { .. }
                ) =>
            {
                cur = single_input(step)?;
            }
            _ => break,
        }
    }
    // 3. a pointwise classifier convolution (SqueezeNet), with its activation
    if !passed_linear {
        let mut probe = cur;
        while let Some(step) = graph.producer(probe) {
            if step.op.is_activation() {
                probe = single_input(step)?;
            } else {
                break;
            }
        }
        if let Some(step) = graph.producer(probe)
            && let Op::Conv { index, .. } = step.op
            && is_pointwise_conv(index)
        {
            cur = single_input(step)?;
            while let Some(step) = graph.producer(cur) {
                if matches!(step.op, Op::Identity) {
                    cur = single_input(step)?;
                } else {
                    break;
                }
            }
        }
    }
    (graph.value_ranks[cur] == 4).then_some(cur)
}
