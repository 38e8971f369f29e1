//! Reading an ONNX file with onnx-ir, without ever letting a bad file crash the caller.
//!
//! onnx-ir renames every node and value, so a user-named cut point is located by appending
//! that tensor to the graph's outputs *before* parsing: onnx-ir keeps the outputs in order,
//! so the last output of the parsed graph is the user's tensor, whatever it is called now.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use onnx_ir::{Message, ModelProto, OnnxGraph, OnnxGraphBuilder, ValueInfoProto};

use crate::{OnnxError, Result};

/// Parses `path`; with `extra_output`, that tensor (or node's first output) is appended to the
/// graph outputs first.
pub(crate) fn parse(path: &Path, extra_output: Option<&CutName>) -> Result<OnnxGraph> {
    let bad = |reason: String| OnnxError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    // onnx-ir may panic on malformed input; user files must never crash the caller.
    let parsed = match extra_output {
        // From the file itself, so weights stored as external data beside it are found.
        None => {
            std::fs::metadata(path).map_err(|source| OnnxError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            catch_unwind(|| OnnxGraphBuilder::new().simplify(false).parse_file(path))
        }
        Some(cut) => {
            let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let bytes = with_extra_output(path, &bytes, cut)?;
            catch_unwind(AssertUnwindSafe(|| {
                OnnxGraphBuilder::new().simplify(false).parse_bytes(&bytes)
            }))
        }
    }
    .map_err(|_| bad("the parser failed on this file".into()))?;
    parsed.map_err(|e| bad(e.to_string()))
}

/// A user-named cut point.
pub(crate) enum CutName<'a> {
    Tensor(&'a str),
    Node(&'a str),
}

fn with_extra_output(path: &Path, bytes: &[u8], cut: &CutName) -> Result<Vec<u8>> {
    let bad = |reason: String| OnnxError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let mut model = catch_unwind(|| ModelProto::parse_from_bytes(bytes))
        .map_err(|_| bad("the protobuf decoder failed".into()))?
        .map_err(|e| bad(e.to_string()))?;
    let graph = model.graph.mut_or_insert_default();
    let tensor = match cut {
        CutName::Tensor(t) => graph
            .node
            .iter()
            .any(|n| n.output.iter().any(|o| o == t))
            .then(|| t.to_string()),
        CutName::Node(name) => graph
            .node
            .iter()
            .find(|n| n.name == *name)
            .and_then(|n| n.output.first().cloned()),
    };
    let Some(tensor) = tensor else {
        let what = match cut {
            CutName::Tensor(t) => format!("no node computes a tensor named '{t}'"),
            CutName::Node(n) => format!("no node named '{n}'"),
        };
        return Err(OnnxError::Graph {
            path: path.to_path_buf(),
            reason: format!("cut point not found: {what}"),
        });
    };
    if !graph.output.iter().any(|o| o.name == tensor) {
        let info = graph
            .value_info
            .iter()
            .find(|v| v.name == tensor)
            .cloned()
            .unwrap_or_else(|| {
                let mut v = ValueInfoProto::new();
                v.name = tensor.clone();
                v
            });
        graph.output.push(info);
    }
    // Move the cut tensor to the end so it is found as the last output.
    let pos = graph.output.iter().position(|o| o.name == tensor).unwrap();
    let info = graph.output.remove(pos);
    graph.output.push(info);
    model.write_to_bytes().map_err(|e| bad(e.to_string()))
}
