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

/// Every value's level: the product of the strides on its way from the input (the largest,
/// where branches meet).
fn levels(graph: &Graph) -> Vec<usize> {
    let mut level = vec![1usize; graph.value_names.len()];
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
        level[step.output] = input_level.saturating_mul(step.op.stride(&graph.conv_strides));
    }
    level
}

/// Whether `op` maps `[N, C, H, W]` activations to `[N, C', H', W']` ones in the same layout
/// (not a transpose to channels-last, a flatten or a global pooling). A Reshape counts where it
/// gives rank 4: the end of ShuffleNet's channel shuffle.
fn keeps_layout(op: &Op) -> bool {
    op.is_activation()
        || matches!(
            op,
            Op::Conv { .. }
                | Op::BatchNorm { .. }
                | Op::MaxPool { .. }
                | Op::AvgPool { .. }
                | Op::Add
                | Op::Sub
                | Op::Mul
                | Op::Div
                | Op::Concat { axis: 1 }
                | Op::Reshape { .. }
        )
}

/// The multi-scale feature maps (timm's `features_only`), input side first, as `(value,
/// level)`: at each level where a convolution runs (and the cut's), the last rank-4 value that every later
/// step depends on alone (no branch bypasses it) and that an op keeping the layout made — a
/// ResNet's stem activation and stage outputs, a VGG's last activation before each pooling, a
/// bottleneck's output rather than its first 1×1 (the shortcut bypasses that). In an
/// inverted-residual network (MobileNet, EfficientNet) that is the expansion of the next
/// stage's first block, wider than timm's block output (what SSDLite taps). None for a
/// transformer, which keeps one resolution.
pub(crate) fn taps(graph: &Graph) -> Vec<(usize, usize)> {
    if split_transformer(graph).is_some() {
        return Vec::new();
    }
    let level = levels(graph);
    let mut last_use: Vec<Option<usize>> = vec![None; graph.value_names.len()];
    for (k, step) in graph.steps.iter().enumerate() {
        for o in &step.inputs {
            if let Operand::Value(v) = o {
                last_use[*v] = Some(k);
            }
        }
    }
    // Activations (rank ≥ 2) still needed after step k; shape arithmetic does not count.
    let needed_after = |v: usize, k: usize| {
        graph.value_ranks[v] >= 2 && (v == graph.output || last_use[v].is_some_and(|u| u > k))
    };
    let mut live = std::collections::HashSet::from([graph.input]);
    let mut taps: Vec<(usize, usize)> = Vec::new();
    // Levels with maps worth tapping: where a convolution runs, and the cut's (a VGG's last
    // pooling runs no convolution).
    let mut conv_levels = std::collections::HashSet::from([level[graph.output]]);
    for (k, step) in graph.steps.iter().enumerate() {
        live.retain(|&v| needed_after(v, k));
        if needed_after(step.output, k) {
            live.insert(step.output);
        }
        let lvl = level[step.output];
        if matches!(step.op, Op::Conv { .. }) {
            conv_levels.insert(lvl);
        }
        let alone = live.len() == 1 && live.contains(&step.output);
        if !alone || graph.value_ranks[step.output] != 4 || !keeps_layout(&step.op) {
            continue;
        }
        match taps.iter_mut().find(|(_, l)| *l == lvl) {
            Some(tap) => tap.0 = step.output,
            None => taps.push((step.output, lvl)),
        }
    }
    taps.retain(|(_, l)| conv_levels.contains(l));
    taps.sort_by_key(|&(_, l)| l);
    taps
}

/// Named stages, input side first, each with the modules it owns.
pub(crate) fn split(graph: &Graph) -> Vec<(String, Vec<Member>)> {
    if let Some(stages) = split_transformer(graph) {
        return stages;
    }
    let level = levels(graph);
    let mut by_level: Vec<(usize, Vec<Member>)> = Vec::new();
    for step in &graph.steps {
        let lvl = level[step.output];
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
