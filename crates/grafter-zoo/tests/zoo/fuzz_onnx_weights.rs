//! Fuzzing of the zoo's ONNX weight reader (`load_resnet_onnx`: parse, then weights mapped
//! onto the typed ResNet by graph structure with every shape checked). The seed is the
//! fixtures' ResNet-18 graph with BatchNorm folded (`torch.onnx.export` through
//! `make_fixtures.py`), mutated field by field (tests/support/onnx_mutation.rs). Every case
//! must load or be refused with an error naming the file, within the harness's memory limit
//! and timeout (tests/support/fuzz_harness.rs). A case handles a 47 MB file, so the test
//! command runs 20 cases; longer runs by hand (`GRAFTER_FUZZ_CASES`,
//! `GRAFTER_FUZZ_TIMEOUT_SECS`).

use std::path::Path;

use burn::tensor::Device;
use grafter_zoo::{ResNetConfig, ZooError, load_resnet_onnx};

use crate::fuzz_harness::{Target, drive};
use crate::onnx_mutation::mutate_graph;

fn seeds(_: &Path) -> Vec<Vec<u8>> {
    let dir = crate::fixtures::dir("resnet18").expect("the parent checked the fixtures");
    vec![std::fs::read(dir.join("resnet18_folded.onnx")).unwrap()]
}

fn load(input: &[u8], dir: &Path) {
    let path = dir.join("m.onnx");
    std::fs::write(&path, input).unwrap();
    // the harness tallies these
    let outcome = match load_resnet_onnx(&path, &ResNetConfig::resnet18(), &Device::flex()) {
        Ok(_) => "loaded",
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("m.onnx"), "the error names no file: {text}");
            match e {
                ZooError::Onnx(_) => "refused_parse",
                ZooError::Weights { .. } => "refused_weights",
                _ => "refused_other",
            }
        }
    };
    println!("OUTCOME {outcome}");
}

#[test]
fn fuzz_zoo_onnx_weights() {
    if crate::fixtures::dir("resnet18").is_none() {
        return;
    }
    drive(
        Target {
            name: "zoo_onnx",
            seeds,
            mutate: mutate_graph,
            run: load,
            cases: 20,
        },
        "fuzz_onnx_weights::fuzz_zoo_onnx_weights",
    )
    .unwrap();
}
