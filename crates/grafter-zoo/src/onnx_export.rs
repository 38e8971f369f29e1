//! ONNX export of the zoo's typed backbones ([`ResNet`], [`Vgg`]) and of VGG's original
//! classifier ([`VggClassifier`]).
//!
//! The nodes mirror the Burn `forward` code one to one: every Conv2d, MaxPool2d and
//! BatchNorm is written from the module's own fields (kernel, strides, padding, dilation,
//! groups; running statistics), so ResNet v1 (`stride_in_1x1`) and v1.5 need no special
//! case. BatchNorms become `BatchNormalization` nodes in inference mode (not folded).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use grafter_zoo::resnet::Block;
use grafter_zoo::{ResNet, Vgg, VggClassifier};

use crate::export::{HeadEmitter, OnnxBackboneExport, OnnxHead, emit_bn, emit_linear, host};
use crate::proto::{Attr, Emitter};

fn ints(v: &[usize]) -> Attr {
    Attr::Ints(v.iter().map(|&d| d as i64).collect())
}

/// ONNX `pads` (`[top, left, bottom, right]`) of a Burn 2-D padding.
fn pads(p: &PaddingConfig2d, what: &str) -> Result<[usize; 4], String> {
    match p {
        PaddingConfig2d::Valid => Ok([0; 4]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => Ok([*top, *left, *bottom, *right]),
        PaddingConfig2d::Same => Err(format!(
            "{what}: `Same` padding depends on the input size and is not exported"
        )),
    }
}

fn emit_conv(e: &mut Emitter, conv: &Conv2d, x: &str) -> Result<String, String> {
    let (wd, w) = host(&conv.weight);
    let wname = e.floats("W", &wd, &w);
    let mut inputs = vec![x.to_string(), wname];
    if let Some(bias) = &conv.bias {
        let (bd, bv) = host(bias);
        inputs.push(e.floats("B", &bd, &bv));
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let out = e.fresh("conv");
    e.node(
        "Conv",
        &refs,
        &out,
        vec![
            ("kernel_shape", ints(&wd[2..])),
            ("strides", ints(&conv.stride)),
            ("pads", ints(&pads(&conv.padding, "Conv2d")?)),
            ("dilations", ints(&conv.dilation)),
            ("group", Attr::Int(conv.groups as i64)),
        ],
    );
    Ok(out)
}

fn emit_maxpool(e: &mut Emitter, pool: &MaxPool2d, x: &str) -> Result<String, String> {
    let out = e.fresh("maxpool");
    e.node(
        "MaxPool",
        &[x],
        &out,
        vec![
            ("kernel_shape", ints(&pool.kernel_size)),
            ("strides", ints(&pool.stride)),
            ("pads", ints(&pads(&pool.padding, "MaxPool2d")?)),
            ("dilations", ints(&pool.dilation)),
            ("ceil_mode", Attr::Int(pool.ceil_mode as i64)),
        ],
    );
    Ok(out)
}

fn emit_unary(e: &mut Emitter, op: &str, x: &str) -> String {
    let out = e.fresh(&op.to_lowercase());
    e.node(op, &[x], &out, vec![]);
    out
}

fn emit_block(e: &mut Emitter, block: &Block, x: &str) -> Result<String, String> {
    let identity = match &block.downsample {
        Some(d) => {
            let c = emit_conv(e, &d.conv, x)?;
            emit_bn(e, &d.bn, &c, None)
        }
        None => x.to_string(),
    };
    let y = emit_conv(e, &block.conv1, x)?;
    let y = emit_bn(e, &block.bn1, &y, None);
    let y = emit_unary(e, "Relu", &y);
    let y = emit_conv(e, &block.conv2, &y)?;
    let mut y = emit_bn(e, &block.bn2, &y, None);
    match (&block.conv3, &block.bn3) {
        (Some(c3), Some(b3)) => {
            let r = emit_unary(e, "Relu", &y);
            let c = emit_conv(e, c3, &r)?;
            y = emit_bn(e, b3, &c, None);
        }
        (None, None) => {}
        _ => return Err("a ResNet block has conv3 without bn3 (or the reverse)".into()),
    }
    let sum = e.fresh("add");
    e.node("Add", &[&y, &identity], &sum, vec![]);
    Ok(emit_unary(e, "Relu", &sum))
}

impl OnnxBackboneExport for ResNet {
    fn emit_backbone(&self, e: &mut HeadEmitter, input: &str) -> Result<String, String> {
        let e = &mut e.0;
        let x = emit_conv(e, &self.conv1, input)?;
        let x = emit_bn(e, &self.bn1, &x, None);
        let x = emit_unary(e, "Relu", &x);
        let mut x = emit_maxpool(e, &self.maxpool, &x)?;
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                x = emit_block(e, block, &x)?;
            }
        }
        Ok(x)
    }
}

