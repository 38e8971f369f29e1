//! Splitting a graph into stages where its spatial resolution drops.
//!
//! Each value gets a "level": the product of the strides on its way from the input. Parallel
//! branches that downsample together (a ResNet block's main path and its shortcut) reach the
//! same level, so they land in the same stage. ResNet gives stem + 4 stages, VGG its 5
//! blocks, MobileNetV2 its resolution groups.

use crate::graph::{Graph, Op, Operand};

/// Which weighted module a step owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Member {
    Conv(usize),
    BatchNorm(usize),
    Linear(usize),
    LayerNorm(usize),
    /// A trained constant (`OnnxBackbone::params`).
    Param(usize),
}

/// Named stages, input side first, each with the modules it owns.
pub(crate) fn split(graph: &Graph) -> Vec<(String, Vec<Member>)> {
    let mut level = vec![1usize; graph.value_names.len()];
    let mut by_level: Vec<(usize, Vec<Member>)> = Vec::new();
    for step in &graph.steps {
        let input_level = step
            .inputs
            .iter()
            .filter_map(|o| match o {
                Operand::Value(v) => Some(level[*v]),
                Operand::Const(_) => None,
            })
            .max()
            .unwrap_or(1);
        // Saturating: strides are capped at load, but a long chain of them may still exceed usize.
        let lvl = input_level.saturating_mul(step.op.stride(&graph.conv_strides));
        level[step.output] = lvl;
        let params = step.inputs.iter().filter_map(|o| match o {
            Operand::Const(c) => graph.constants[*c].param.map(Member::Param),
            Operand::Value(_) => None,
        });
        let members: Vec<Member> = params.collect();
        if !members.is_empty() {
            match by_level.iter_mut().find(|(l, _)| *l == lvl) {
                Some((_, m)) => {
                    for x in members {
                        if !m.contains(&x) {
                            m.push(x);
                        }
                    }
                }
                None => by_level.push((lvl, members)),
            }
        }
        let member = match step.op {
            Op::Conv { index, .. } => Member::Conv(index),
            Op::BatchNorm { index } => Member::BatchNorm(index),
            Op::Linear { index } => Member::Linear(index),
            Op::LayerNorm { index, .. } => Member::LayerNorm(index),
            _ => continue,
        };
        match by_level.iter_mut().find(|(l, _)| *l == lvl) {
            Some((_, members)) => members.push(member),
            None => by_level.push((lvl, vec![member])),
        }
    }
    by_level.sort_by_key(|(l, _)| *l);
    by_level
        .into_iter()
        .enumerate()
        .map(|(i, (_, members))| {
            let name = if i == 0 {
                "stem".to_string()
            } else {
                format!("stage{i}")
            };
            (name, members)
        })
        .collect()
}
