//! [`OnnxBackbone`]: an ONNX CNN as a trainable grafter backbone, built at run time.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use burn::module::{Module, Param, ParamGroup, ParamId, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::{Device, Tensor, TensorData};
use grafter_core::feature_maps::Taps;
use grafter_core::{Backbone, FeatureInfo, FeatureMaps, Preprocess, Stage, panic_text};

use crate::cut::auto_cut;
use crate::graph::{Graph, Op};
use crate::import::{BnSpec, ConvSpec, Imported, LayerNormSpec, LinearSpec, import};
use crate::interpret::{Modules, Value, run};
use crate::parse::{CutName, parse};
use crate::stages::{Member, split, taps};
use crate::{CutPoint, OnnxBackboneOptions, OnnxError, Result};

/// What was cut off the original graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedClassifier {
    /// Number of nodes removed after the cut point.
    pub nodes: usize,
    /// Number of weights (and biases) those nodes held.
    pub params: usize,
}

/// The non-trainable description of an [`OnnxBackbone`].
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub graph: Graph,
    pub stages: Vec<(String, Vec<Member>)>,
    pub feature_channels: usize,
    pub preprocess: Preprocess,
    pub dropped: DroppedClassifier,
    pub cut_name: String,
    /// The multi-scale maps (`FeatureMaps`): value slot and description, input side first.
    pub taps: Vec<(usize, FeatureInfo)>,
}

/// Any ONNX CNN as a [`Backbone`]: convolutions, BatchNorms and fully connected layers are
/// Burn modules with trainable parameters; every other node is a tensor op run by an
/// interpreter over the graph, which is kept (without weights) beside the modules.
#[derive(Module, Debug)]
pub struct OnnxBackbone {
    /// Convolutions, in graph order.
    pub convs: Vec<Conv2d>,
    /// BatchNorms, in graph order.
    pub bns: Vec<BatchNorm>,
    /// Fully connected layers kept before the cut (a transformer's or ConvNeXt's MLPs), in
    /// graph order.
    pub linears: Vec<Linear>,
    /// LayerNormalizations, in graph order.
    pub layer_norms: Vec<LayerNorm>,
    /// Constant tensors trained like weights (flattened; shapes in the graph): MatMul biases,
    /// layer scales, class tokens, position embeddings.
    pub params: Vec<Param<Tensor<1>>>,
    #[module(skip)]
    pub(crate) meta: Arc<Meta>,
}

