//! The graph kept beside the Burn modules: an ordered list of steps over numbered values.
//!
//! It is the one description of the network that both the interpreter (forward pass) and the
//! exporter (back to ONNX) read, so what runs and what is written can never disagree.
//! Weighted steps only hold an index into the backbone's module vectors; the trainable
//! parameters live in those modules, not here.

/// A tensor operand of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operand {
    /// A value computed at run time (graph input or a step's output), by slot.
    Value(usize),
    /// A constant of [`Graph::constants`], by index.
    Const(usize),
}

/// A constant tensor (scalars of activations, bias vectors of element-wise ops, …).
#[derive(Clone, Debug)]
pub(crate) struct Constant {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
    /// The exact values of an integer constant (shape arithmetic, indices): `f32` cannot
    /// hold every `i64`, and integer ops must not round.
    pub ints: Option<Vec<i64>>,
    /// The backbone parameter (`OnnxBackbone::params`) holding this constant, when it is
    /// trained: see [`Graph::mark_trainable_constants`].
    pub param: Option<usize>,
}

/// The highest rank a value may have (ShuffleNet's channel shuffle needs 5).
pub(crate) const MAX_RANK: usize = 6;

/// Padding `[top, left, bottom, right]`.
pub(crate) type Pads = [usize; 4];

/// One operation. Weighted operations point into the backbone's module vectors.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Conv {
        index: usize,
        pads: Pads,
    },
    BatchNorm {
        index: usize,
    },
    Linear {
        index: usize,
    },
    Relu,
    LeakyRelu(f32),
    Clip {
        min: Option<f32>,
        max: Option<f32>,
    },
    Sigmoid,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    Swish,
    Tanh,
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: Pads,
        dilation: [usize; 2],
        ceil: bool,
    },
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: Pads,
        count_include_pad: bool,
        ceil: bool,
    },
    GlobalAvgPool,
    Add,
    Sub,
    Mul,
    Div,
    Concat {
        axis: usize,
    },
    Flatten {
        axis: usize,
    },
    Reshape {
        shape: Vec<i64>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    /// Constant-mode padding, `(begin, end)` per axis.
    Pad {
        pads: Vec<(usize, usize)>,
        value: f32,
    },
    Identity,
    Softmax {
        axis: usize,
    },
    ReduceMean {
        axes: Vec<usize>,
        keepdims: bool,
    },
    ReduceSum {
        axes: Vec<usize>,
        keepdims: bool,
    },
    ReduceMax {
        axes: Vec<usize>,
        keepdims: bool,
    },
    /// `a ^ b`, element-wise with broadcasting.
    Pow,
    /// Repeats the input `repeats[i]` times along axis `i`.
    Tile {
        repeats: Vec<usize>,
    },
    /// Spatial resampling of a rank-4 NCHW value to the size `size` says.
    Resize {
        mode: ResizeMode,
        size: ResizeSize,
    },
    /// Removes `axes` (every axis of size 1 when empty: ONNX's Squeeze without axes).
    Squeeze {
        axes: Vec<usize>,
    },
    Unsqueeze {
        axes: Vec<usize>,
    },
    /// The input's shape (axes `start..end`), an integer vector computed at run time.
    Shape {
        start: usize,
        end: usize,
    },
    /// `Gather` along `axis` (input 1 holds the indices).
    Gather {
        axis: usize,
    },
    /// A cast; to an integer type when `to_int` (shape arithmetic), else to float.
    Cast {
        to_int: bool,
    },
    /// A strided slice with static bounds, per axis `(axis, start, end, step)`; bounds as
    /// ONNX gives them (negative from the end, clamped when run).
    Slice {
        ranges: Vec<(usize, i64, i64, i64)>,
    },
    /// A Slice whose bounds are computed at run time: inputs 1 and 2 are the starts and ends,
    /// then the axes (when `axes`) and the steps (when `steps`).
    SliceDynamic {
        axes: bool,
        steps: bool,
    },
    /// A tensor of one value, of a static shape or (when `None`) input 0's shape vector; of
    /// integers when `int` (shape arithmetic).
    ConstantOfShape {
        shape: Option<Vec<i64>>,
        value: f64,
        int: bool,
    },
    /// `start, start + delta, …` below `limit` (inputs 0, 1, 2), integers.
    Range,
    /// Element-wise equality, 1 where equal, 0 elsewhere.
    Equal,
    /// `cond ? a : b` element-wise (inputs cond, a, b).
    Where,
    /// Remainder; C's `fmod` (sign of the dividend) when `fmod`, else Python's `%`.
    Mod {
        fmod: bool,
    },
    /// A Reshape whose target shape (input 1) is computed at run time.
    ReshapeDynamic,
    /// Broadcast to a shape, static or (when `None`) input 1 computed at run time.
    Expand {
        shape: Option<Vec<i64>>,
    },
    /// A matrix product of two activations (batched over the leading axes).
    MatMul,
    Erf,
    /// Gelu; with the tanh approximation when `tanh`.
    Gelu {
        tanh: bool,
    },
    Sqrt,
    /// LayerNormalization over the axes from `axis` to the last, with the trainable scale and
    /// bias of the backbone's `layer_norms[index]`.
    LayerNorm {
        index: usize,
        axis: usize,
        epsilon: f64,
    },
}