impl OnnxBackboneExport for Vgg {
    fn emit_backbone(&self, e: &mut HeadEmitter, input: &str) -> Result<String, String> {
        let e = &mut e.0;
        let mut x = input.to_string();
        for block in &self.blocks {
            for l in &block.layers {
                x = emit_conv(e, &l.conv, &x)?;
                if let Some(bn) = &l.bn {
                    x = emit_bn(e, bn, &x, None);
                }
                x = emit_unary(e, "Relu", &x);
            }
            x = emit_maxpool(e, &block.pool, &x)?;
        }
        Ok(x)
    }
}

/// Adaptive average pooling of `x` along `axis` (2 or 3) to `bins` bins, for any (dynamic)
/// input size: bin `i` averages `[floor(i·n/bins), ceil((i+1)·n/bins))`, as PyTorch and Burn.
/// Pooling the two axes one after the other equals pooling the rectangles, since every row
/// of a rectangle has the same length.
fn emit_adaptive_avg_axis(e: &mut Emitter, x: &str, axis: usize, bins: usize) -> String {
    let shape = e.fresh("shape");
    e.node("Shape", &[x], &shape, vec![]);
    let index = e.ints("axis", &[axis as i64]);
    let n = e.fresh("size");
    e.node(
        "Gather",
        &[&shape, &index],
        &n,
        vec![("axis", Attr::Int(0))],
    );
    let axes = e.ints("axes", &[axis as i64]);
    let divisor = e.ints("bins", &[bins as i64]);
    let round_up = e.ints("bins_minus_1", &[bins as i64 - 1]);
    let mut parts = Vec::with_capacity(bins);
    // n·k for k = 0..=bins, each computed once.
    let mut n_times = Vec::with_capacity(bins + 1);
    for k in 0..=bins {
        let kname = e.ints("k", &[k as i64]);
        let prod = e.fresh("n_times_k");
        e.node("Mul", &[&n, &kname], &prod, vec![]);
        n_times.push(prod);
    }
    for i in 0..bins {
        let start = e.fresh("bin_start");
        e.node("Div", &[&n_times[i], &divisor], &start, vec![]);
        let up = e.fresh("bin_end_up");
        e.node("Add", &[&n_times[i + 1], &round_up], &up, vec![]);
        let end = e.fresh("bin_end");
        e.node("Div", &[&up, &divisor], &end, vec![]);
        let slice = e.fresh("bin");
        e.node("Slice", &[x, &start, &end, &axes], &slice, vec![]);
        let mean = e.fresh("bin_mean");
        e.node(
            "ReduceMean",
            &[&slice],
            &mean,
            vec![("axes", ints(&[axis])), ("keepdims", Attr::Int(1))],
        );
        parts.push(mean);
    }
    let out = e.fresh("adaptive_avg");
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    e.node(
        "Concat",
        &refs,
        &out,
        vec![("axis", Attr::Int(axis as i64))],
    );
    out
}

impl OnnxHead for VggClassifier {
    /// Adaptive average pool to 7×7 (dynamic input size), flatten, then
    /// Gemm → Relu → Gemm → Relu → Gemm; dropout is the identity at inference.
    fn emit_onnx(&self, e: &mut HeadEmitter, features: &str) -> String {
        let e = &mut e.0;
        let [oh, ow] = self.avgpool.output_size;
        let x = emit_adaptive_avg_axis(e, features, 2, oh);
        let x = emit_adaptive_avg_axis(e, &x, 3, ow);
        let flat = e.fresh("flat");
        e.node("Flatten", &[&x], &flat, vec![("axis", Attr::Int(1))]);
        let x = emit_linear(e, &self.fc1, &flat);
        let x = emit_unary(e, "Relu", &x);
        let x = emit_linear(e, &self.fc2, &x);
        let x = emit_unary(e, "Relu", &x);
        emit_linear(e, &self.fc3, &x)
    }
}
