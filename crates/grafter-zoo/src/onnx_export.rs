//! ONNX export of the zoo's typed backbones ([`ResNet`], [`Vgg`]) and of VGG's original
//! classifier ([`VggHead`]), for grafter-onnx's
//! [`export_classifier`](grafter_onnx::export_classifier).
//!
//! The nodes mirror the Burn `forward` code one to one, each layer written from the module's
//! own fields by [`OnnxEmitter`], so ResNet v1 (`stride_in_1x1`) and v1.5 need no special
//! case. BatchNorms become `BatchNormalization` nodes in inference mode (not folded).

use grafter_onnx::{ExportError, OnnxAttr, OnnxBackboneExport, OnnxEmitter, OnnxHead};

use crate::resnet::{Block, ResNet};
use crate::vgg::Vgg;
use crate::vgg_head::VggHead;

fn emit_block(e: &mut OnnxEmitter, block: &Block, x: &str) -> Result<String, ExportError> {
    let identity = match &block.downsample {
        Some(d) => {
            let c = e.conv2d(&d.conv, x)?;
            e.batch_norm(&d.bn, &c)
        }
        None => x.to_string(),
    };
    let y = e.conv2d(&block.conv1, x)?;
    let y = e.batch_norm(&block.bn1, &y);
    let y = e.unary("Relu", &y);
    let y = e.conv2d(&block.conv2, &y)?;
    let mut y = e.batch_norm(&block.bn2, &y);
    match (&block.conv3, &block.bn3) {
        (Some(c3), Some(b3)) => {
            let r = e.unary("Relu", &y);
            let c = e.conv2d(c3, &r)?;
            y = e.batch_norm(b3, &c);
        }
        (None, None) => {}
        _ => {
            return Err(ExportError::new(
                "a ResNet block has conv3 without bn3 (or the reverse)",
            ));
        }
    }
    let sum = e.fresh("add");
    e.node("Add", &[&y, &identity], &sum, vec![]);
    Ok(e.unary("Relu", &sum))
}

impl OnnxBackboneExport for ResNet {
    fn emit_backbone(&self, e: &mut OnnxEmitter, input: &str) -> Result<String, ExportError> {
        let x = e.conv2d(&self.conv1, input)?;
        let x = e.batch_norm(&self.bn1, &x);
        let x = e.unary("Relu", &x);
        let mut x = e.max_pool2d(&self.maxpool, &x)?;
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                x = emit_block(e, block, &x)?;
            }
        }
        Ok(x)
    }
}

impl OnnxBackboneExport for Vgg {
    fn emit_backbone(&self, e: &mut OnnxEmitter, input: &str) -> Result<String, ExportError> {
        let mut x = input.to_string();
        for block in &self.blocks {
            for l in &block.layers {
                x = e.conv2d(&l.conv, &x)?;
                if let Some(bn) = &l.bn {
                    x = e.batch_norm(bn, &x);
                }
                x = e.unary("Relu", &x);
            }
            x = e.max_pool2d(&block.pool, &x)?;
        }
        Ok(x)
    }
}

/// Adaptive average pooling of `x` along `axis` (2 or 3) to `bins` bins, for any (dynamic)
/// input size: bin `i` averages `[floor(i·n/bins), ceil((i+1)·n/bins))`, as PyTorch and Burn.
/// Pooling the two axes one after the other equals pooling the rectangles, since every row
/// of a rectangle has the same length.
fn emit_adaptive_avg_axis(e: &mut OnnxEmitter, x: &str, axis: usize, bins: usize) -> String {
    let shape = e.fresh("shape");
    e.node("Shape", &[x], &shape, vec![]);
    let index = e.ints("axis", &[axis as i64]);
    let n = e.fresh("size");
    e.node(
        "Gather",
        &[&shape, &index],
        &n,
        vec![("axis", OnnxAttr::Int(0))],
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
            vec![
                ("axes", OnnxAttr::Ints(vec![axis as i64])),
                ("keepdims", OnnxAttr::Int(1)),
            ],
        );
        parts.push(mean);
    }
    let out = e.fresh("adaptive_avg");
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    e.node(
        "Concat",
        &refs,
        &out,
        vec![("axis", OnnxAttr::Int(axis as i64))],
    );
    out
}

impl OnnxHead for VggHead {
    /// Adaptive average pool to 7×7 (dynamic input size), flatten, then
    /// Gemm → Relu → Gemm → Relu → Gemm; dropout is the identity at inference.
    fn emit_onnx(&self, e: &mut OnnxEmitter, features: &str) -> String {
        let [oh, ow] = self.avgpool.output_size;
        let x = emit_adaptive_avg_axis(e, features, 2, oh);
        let x = emit_adaptive_avg_axis(e, &x, 3, ow);
        let flat = e.fresh("flat");
        e.node("Flatten", &[&x], &flat, vec![("axis", OnnxAttr::Int(1))]);
        let x = e.linear(&self.fc1, &flat);
        let x = e.unary("Relu", &x);
        let x = e.linear(&self.fc2, &x);
        let x = e.unary("Relu", &x);
        e.linear(&self.fc3, &x)
    }
}