/// With a named cut point, only what computes it matters: a head the importer cannot run
/// (Keras' shape arithmetic before its Flatten, say) must not prevent using the trunk.
fn keep_ancestors_of_last_output(graph: &mut onnx_ir::OnnxGraph) {
    let Some(cut) = graph.outputs.last().cloned() else {
        return;
    };
    let mut needed: std::collections::HashSet<String> = [cut.name.clone()].into();
    let mut keep = vec![false; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate().rev() {
        if node.outputs().iter().any(|o| needed.contains(&o.name)) {
            keep[i] = true;
            needed.extend(node.inputs().iter().map(|a| a.name.clone()));
        }
    }
    let mut flags = keep.into_iter();
    graph.nodes.retain(|_| flags.next().unwrap_or(false));
    graph.outputs = vec![cut];
}

/// The largest probe input the loader builds (64 Mi values, 256 MB of f32): a graph whose
/// static input shape asks for more is refused instead of exhausting memory.
const MAX_PROBE_ELEMENTS: usize = 1 << 26;

impl OnnxBackbone {
    /// Parses the ONNX file at `path` with onnx-ir and builds the backbone on `device`.
    ///
    /// Fails without building anything on an unreadable file, a graph without a single
    /// `[N, 3, H, W]` float input, unsupported operators (all listed), or a cut point that
    /// is not a feature map.
    pub fn load(
        path: impl AsRef<Path>,
        options: &OnnxBackboneOptions,
        device: &Device,
    ) -> Result<Self> {
        let path = path.as_ref();
        let named = match &options.cut {
            CutPoint::Tensor(t) => Some(CutName::Tensor(t)),
            CutPoint::Node(n) => Some(CutName::Node(n)),
            _ => None,
        };
        let mut parsed = parse(path, named.as_ref())?;
        if named.is_some() {
            keep_ancestors_of_last_output(&mut parsed);
        }
        let imported = import(path, &parsed)?;
        Self::build(path, imported, options, device)
    }

    fn build(
        path: &Path,
        imported: Imported,
        options: &OnnxBackboneOptions,
        device: &Device,
    ) -> Result<Self> {
        let Imported {
            mut graph,
            convs,
            bns,
            linears,
            layer_norms,
            outputs,
            input_shape,
        } = imported;
        let bad = |reason: String| OnnxError::Graph {
            path: path.to_path_buf(),
            reason,
        };
        let cut = match &options.cut {
            CutPoint::Full => graph.output,
            CutPoint::Tensor(_) | CutPoint::Node(_) => *outputs.last().expect("one output"),
            CutPoint::Auto => auto_cut(&graph, |i| {
                let s = convs[i].weight.shape().to_vec();
                s.len() == 4 && s[2] == 1 && s[3] == 1
            })
            .ok_or_else(|| {
                bad("no feature map feeding a pooling → classifier chain was found; name the cut point".into())
            })?,
        };
        // The automatic cut may also be a transformer's class token [N, C].
        let fits = match options.cut {
            CutPoint::Full => true,
            CutPoint::Auto => [2, 4].contains(&graph.value_ranks[cut]),
            _ => graph.value_ranks[cut] == 4,
        };
        if !fits {
            return Err(bad(format!(
                "the cut point '{}' is not a feature map [N, C, h, w]",
                graph.value_names[cut]
            )));
        }
        let before = graph.steps.clone();
        graph.prune_to(cut);
        let kept: std::collections::HashSet<&str> =
            graph.steps.iter().map(|s| s.name.as_str()).collect();
        let mut dropped = DroppedClassifier {
            nodes: 0,
            params: 0,
        };
        for step in before.iter().filter(|s| !kept.contains(s.name.as_str())) {
            dropped.nodes += 1;
            dropped.params += match step.op {
                Op::Conv { index, .. } => {
                    convs[index].weight.num_elements()
                        + convs[index].bias.as_ref().map_or(0, Vec::len)
                }
                Op::BatchNorm { index } => 2 * bns[index].gamma.len(),
                Op::Linear { index } => {
                    linears[index].weight.num_elements()
                        + linears[index].bias.as_ref().map_or(0, Vec::len)
                }
                Op::LayerNorm { index, .. } => {
                    layer_norms[index].scale.len()
                        + layer_norms[index].bias.as_ref().map_or(0, Vec::len)
                }
                _ => 0,
            };
        }
        // Keep only the modules the remaining steps use, renumbered in order.
        let (mut conv_mods, mut bn_mods, mut lin_mods) = (Vec::new(), Vec::new(), Vec::new());
        let mut ln_mods = Vec::new();
        let mut strides = Vec::new();
        let mut channels_of_cut = None;
        for step in graph.steps.iter_mut() {
            match &mut step.op {
                Op::Conv { index, pads } => {
                    let spec = &convs[*index];
                    conv_mods.push(conv_module(spec, *pads, device));
                    strides.push(spec.stride);
                    *index = conv_mods.len() - 1;
                }
                Op::BatchNorm { index } => {
                    bn_mods.push(bn_module(&bns[*index], device));
                    *index = bn_mods.len() - 1;
                }
                Op::Linear { index } => {
                    lin_mods.push(linear_module(&linears[*index], device));
                    *index = lin_mods.len() - 1;
                }
                Op::LayerNorm { index, .. } => {
                    ln_mods.push(layer_norm_module(&layer_norms[*index], device));
                    *index = ln_mods.len() - 1;
                }
                _ => {}
            }
        }
        graph.conv_strides = strides;
        let mut params = Vec::new();
        for c in graph.trainable_constants() {
            let k = &mut graph.constants[c];
            let t = tensor1(&k.data, device);
            params.push(Param::initialized(ParamId::new(), t).set_require_grad(true));
            k.param = Some(params.len() - 1);
        }
        let mut backbone = Self {
            convs: conv_mods,
            bns: bn_mods,
            linears: lin_mods,
            layer_norms: ln_mods,
            params,
            meta: Arc::new(Meta {
                stages: split(&graph),
                cut_name: graph.value_names[cut].clone(),
                graph,
                feature_channels: 0,
                preprocess: options
                    .preprocess
                    .clone()
                    .unwrap_or_else(Preprocess::imagenet),
                dropped,
                taps: Vec::new(),
            }),
        };
        // The channel count of the cut: one tiny forward pass (shapes are not always static),
        // at the graph's own input size where it is static.
        let static_dim = |i: usize| input_shape.get(i).copied().flatten();
        // A channels-last input `[N, H, W, 3]` (its transpose absorbed) has its size in axes 1, 2.
        let channels_last = static_dim(3) == Some(3) && static_dim(1) != Some(3);
        let (ah, aw) = if channels_last { (1, 2) } else { (2, 3) };
        // Without a preprocess given, a graph declaring its input size is fed that size.
        if let (None, Some(sh), Some(sw)) = (&options.preprocess, static_dim(ah), static_dim(aw)) {
            Arc::make_mut(&mut backbone.meta).preprocess.input_size = [sh, sw];
        }
        let [ph, pw] = backbone.meta.preprocess.input_size;
        let (h, w) = (
            static_dim(ah).unwrap_or(ph.max(32)),
            static_dim(aw).unwrap_or(pw.max(32)),
        );
        // A graph exported with a fixed batch is probed at another batch, so that a shape
        // baked with the export batch (and not rewritten) fails here, not in training.
        let batch = static_dim(0).map_or(1, |b| b.saturating_add(1));
        let batch_hint = match static_dim(0) {
            Some(b) => format!(
                " (the graph was exported with a fixed batch of {b}: re-export with a dynamic batch)"
            ),
            None => String::new(),
        };
        // The same pass measures the multi-scale maps' channels.
        let graph = &backbone.meta.graph;
        let candidates = taps(graph);
        let wanted: Vec<usize> = candidates
            .iter()
            .map(|&(v, _)| v)
            .chain([graph.output])
            .collect();
        let mut outs = backbone
            .probe([batch, 3, h, w], &wanted, device)
            .map_err(|e| bad(format!("{e} (graph input {input_shape:?}){batch_hint}")))?;
        let out = outs.pop().expect("the output was asked for");
        let taps = candidates
            .into_iter()
            .zip(outs)
            .filter(|(_, map)| map.shape().len() == 4)
            .map(|((v, reduction), map)| {
                let info = FeatureInfo {
                    name: backbone.meta.graph.value_names[v].clone(),
                    channels: map.shape()[1],
                    reduction,
                };
                (v, info)
            })
            .collect();
        Arc::make_mut(&mut backbone.meta).taps = taps;
        if out.shape().first() != Some(&batch) {
            return Err(bad(format!(
                "the probe forward pass at batch {batch} gave an output of shape {:?}: the graph computes a fixed batch{batch_hint}",
                out.shape()
            )));
        }
        // Training and prediction feed the preprocess's size: a graph that bakes its input
        // size (a ViT's position embedding, a Reshape of a static export) must fail here.
        if [ph, pw] != [h, w] {
            backbone
                .probe([batch, 3, ph, pw], &[backbone.meta.graph.output], device)
                .map_err(|e| {
                    bad(format!(
                        "the graph does not run at the preprocess's input size {ph}×{pw} \
                         (it runs at {h}×{w}): {e}; give a Preprocess of size {h}×{w}, or \
                         re-export the graph with a dynamic height and width"
                    ))
                })?;
        }
        channels_of_cut.get_or_insert(out.shape().get(1).copied().unwrap_or(1));
        Arc::make_mut(&mut backbone.meta).feature_channels = channels_of_cut.unwrap_or(1);
        let meta = &backbone.meta;
        log::info!(
            "{}: backbone of {} nodes cut at '{}' ({} channels, {} stages); dropped classifier: {} nodes, {} parameters",
            path.display(),
            meta.graph.steps.len(),
            meta.cut_name,
            meta.feature_channels,
            meta.stages.len(),
            meta.dropped.nodes,
            meta.dropped.params
        );
        Ok(backbone)
    }

    /// A forward pass of zeros of `shape` at load, returning the `wanted` values; a panic
    /// (a shape that only fails when run) is an error message, and so is a probe larger than
    /// [`MAX_PROBE_ELEMENTS`].
    fn probe(
        &self,
        shape: [usize; 4],
        wanted: &[usize],
        device: &Device,
    ) -> std::result::Result<Vec<Value>, String> {
        let [batch, _, h, w] = shape;
        let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if h == 0 || w == 0 || elements.is_none_or(|n| n > MAX_PROBE_ELEMENTS) {
            return Err(format!(
                "a probe of batch {batch} at {h}×{w} is not an image size this loader runs \
                 (at most {MAX_PROBE_ELEMENTS} values)"
            ));
        }
        let probe = Tensor::<4>::zeros(shape, device);
        // Load-time checks refuse every malformed attribute they know of; a shape that only
        // fails when run (a Reshape baking another batch size) must still not crash the
        // caller, so a panic of the probe becomes a typed error naming the file.
        catch_unwind(AssertUnwindSafe(|| self.forward_values(probe, wanted))).map_err(|payload| {
            format!(
                "the probe forward pass (batch {batch}, {h}×{w}) failed: {}",
                panic_text(payload.as_ref())
            )
        })
    }

    /// Runs the kept graph, returning its output with its true rank.
    pub fn forward_value(&self, images: Tensor<4>) -> Value {
        self.forward_values(images, &[self.meta.graph.output])
            .remove(0)
    }

    /// Runs the kept graph, returning the values in slots `wanted`.
    fn forward_values(&self, images: Tensor<4>, wanted: &[usize]) -> Vec<Value> {
        let m = Modules {
            convs: &self.convs,
            bns: &self.bns,
            linears: &self.linears,
            layer_norms: &self.layer_norms,
            params: &self.params,
        };
        run(&self.meta.graph, &m, images, wanted)
    }

    /// The name (as onnx-ir renamed it) of the value the backbone ends at.
    pub fn cut_tensor(&self) -> &str {
        &self.meta.cut_name
    }

    /// What was cut off the original graph (the pretrained classifier).
    pub fn dropped_classifier(&self) -> &DroppedClassifier {
        &self.meta.dropped
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.meta
    }
}

/// The maps found at load (`stages.rs`'s `taps`): at each resolution, the last activation
/// every later node depends on — for a torchvision ResNet the stem's ReLU and the four stage
/// outputs, named by their ONNX values. A transformer offers none.
impl FeatureMaps for OnnxBackbone {
    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.meta
            .taps
            .iter()
            .map(|(_, info)| info.clone())
            .collect()
    }

    fn forward_feature_maps(
        &self,
        images: Tensor<4>,
        indices: &[usize],
    ) -> grafter_core::Result<Vec<Tensor<4>>> {
        Taps::new(indices, self.meta.taps.len())?;
        let wanted: Vec<usize> = indices.iter().map(|&i| self.meta.taps[i].0).collect();
        Ok(self
            .forward_values(images, &wanted)
            .into_iter()
            .map(Value::into_rank4)
            .collect())
    }
}

