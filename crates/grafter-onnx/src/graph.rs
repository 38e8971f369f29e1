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
}

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
    Squeeze {
        axes: Vec<usize>,
    },
    Unsqueeze {
        axes: Vec<usize>,
    },
}

impl Op {
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
    /// Rank of every value slot (1 to 4).
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

    /// The step producing `value`, if any.
    pub fn producer(&self, value: usize) -> Option<&Step> {
        self.steps.iter().find(|s| s.output == value)
    }
}
