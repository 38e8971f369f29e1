//! Resize, Tile and Pow: the nodes of feature-pyramid style graphs (upsampling a coarse map
//! to add it to a finer one) and of decomposed normalisations (`Pow(x, 2)`).

use onnx_ir::Node;
use onnx_ir::resize::{
    CoordinateTransformMode, NearestMode, ResizeConfig, ResizeScales, ResizeSizes,
};

use super::Builder;
use crate::Result;
use crate::graph::{Op, ResizeMode, ResizeSize};

impl Builder<'_> {
    /// Translates `node` when it is one of this file's kinds; `None` otherwise.
    pub(super) fn resample_node(&mut self, node: &Node) -> Option<Result<()>> {
        Some(match node {
            Node::Pow(_) => self.step(node, Op::Pow, &[0, 1]),
            Node::Tile(n) => {
                let repeats = match &n.config.repeats {
                    onnx_ir::tile::TileInput::Static(r) => Some(r.clone()),
                    onnx_ir::tile::TileInput::Runtime(r) => self
                        .static_input(node, r.input_index)
                        .and_then(|v| v.iter().map(|&d| usize::try_from(d).ok()).collect()),
                };
                match repeats {
                    Some(repeats) if repeats.len() == Self::input_rank(node, 0) => {
                        self.step(node, Op::Tile { repeats }, &[0])
                    }
                    Some(repeats) => Err(self.graph_err(format!(
                        "node {}: Tile repeats {repeats:?} do not match its input's rank {}",
                        n.name,
                        Self::input_rank(node, 0)
                    ))),
                    None => {
                        self.skip(node, "Tile (repeats computed at run time)");
                        Ok(())
                    }
                }
            }
            // Upsample (opset 7-9) is Resize with scales, asymmetric coordinates and floor
            // rounding: onnx-ir reads it into Resize's configuration
            Node::Resize(n) | Node::Upsample(n) => {
                match resize_of(&n.config, Self::input_rank(node, 0)) {
                    Ok((mode, size)) => {
                        let inputs = match (&size, &n.config.sizes) {
                            (ResizeSize::Computed, Some(ResizeSizes::Runtime(r))) => {
                                vec![0, r.input_index]
                            }
                            _ => vec![0],
                        };
                        self.step(node, Op::Resize { mode, size }, &inputs)
                    }
                    Err(why) => {
                        self.skip(node, format!("{:?} ({why})", node.node_type()));
                        Ok(())
                    }
                }
            }
            _ => return None,
        })
    }
}

/// The mode and output size of a Resize grafter runs, or why it does not.
fn resize_of(
    c: &ResizeConfig,
    rank: usize,
) -> std::result::Result<(ResizeMode, ResizeSize), String> {
    if rank != 4 {
        return Err(format!("a rank-{rank} input; only NCHW images"));
    }
    if c.antialias != 0 {
        return Err("antialias".into());
    }
    let mode = match (c.mode.clone(), c.coordinate_transformation_mode.clone()) {
        (onnx_ir::resize::ResizeMode::Nearest, CoordinateTransformMode::Asymmetric)
            if c.nearest_mode == NearestMode::Floor =>
        {
            ResizeMode::Nearest
        }
        (
            onnx_ir::resize::ResizeMode::Linear,
            CoordinateTransformMode::HalfPixel | CoordinateTransformMode::PytorchHalfPixel,
        ) => ResizeMode::Linear {
            align_corners: false,
        },
        (onnx_ir::resize::ResizeMode::Linear, CoordinateTransformMode::AlignCorners) => {
            ResizeMode::Linear {
                align_corners: true,
            }
        }
        (mode, coords) => {
            return Err(format!(
                "mode {mode:?} with {coords:?} coordinates and {:?} rounding",
                c.nearest_mode
            ));
        }
    };
    // onnx-ir keeps the height and width of static scales and sizes (batch and channels
    // are not resized)
    let size = match (&c.scales, &c.sizes) {
        (Some(ResizeScales::Static(s)), _) if !s.is_empty() => match s[..] {
            [h, w] if h > 0.0 && w > 0.0 => ResizeSize::Scales([h, w]),
            _ => {
                return Err(format!(
                    "scales {s:?}: only positive height and width scales"
                ));
            }
        },
        (_, Some(ResizeSizes::Static(s))) if s.len() == 2 => ResizeSize::Sizes([s[0], s[1]]),
        (_, Some(ResizeSizes::Runtime(_))) => ResizeSize::Computed,
        (Some(ResizeScales::Runtime(_)), _) => {
            return Err("scales computed at run time".into());
        }
        _ => return Err("neither scales nor sizes for height and width".into()),
    };
    Ok((mode, size))
}
