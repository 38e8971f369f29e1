//! The nodes of shape arithmetic and of transformer-style graphs: Shape, Gather, Cast,
//! Slice/Split, Expand, comparisons, Range, ConstantOfShape; LayerNormalization, Erf, Gelu.
//! They exist so that ConvNeXt, ViT and graphs computing their own shapes (ShuffleNet's
//! channel shuffle, dynamic-batch exports) import.

use onnx_ir::Node;

use super::{Builder, LayerNormSpec, floats};
use crate::Result;
use crate::graph::Op;
use crate::validate;

impl Builder<'_> {
    /// Translates `node` when it is one of this file's kinds; `None` otherwise.
    pub(super) fn transformer_node(&mut self, node: &Node) -> Option<Result<()>> {
        let mine = matches!(
            node,
            Node::Cast(_)
                | Node::ConstantOfShape(_)
                | Node::Equal(_)
                | Node::Erf(_)
                | Node::Expand(_)
                | Node::Gather(_)
                | Node::Gelu(_)
                | Node::LayerNormalization(_)
                | Node::Mod(_)
                | Node::Range(_)
                | Node::Shape(_)
                | Node::Slice(_)
                | Node::Split(_)
                | Node::Sqrt(_)
                | Node::Where(_)
        );
        mine.then(|| self.translate(node))
    }

    fn translate(&mut self, node: &Node) -> Result<()> {
        match node {
            Node::Shape(n) => {
                let op = Op::Shape {
                    start: n.config.start,
                    end: n.config.end,
                };
                self.step(node, op, &[0])
            }
            Node::Gather(n) => {
                let rank = Self::input_rank(node, 0);
                self.check(
                    &n.name,
                    validate::axis_below(n.config.axis, rank.max(1), rank),
                )?;
                self.step(
                    node,
                    Op::Gather {
                        axis: n.config.axis,
                    },
                    &[0, 1],
                )
            }
            Node::Cast(n) => {
                let op = Op::Cast {
                    to_int: n.config.to.is_int(),
                };
                self.step(node, op, &[0])
            }
            Node::Slice(n) => {
                let rank = Self::input_rank(node, 0);
                let get = |b: &Self, v: &onnx_ir::slice::SliceInput| match v {
                    onnx_ir::slice::SliceInput::Static(v) => Some(v.clone()),
                    onnx_ir::slice::SliceInput::Runtime(r) => b.static_input(node, r.input_index),
                };
                let c = &n.config;
                let starts = get(self, &c.starts);
                let ends = get(self, &c.ends);
                let axes = match &c.axes {
                    Some(a) => get(self, a),
                    None => starts.as_ref().map(|s| (0..s.len() as i64).collect()),
                };
                let steps = match &c.steps {
                    Some(a) => get(self, a),
                    None => starts.as_ref().map(|s| vec![1; s.len()]),
                };
                match (starts, ends, axes, steps) {
                    (Some(st), Some(en), Some(ax), Some(sp))
                        if st.len() == en.len() && en.len() == ax.len() && ax.len() == sp.len() =>
                    {
                        let axes = self.check(&n.name, validate::axes(&ax, rank.max(1)))?;
                        if sp.iter().any(|&s| s <= 0) {
                            self.skip(node, "Slice (negative or zero step)");
                            return Ok(());
                        }
                        let ranges = (0..axes.len())
                            .map(|i| (axes[i], st[i], en[i], sp[i]))
                            .collect();
                        self.step(node, Op::Slice { ranges }, &[0])
                    }
                    _ => {
                        let mut operands = vec![0];
                        let mut push = |b: &mut Self, v: Option<&onnx_ir::slice::SliceInput>| {
                            match v {
                                Some(onnx_ir::slice::SliceInput::Runtime(r)) => {
                                    operands.push(r.input_index);
                                    Ok(())
                                }
                                Some(onnx_ir::slice::SliceInput::Static(v)) => {
                                    // Lifted into the config: its input is still there.
                                    match node.inputs().iter().position(|a| {
                                        a.value().is_some_and(|d| {
                                            d.clone().convert::<i64>().try_into_vec::<i64>().ok()
                                                == Some(v.clone())
                                        })
                                    }) {
                                        Some(i) => {
                                            operands.push(i);
                                            Ok(())
                                        }
                                        None => Err(b.graph_err(format!(
                                            "node {}: Slice bounds not found among its inputs",
                                            n.name
                                        ))),
                                    }
                                }
                                None => Ok(()),
                            }
                        };
                        push(self, Some(&c.starts))?;
                        push(self, Some(&c.ends))?;
                        push(self, c.axes.as_ref())?;
                        push(self, c.steps.as_ref())?;
                        let op = Op::SliceDynamic {
                            axes: c.axes.is_some(),
                            steps: c.steps.is_some(),
                        };
                        self.step(node, op, &operands)
                    }
                }
            }
            Node::Split(n) => self.split(node, n),
            Node::Expand(n) => match &n.config {
                onnx_ir::expand::ExpandConfig::Static(s) => self.step(
                    node,
                    Op::Expand {
                        shape: Some(s.clone()),
                    },
                    &[0],
                ),
                onnx_ir::expand::ExpandConfig::Runtime(r) => {
                    let shape = self.static_input(node, r.input_index);
                    match shape {
                        Some(s) => self.step(node, Op::Expand { shape: Some(s) }, &[0]),
                        None => self.step(node, Op::Expand { shape: None }, &[0, r.input_index]),
                    }
                }
            },
            Node::Erf(_) => self.step(node, Op::Erf, &[0]),
            Node::Equal(_) => self.step(node, Op::Equal, &[0, 1]),
            Node::Range(n) => {
                use onnx_ir::range::RangeInput;
                let mut operands = Vec::new();
                for r in [&n.config.start, &n.config.limit, &n.config.delta] {
                    match r {
                        RangeInput::Static(v) => operands.push(self.int_operand(*v)),
                        RangeInput::Runtime(r) => {
                            let operand = n.inputs.get(r.input_index).and_then(|a| self.operand(a));
                            match operand {
                                Some(o) => operands.push(o),
                                None => {
                                    return Err(self.graph_err(format!(
                                        "node {}: a Range bound is neither computed nor constant",
                                        n.name
                                    )));
                                }
                            }
                        }
                        RangeInput::StaticFloat(_) => {
                            self.skip(node, "Range (floating point)");
                            return Ok(());
                        }
                    }
                }
                self.step_operands(node, Op::Range, &[], operands, 0)
            }
            Node::Where(_) => self.step(node, Op::Where, &[0, 1, 2]),
            Node::Mod(n) => self.step(
                node,
                Op::Mod {
                    fmod: n.config.fmod,
                },
                &[0, 1],
            ),
            Node::ConstantOfShape(n) => {
                let (value, int) = match &n.config.value {
                    Some(v) => (
                        floats(v.clone()).first().copied().unwrap_or(0.0) as f64,
                        v.dtype().is_int(),
                    ),
                    None => (0.0, false),
                };
                use onnx_ir::constant_of_shape::ConstantOfShapeShape as S;
                match &n.config.shape {
                    S::Static(s) => {
                        let op = Op::ConstantOfShape {
                            shape: Some(s.clone()),
                            value,
                            int,
                        };
                        // No data input: the node's output depends on nothing at run time.
                        self.step(node, op, &[])
                    }
                    S::Runtime(r) => {
                        let op = Op::ConstantOfShape {
                            shape: None,
                            value,
                            int,
                        };
                        self.step(node, op, &[r.input_index])
                    }
                }
            }
            Node::Sqrt(_) => self.step(node, Op::Sqrt, &[0]),
            Node::Gelu(n) => {
                let tanh = matches!(n.config.approximate, onnx_ir::gelu::GeluApproximate::Tanh);
                self.step(node, Op::Gelu { tanh }, &[0])
            }
            Node::LayerNormalization(n) => {
                let rank = Self::input_rank(node, 0) as i64;
                let axis = n.config.axis;
                if rank == 0 || axis < -rank || axis >= rank {
                    return Err(self.graph_err(format!(
                        "node {}: LayerNormalization axis {axis} is outside a rank-{rank} input",
                        n.name
                    )));
                }
                let axis = axis.rem_euclid(rank) as usize;
                let scale = floats(self.weight(&n.name, &n.inputs, 1)?);
                let bias = self.optional_weight(&n.name, &n.inputs, 2)?;
                if scale.is_empty() || bias.as_ref().is_some_and(|b| b.len() != scale.len()) {
                    return Err(self.graph_err(format!(
                        "node {}: LayerNormalization scale ({} values) and bias do not match",
                        n.name,
                        scale.len()
                    )));
                }
                let epsilon = if n.config.epsilon > 0.0 {
                    n.config.epsilon
                } else {
                    1e-5
                };
                self.layer_norms.push(LayerNormSpec {
                    scale,
                    bias,
                    epsilon,
                });
                let op = Op::LayerNorm {
                    index: self.layer_norms.len() - 1,
                    axis,
                    epsilon,
                };
                self.step(node, op, &[0])
            }
            _ => unreachable!("transformer_node lists the kinds"),
        }
    }

    /// A Split becomes one Slice per output.
    fn split(&mut self, node: &Node, n: &onnx_ir::split::SplitNode) -> Result<()> {
        use onnx_ir::split::SplitSizesInput;
        let c = &n.config;
        let outputs = n.outputs.len();
        let dim = n
            .inputs
            .first()
            .and_then(|a| a.ty.static_shape())
            .and_then(|s| s.get(c.axis).copied().flatten());
        let sizes: Option<Vec<usize>> = match (&c.split_sizes, c.split_size) {
            (Some(SplitSizesInput::Static(s)), _) => Some(s.clone()),
            (Some(SplitSizesInput::Runtime(r)), _) => self
                .static_input(node, r.input_index)
                .map(|v| v.into_iter().map(|x| x.max(0) as usize).collect()),
            (None, Some(size)) => dim.map(|d| {
                (0..outputs)
                    .map(|i| size.min(d.saturating_sub(i * size)))
                    .collect()
            }),
            (None, None) => dim.map(|d| {
                let size = d.div_ceil(outputs.max(1));
                (0..outputs)
                    .map(|i| size.min(d.saturating_sub(i * size)))
                    .collect()
            }),
        };
        let Some(sizes) = sizes.filter(|s| s.len() == outputs) else {
            self.skip(node, "Split (sizes unknown at load)");
            return Ok(());
        };
        let mut start = 0i64;
        for (i, size) in sizes.into_iter().enumerate() {
            let end = start + size as i64;
            let op = Op::Slice {
                ranges: vec![(c.axis, start, end, 1)],
            };
            self.step_to(node, op, &[0], i)?;
            start = end;
        }
        Ok(())
    }
}
