use burn::tensor::Device;
use grafter_onnx::{CutPoint, OnnxBackbone, OnnxBackboneOptions, OnnxError};
use onnx_ir::{Message, ModelProto};

fn load(path: &std::path::Path) -> Result<OnnxBackbone, OnnxError> {
    OnnxBackbone::load(path, &OnnxBackboneOptions::default(), &Device::flex())
}

fn squeezenet_proto() -> Option<ModelProto> {
    let file = crate::model_file("squeezenet1_1")?;
    Some(ModelProto::parse_from_bytes(&std::fs::read(file).unwrap()).unwrap())
}

#[test]
fn unsupported_operators_are_all_listed_with_counts() {
    let Some(mut m) = squeezenet_proto() else {
        return;
    };
    let mut changed = 0;
    for node in m.graph.mut_or_insert_default().node.iter_mut() {
        if node.op_type == "Relu" && changed < 3 {
            node.op_type = if changed == 0 {
                "Cos".into()
            } else {
                "Sin".into()
            };
            changed += 1;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("unsupported.onnx");
    std::fs::write(&path, m.write_to_bytes().unwrap()).unwrap();
    match load(&path) {
        Err(OnnxError::UnsupportedOps { path: p, ops }) => {
            assert_eq!(p, path);
            assert_eq!(ops, vec![("Cos".to_string(), 1), ("Sin".to_string(), 2)]);
            println!("{}", OnnxError::UnsupportedOps { path: p, ops });
        }
        other => panic!("expected UnsupportedOps, got {other:?}"),
    }
}

#[test]
fn truncated_file_is_a_typed_error() {
    let Some(file) = crate::model_file("squeezenet1_1") else {
        return;
    };
    let bytes = std::fs::read(file).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("truncated.onnx");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(&path).unwrap_err();
    assert!(matches!(err, OnnxError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated.onnx"));
}

#[test]
fn random_bytes_and_missing_files_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("random.onnx");
    let mut s = 12345u64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let err = load(&path).unwrap_err();
    assert!(matches!(err, OnnxError::Parse { .. }), "{err:?}");
    let err = load(&tmp.path().join("missing.onnx")).unwrap_err();
    assert!(matches!(err, OnnxError::Io { .. }), "{err:?}");
}

#[test]
fn a_model_without_an_image_input_is_a_typed_error() {
    let Some(mut m) = squeezenet_proto() else {
        return;
    };
    // Keep only a Flatten on a rank-2 input: a tabular model, not an image model.
    let g = m.graph.mut_or_insert_default();
    g.node.clear();
    g.initializer.clear();
    let mut node = onnx_ir::NodeProto::new();
    node.op_type = "Relu".into();
    node.name = "relu".into();
    node.input = vec!["input".into()];
    node.output = vec!["logits".into()];
    g.node.push(node);
    let t = g.input[0].type_.mut_or_insert_default().mut_tensor_type();
    let dims = &mut t.shape.mut_or_insert_default().dim;
    dims.truncate(2);
    let o = g.output[0].type_.mut_or_insert_default().mut_tensor_type();
    o.shape.mut_or_insert_default().dim.truncate(2);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tabular.onnx");
    std::fs::write(&path, m.write_to_bytes().unwrap()).unwrap();
    let err = load(&path).unwrap_err();
    assert!(matches!(err, OnnxError::NoImageInput { .. }), "{err:?}");
    println!("{err}");
}

#[test]
fn cut_points_by_node_name_and_bad_cut_points() {
    let Some(file) = crate::model_file("squeezenet1_1") else {
        return;
    };
    let _l = crate::lock();
    let device = Device::flex();
    let by_node = |cut: CutPoint| {
        OnnxBackbone::load(
            &file,
            &OnnxBackboneOptions::default().with_cut(cut),
            &device,
        )
    };
    let b = by_node(CutPoint::Node("/features.12/Concat".into())).unwrap();
    assert_eq!(grafter::Backbone::feature_channels(&b), 512);
    let b = by_node(CutPoint::Node("/features.6/Concat".into())).unwrap();
    assert_eq!(grafter::Backbone::feature_channels(&b), 256);
    assert_eq!(grafter::Backbone::stages(&b).len(), 3);
    match by_node(CutPoint::Node("no such node".into())) {
        Err(OnnxError::Graph { reason, .. }) => assert!(reason.contains("no node named")),
        other => panic!("expected a Graph error, got {other:?}"),
    }
    match by_node(CutPoint::Tensor("logits".into())) {
        Err(OnnxError::Graph { reason, .. }) => assert!(reason.contains("not a feature map")),
        other => panic!("expected a Graph error, got {other:?}"),
    }
}