/// How [`Op::Resize`] computes an output pixel, in ONNX's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResizeMode {
    /// `nearest`, `asymmetric` coordinates, `floor` rounding (what `torch.onnx.export`
    /// writes for `interpolate(mode="nearest")`).
    Nearest,
    /// `linear` over height and width: `half_pixel` / `pytorch_half_pixel` coordinates, or
    /// `align_corners`.
    Linear { align_corners: bool },
}

/// The output size of an [`Op::Resize`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ResizeSize {
    /// `[h, w]` scale factors: the output is `floor(input · scale)`, so a dynamic-size graph
    /// resizes any input.
    Scales([f32; 2]),
    /// A fixed `[h, w]`.
    Sizes([usize; 2]),
    /// Input 1 holds the `[N, C, H, W]` sizes, computed at run time (shape arithmetic).
    Computed,
}

impl Op {
    /// An element-wise activation (Identity included): the same shape, layout and channels.
    pub fn is_activation(&self) -> bool {
        matches!(
            self,
            Op::Relu
                | Op::LeakyRelu(_)
                | Op::Clip { .. }
                | Op::Sigmoid
                | Op::HardSigmoid { .. }
                | Op::HardSwish
                | Op::Swish
                | Op::Tanh
                | Op::Identity
        )
    }

    /// The factor by which this op divides the spatial resolution (1 when it does not).
    pub fn stride(&self, conv_strides: &[[usize; 2]]) -> usize {
        match self {
            Op::Conv { index, .. } => conv_strides[*index].iter().copied().max().unwrap_or(1),
            Op::MaxPool { stride, .. } | Op::AvgPool { stride, .. } => {
                stride.iter().copied().max().unwrap_or(1)
            }
            _ => 1,
        }
    }
}

/// An op applied to operands, producing one value.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    /// Node name (as onnx-ir named it).
    pub name: String,
    pub op: Op,
    pub inputs: Vec<Operand>,
    pub output: usize,
}

/// The executable graph: steps in topological order over value slots.
#[derive(Clone, Debug)]
pub(crate) struct Graph {
    pub steps: Vec<Step>,
    /// Name of every value slot.
    pub value_names: Vec<String>,
    /// Rank of every value slot (0 to [`MAX_RANK`]; 0 is a scalar of shape arithmetic).
    pub value_ranks: Vec<usize>,
    /// The image input's slot.
    pub input: usize,
    /// The slot whose value is the backbone's output.
    pub output: usize,
    pub constants: Vec<Constant>,
    /// Stride of each convolution, by conv index (for stage splitting and export).
    pub conv_strides: Vec<[usize; 2]>,
}

impl Graph {
    /// Keeps only the steps `output` depends on.
    pub fn prune_to(&mut self, output: usize) {
        let mut needed = vec![false; self.value_names.len()];
        needed[output] = true;
        let mut keep = vec![false; self.steps.len()];
        for (i, step) in self.steps.iter().enumerate().rev() {
            if needed[step.output] {
                keep[i] = true;
                for input in &step.inputs {
                    if let Operand::Value(v) = input {
                        needed[*v] = true;
                    }
                }
            }
        }
        let mut i = 0;
        self.steps.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        self.output = output;
    }

    /// Float constants of more than one element that an `Add`, `Mul` or `Concat` combines
    /// with an activation, or that an `Expand` broadcasts: the biases of MatMul layers, ConvNeXt's layer scale, a ViT's class
    /// token and position embedding. A PyTorch fine-tune trains them, so they become
    /// parameters; returns the indices of those constants, in step order. Not the constants
    /// of the image's preprocessing (element-wise steps on the input before any weighted
    /// layer: Keras' Rescaling and Normalization inside the model): those are fixed
    /// statistics, which Keras does not train either.
    pub fn trainable_constants(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut preprocessed = vec![false; self.value_names.len()];
        preprocessed[self.input] = true;
        for step in &self.steps {
            let elementwise =
                matches!(step.op, Op::Add | Op::Sub | Op::Mul | Op::Div) || step.op.is_activation();
            let mut values = step.inputs.iter().filter_map(|o| match o {
                Operand::Value(v) => Some(*v),
                Operand::Const(_) => None,
            });
            if elementwise && values.all(|v| preprocessed[v]) {
                preprocessed[step.output] = true;
                continue;
            }
            let combines = matches!(step.op, Op::Add | Op::Mul | Op::Concat { .. })
                && step.inputs.iter().any(|o| matches!(o, Operand::Value(_)));
            // a class token broadcast to the batch before its Concat
            let expands = matches!(step.op, Op::Expand { .. });
            if !(combines || expands) {
                continue;
            }
            for o in &step.inputs {
                if let Operand::Const(c) = o {
                    let k = &self.constants[*c];
                    if k.ints.is_none() && k.data.len() > 1 && !out.contains(c) {
                        out.push(*c);
                    }
                }
            }
        }
        out
    }

    /// The step producing `value`, if any.
    pub fn producer(&self, value: usize) -> Option<&Step> {
        self.steps.iter().find(|s| s.output == value)
    }
}
