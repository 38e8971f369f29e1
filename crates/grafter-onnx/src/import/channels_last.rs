//! Channels-last inputs (Keras models exported by tf2onnx): the graph takes `[N, H, W, 3]`
//! and transposes to NCHW somewhere, often after preprocessing layers (Keras' EfficientNet
//! rescales and normalises inside the model). The backbone takes NCHW like every other, so
//! the values between the input and that transpose — the *channels-last values* — are held
//! in NCHW: element-wise operations on them run with their constants permuted to match, and
//! the transpose `[0, 3, 1, 2]` becomes the identity. Any other operation reached before the
//! transpose is refused with a typed error naming it.

use onnx_ir::{Argument, Node};

use super::Builder;
use crate::Result;
use crate::graph::{Constant, Op, Operand};

impl Builder<'_> {
    /// Translates `node` when one of its inputs is a channels-last value; `None` otherwise.
    pub(super) fn channels_last_node(&mut self, node: &Node) -> Option<Result<()>> {
        let touches = node
            .inputs()
            .iter()
            .any(|a| self.channels_last.contains(&a.name));
        touches.then(|| self.translate_channels_last(node))
    }

    fn translate_channels_last(&mut self, node: &Node) -> Result<()> {
        let outputs_nhwc = |b: &mut Self| {
            for out in node.outputs() {
                b.channels_last.insert(out.name.clone());
            }
        };
        let op = match node {
            Node::Transpose(n) if n.config.perm == [0, 3, 1, 2] => {
                // the value is held in NCHW already: the transpose's output is that value
                let (Some(input), Some(out)) = (n.inputs.first(), n.outputs.first()) else {
                    return Err(self.graph_err(format!("node {}: Transpose without input", n.name)));
                };
                let slot = self.slots[&input.name];
                self.slots.insert(out.name.clone(), slot);
                return Ok(());
            }
            Node::Add(_) => Op::Add,
            Node::Sub(_) => Op::Sub,
            Node::Mul(_) => Op::Mul,
            Node::Div(_) => Op::Div,
            Node::Relu(_) => Op::Relu,
            Node::Sigmoid(_) => Op::Sigmoid,
            Node::Tanh(_) => Op::Tanh,
            Node::Identity(_) => Op::Identity,
            _ => {
                return Err(self.graph_err(format!(
                    "node {} ({:?}) takes the channels-last (NHWC) image before its transpose to \
                     NCHW; only element-wise operations may come first",
                    node.name(),
                    node.node_type()
                )));
            }
        };
        let mut operands = Vec::new();
        for arg in node.inputs() {
            let operand = if self.channels_last.contains(&arg.name) {
                Operand::Value(self.slots[&arg.name])
            } else if self.slots.contains_key(&arg.name) {
                return Err(self.graph_err(format!(
                    "node {} combines the channels-last image with '{}', a value in another \
                     layout",
                    node.name(),
                    arg.name
                )));
            } else {
                self.nchw_constant(node, arg)?
            };
            operands.push(operand);
        }
        self.step_operands(node, op, &[], operands, 0)?;
        outputs_nhwc(self);
        Ok(())
    }

    /// A constant that broadcasts against an NHWC value, permuted to broadcast against the
    /// same value held in NCHW.
    fn nchw_constant(&mut self, node: &Node, arg: &Argument) -> Result<Operand> {
        let Some(data) = arg.value() else {
            return Err(self.graph_err(format!(
                "node {}: input '{}' is neither computed from the image nor constant",
                node.name(),
                arg.name
            )));
        };
        let shape = data.shape().to_vec();
        if shape.len() > 4 {
            return Err(self.graph_err(format!(
                "node {}: constant '{}' of rank {} cannot broadcast against the image",
                node.name(),
                arg.name,
                shape.len()
            )));
        }
        let values = super::floats(data);
        // right-aligned against [N, H, W, C]
        let mut s = vec![1usize; 4 - shape.len()];
        s.extend(&shape);
        let [n, h, w, c] = [s[0], s[1], s[2], s[3]];
        let mut permuted = vec![0f32; values.len()];
        for (i, v) in values.iter().enumerate() {
            let (ni, rest) = (i / (h * w * c), i % (h * w * c));
            let (hi, rest) = (rest / (w * c), rest % (w * c));
            let (wi, ci) = (rest / c, rest % c);
            permuted[((ni * c + ci) * h + hi) * w + wi] = *v;
        }
        self.constants.push(Constant {
            data: permuted,
            shape: vec![n, c, h, w],
            ints: None,
            param: None,
        });
        Ok(Operand::Const(self.constants.len() - 1))
    }
}
