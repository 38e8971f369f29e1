//! Splitting a graph into stages where its spatial resolution drops.
//!
//! Each value gets a "level": the product of the strides on its way from the input. Parallel
//! branches that downsample together (a ResNet block's main path and its shortcut) reach the
//! same level, so they land in the same stage. ResNet gives stem + 4 stages, VGG its 5
//! blocks, MobileNetV2 its resolution groups.
//!
//! A transformer keeps one resolution after its patch embedding, so it is split at its
//! LayerNorms over token sequences instead: the patch embedding (with the class token and
//! position embedding), one stage per block (attention and MLP: two pre-norm sub-blocks), and
//! the final norm — what freeze policies and layer-wise learning-rate decay expect.

use crate::graph::{Graph, Op, Operand};

/// Which weighted module a step owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Member {
    Conv(usize),
    BatchNorm(usize),
    Linear(usize),
    LayerNorm(usize),
    /// A trained constant (`OnnxBackbone::params`).
    Param(usize),
}

/// The modules (and trained constants) each step owns, in step order, without repeats.
fn members_by_step(graph: &Graph) -> Vec<Vec<Member>> {
    let mut seen = std::collections::HashSet::new();
    graph
        .steps
        .iter()
        .map(|step| {
            let mut out: Vec<Member> = step
                .inputs
                .iter()
                .filter_map(|o| match o {
                    Operand::Const(c) => graph.constants[*c].param.map(Member::Param),
                    Operand::Value(_) => None,
                })
                .collect();
            out.extend(match step.op {
                Op::Conv { index, .. } => Some(Member::Conv(index)),
                Op::BatchNorm { index } => Some(Member::BatchNorm(index)),
                Op::Linear { index } => Some(Member::Linear(index)),
                Op::LayerNorm { index, .. } => Some(Member::LayerNorm(index)),
                _ => None,
            });
            out.retain(|m| seen.insert(*m));
            out
        })
        .collect()
}

/// A transformer's stages, or `None` when the graph does not have at least three
/// LayerNorms over token sequences (rank-3 values).
fn split_transformer(graph: &Graph) -> Option<Vec<(String, Vec<Member>)>> {
    let is_token_norm = |step: &crate::graph::Step| {
        matches!(step.op, Op::LayerNorm { .. })
            && matches!(step.inputs.first(), Some(Operand::Value(v)) if graph.value_ranks[*v] == 3)
    };
    let norms = graph.steps.iter().filter(|s| is_token_norm(s)).count();
    if norms < 3 {
        return None;
    }
    // segment 0: patch embedding; 1..norms: the pre-norm sub-blocks; norms: the final norm
    let mut segments: Vec<Vec<Member>> = vec![Vec::new(); norms + 1];
    let mut seg = 0;
    for (step, members) in graph.steps.iter().zip(members_by_step(graph)) {
        if is_token_norm(step) {
            seg += 1;
        }
        segments[seg].extend(members);
    }
    let final_norm = segments.pop().unwrap_or_default();
    let mut it = segments.into_iter();
    let mut stages = vec![("patch_embed".to_string(), it.next().unwrap_or_default())];
    let subs: Vec<Vec<Member>> = it.collect();
    // attention + MLP per block when the sub-blocks pair up, else one stage each
    let per_block = if subs.len().is_multiple_of(2) { 2 } else { 1 };
    for (i, chunk) in subs.chunks(per_block).enumerate() {
        stages.push((format!("block{i}"), chunk.concat()));
    }
    stages.push(("norm".to_string(), final_norm));
    stages.retain(|(_, m)| !m.is_empty());
    Some(stages)
}

/// Named stages, input side first, each with the modules it owns.
pub(crate) fn split(graph: &Graph) -> Vec<(String, Vec<Member>)> {
    if let Some(stages) = split_transformer(graph) {
        return stages;
    }
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