impl Backbone for OnnxBackbone {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        let v = self.forward_value(images);
        if v.rank == 4 {
            v.into_rank4()
        } else {
            let t = v.into_rank2();
            let [n, c] = t.dims();
            t.reshape([n, c, 1, 1])
        }
    }

    fn feature_channels(&self) -> usize {
        self.meta.feature_channels
    }

    fn stages(&self) -> Vec<Stage> {
        self.meta
            .stages
            .iter()
            .map(|(name, members)| {
                let groups = members.iter().map(|m| match *m {
                    Member::Conv(i) => ParamGroup::ids_from_module(self.convs[i].clone()),
                    Member::BatchNorm(i) => ParamGroup::ids_from_module(self.bns[i].clone()),
                    Member::Linear(i) => ParamGroup::ids_from_module(self.linears[i].clone()),
                    Member::Param(i) => ParamGroup::ids_from_module(self.params[i].clone()),
                    Member::LayerNorm(i) => {
                        ParamGroup::ids_from_module(self.layer_norms[i].clone())
                    }
                });
                Stage::of_many(name.clone(), groups)
            })
            .collect()
    }

    fn preprocess(&self) -> Preprocess {
        self.meta.preprocess.clone()
    }
}

fn tensor1(v: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
}

fn conv_module(spec: &ConvSpec, pads: [usize; 4], device: &Device) -> Conv2d {
    let s = spec.weight.shape().to_vec();
    let (out, in_per_group, kh, kw) = (s[0], s[1], s[2], s[3]);
    let mut conv = Conv2dConfig::new([in_per_group * spec.groups, out], [kh, kw])
        .with_stride(spec.stride)
        .with_dilation(spec.dilation)
        .with_groups(spec.groups)
        .with_padding(PaddingConfig2d::Explicit(
            pads[0], pads[1], pads[2], pads[3],
        ))
        .with_bias(spec.bias.is_some())
        .init(device);
    let w = Tensor::<4>::from_data(spec.weight.clone(), device);
    conv.weight = Param::initialized(conv.weight.id, w).set_require_grad(true);
    if let (Some(bias), Some(b)) = (conv.bias.as_mut(), spec.bias.as_ref()) {
        *bias = Param::initialized(bias.id, tensor1(b, device)).set_require_grad(true);
    }
    conv
}

