//! [`OnnxBackboneOptions`]: where to cut the graph and how to prepare its input.

use grafter_core::Preprocess;

/// Where the imported graph ends and the grafted head begins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CutPoint {
    /// The feature map that feeds the graph's final pooling / flatten → classifier chain
    /// (a final 1×1 classifier convolution, as in SqueezeNet, is dropped as well).
    #[default]
    Auto,
    /// A tensor (value) name of the original ONNX file.
    Tensor(String),
    /// A node name of the original ONNX file: the cut is its first output.
    Node(String),
    /// Keep the whole graph (used to check the import against the original model); the
    /// backbone's "features" are then the graph's first output.
    Full,
}

/// How [`OnnxBackbone::load`](crate::OnnxBackbone::load) builds the backbone.
#[derive(Clone, Debug, Default)]
pub struct OnnxBackboneOptions {
    /// Where to cut.
    pub cut: CutPoint,
    /// Input preparation; ImageNet's when `None` (what torchvision-style exports expect).
    pub preprocess: Option<Preprocess>,
}

impl OnnxBackboneOptions {
    /// Cuts at `cut`.
    pub fn with_cut(mut self, cut: CutPoint) -> Self {
        self.cut = cut;
        self
    }

    /// Uses `preprocess` instead of ImageNet's.
    pub fn with_preprocess(mut self, preprocess: Preprocess) -> Self {
        self.preprocess = Some(preprocess);
        self
    }
}