fn bn_module(spec: &BnSpec, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(spec.gamma.len())
        .with_epsilon(spec.epsilon)
        .with_momentum(1.0 - spec.momentum)
        .init(device);
    bn.gamma = Param::initialized(bn.gamma.id, tensor1(&spec.gamma, device)).set_require_grad(true);
    bn.beta = Param::initialized(bn.beta.id, tensor1(&spec.beta, device)).set_require_grad(true);
    bn.running_mean = RunningState::new(tensor1(&spec.mean, device));
    bn.running_var = RunningState::new(tensor1(&spec.var, device));
    bn
}

fn layer_norm_module(spec: &LayerNormSpec, device: &Device) -> LayerNorm {
    let mut ln = LayerNormConfig::new(spec.scale.len())
        .with_epsilon(spec.epsilon)
        .with_bias(spec.bias.is_some())
        .init(device);
    ln.gamma = Param::initialized(ln.gamma.id, tensor1(&spec.scale, device)).set_require_grad(true);
    if let (Some(beta), Some(b)) = (ln.beta.as_mut(), spec.bias.as_ref()) {
        *beta = Param::initialized(beta.id, tensor1(b, device)).set_require_grad(true);
    }
    ln
}

fn linear_module(spec: &LinearSpec, device: &Device) -> Linear {
    let s = spec.weight.shape().to_vec();
    let mut linear = LinearConfig::new(s[0], s[1])
        .with_bias(spec.bias.is_some())
        .init(device);
    let w = Tensor::<2>::from_data(spec.weight.clone(), device);
    linear.weight = Param::initialized(linear.weight.id, w).set_require_grad(true);
    if let (Some(bias), Some(b)) = (linear.bias.as_mut(), spec.bias.as_ref()) {
        *bias = Param::initialized(bias.id, tensor1(b, device)).set_require_grad(true);
    }
    linear
}
