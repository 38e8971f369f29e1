//! `.pth` (torch.save zip format) state dicts: parity of the models loaded from them with
//! onnxruntime, and refusal of pickles that reference anything but the tensor-rebuilding
//! globals. The `.pth` fixtures are written by `tests/fixtures/make_fixtures.py` without torch
//! (same tensors as the `.safetensors`; of the VGG pair only vgg16_bn keeps its `.pth`, and
//! `parity.rs` reads vgg16's `.safetensors`).

use std::path::Path;

use burn::tensor::Device;
use grafter_zoo::{ResNetConfig, VggConfig, ZooError, load_resnet};

use crate::parity::{resnet, vgg};
use crate::torch_save::{global, stored_zip, unicode};

#[test]
fn resnet18_pth_matches_onnxruntime() {
    resnet("resnet18", ResNetConfig::resnet18(), "pth");
}

#[test]
fn resnet50_pth_matches_onnxruntime() {
    resnet("resnet50", ResNetConfig::resnet50(), "pth");
}

#[test]
fn vgg16_bn_pth_matches_onnxruntime() {
    vgg("vgg16_bn", VggConfig::vgg16().with_batch_norm(true), "pth");
}

// ---------------------------------------------------------------------------------------------
// Hostile pickles. Each file is a genuine torch.save-style zip (`archive/data.pkl`, `version`,
// `byteorder`, storages under `archive/data/`) whose pickle calls a global that is not one of
// the tensor-rebuilding ones. Loading must fail with a typed error naming the global, and the
// command the pickle names (creating a marker file) must never run.
//
// burn-store's reader never calls a global: it interprets the tensor-rebuilding calls and
// `OrderedDict`, and keeps any other call as an inert opaque value. Such a value is refused
// when it stands where the state dict must be or consumes tensor data (the cases below). An
// inert call that touches no tensor, sitting beside a complete state dict under a key of its
// own, is ignored and the load succeeds (still executing nothing).
// ---------------------------------------------------------------------------------------------

/// `module.name(arg)` via `GLOBAL`, the argument pickled by `arg`.
fn call1(module: &str, name: &str, arg: &[u8]) -> Vec<u8> {
    let mut v = global(module, name);
    v.extend_from_slice(arg);
    v.extend_from_slice(b"\x85R"); // TUPLE1 REDUCE
    v
}

/// `torch._utils._rebuild_tensor_v2(<FloatStorage '0' of 1>, 0, (1,), (1,), False, OrderedDict())`.
fn one_float_tensor() -> Vec<u8> {
    let mut v = global("torch._utils", "_rebuild_tensor_v2");
    v.extend_from_slice(b"((");
    v.extend_from_slice(&unicode("storage"));
    v.extend_from_slice(&global("torch", "FloatStorage"));
    v.extend_from_slice(&unicode("0"));
    v.extend_from_slice(&unicode("cpu"));
    v.extend_from_slice(b"K\x01tQ"); // numel 1, TUPLE, BINPERSID
    v.extend_from_slice(b"K\x00K\x01\x85K\x01\x85\x89"); // 0, (1,), (1,), False
    v.extend_from_slice(&global("collections", "OrderedDict"));
    v.extend_from_slice(b")RtR"); // OrderedDict(), TUPLE, REDUCE
    v
}

/// `OrderedDict([(key, <value>)])`, protocol 2, as torch.save pickles a state dict.
fn state_dict_with(key: &str, value: &[u8]) -> Vec<u8> {
    let mut v = b"\x80\x02".to_vec();
    v.extend_from_slice(&global("collections", "OrderedDict"));
    v.extend_from_slice(b")R");
    v.extend_from_slice(&unicode(key));
    v.extend_from_slice(value);
    v.extend_from_slice(b"s."); // SETITEM STOP
    v
}

/// Writes a torch.save-style zip holding `pickle` and a one-float storage `0`.
fn write_pth(path: &Path, pickle: &[u8]) {
    let storage = 1.0f32.to_le_bytes();
    let zip = stored_zip(&[
        ("archive/data.pkl", pickle),
        ("archive/byteorder", b"little"),
        ("archive/data/0", &storage),
        ("archive/version", b"3\n"),
    ]);
    std::fs::write(path, zip).unwrap();
}

fn load_err(path: &Path) -> ZooError {
    match load_resnet(path, &ResNetConfig::resnet18(), 1000, &Device::flex()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

#[test]
fn pth_calling_a_foreign_global_is_refused_and_runs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("pwned");
    let cmd = format!("touch {}", marker.display());
    let py = format!("open({:?}, 'w')", marker.display().to_string());

    // (file name, pickle, what the error must say): the payload stands where the state dict
    // must be, or takes a tensor.
    let mut cases: Vec<(String, Vec<u8>, String)> = Vec::new();
    for (module, name, arg) in [
        ("os", "system", &cmd),
        ("posix", "system", &cmd),
        ("subprocess", "getoutput", &cmd),
        ("builtins", "eval", &py),
        ("builtins", "exec", &py),
        ("__builtin__", "eval", &py),
    ] {
        let mut p = b"\x80\x02".to_vec();
        p.extend_from_slice(&call1(module, name, &unicode(arg)));
        p.push(b'.');
        cases.push((format!("{module}_{name}"), p, format!("{module}.{name}")));
    }
    // protocol 4 spelling: STACK_GLOBAL from two strings
    let mut p = b"\x80\x04".to_vec();
    p.extend_from_slice(&unicode("os"));
    p.extend_from_slice(&unicode("system"));
    p.push(0x93); // STACK_GLOBAL
    p.extend_from_slice(&unicode(&cmd));
    p.extend_from_slice(b"\x85R.");
    cases.push(("stack_global_os_system".into(), p, "os.system".into()));
    // INST: `os.system(cmd)` built as an instance of the "class" os.system
    let mut p = b"(".to_vec(); // MARK
    p.extend_from_slice(&unicode(&cmd));
    p.extend_from_slice(b"ios\nsystem\n.");
    cases.push(("inst_os_system".into(), p, "opcode: 0x69".into()));
    // a state dict whose tensor is handed to os.system
    cases.push((
        "tensor_into_os_system".into(),
        state_dict_with("conv1.weight", &call1("os", "system", &one_float_tensor())),
        "os.system".into(),
    ));

    for (name, pickle, says) in cases {
        let path = tmp.path().join(format!("{name}.pth"));
        write_pth(&path, &pickle);
        let err = load_err(&path);
        assert!(matches!(err, ZooError::Weights { .. }), "{name}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("{name}.pth")), "{name}: {msg}");
        assert!(msg.contains(&says), "{name}: {msg}");
        println!("REFUSED {name:<24} {msg}");
        assert!(!marker.exists(), "{name}: the pickle's command ran");
    }
}

#[test]
fn hand_built_pth_is_read_up_to_the_missing_parameters() {
    // The same zip and pickle framing with a legitimate tensor loads as far as the
    // architecture check: the refusals above are about the global, not the container.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("one_tensor.pth");
    write_pth(&path, &state_dict_with("fc.bias", &one_float_tensor()));
    let msg = load_err(&path).to_string();
    assert!(
        msg.contains("head.linear.bias") && msg.contains("[1000]") && msg.contains("[1]"),
        "{msg}"
    );
}

#[test]
fn pth_with_a_foreign_global_beside_the_weights_is_refused() {
    // A complete-looking state dict plus an extra entry calling os.system: burn-store's reader
    // alone would ignore the extra entry; the zoo refuses the file.
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("pwned");
    let cmd = format!("touch {}", marker.display());
    let mut p = b"\x80\x02".to_vec();
    p.extend_from_slice(&global("collections", "OrderedDict"));
    p.extend_from_slice(b")R");
    p.extend_from_slice(&unicode("fc.bias"));
    p.extend_from_slice(&one_float_tensor());
    p.extend_from_slice(b"s");
    p.extend_from_slice(&unicode("evil"));
    p.extend_from_slice(&call1("os", "system", &unicode(&cmd)));
    p.extend_from_slice(b"s.");
    let path = tmp.path().join("beside.pth");
    write_pth(&path, &p);
    let msg = load_err(&path).to_string();
    assert!(
        msg.contains("os.system") && msg.contains("beside.pth"),
        "{msg}"
    );
    assert!(!marker.exists());
}

// ---------------------------------------------------------------------------------------------
// Hostile tensor views and globals: refused from the pickle alone, before any tensor is
// materialised (a ~1 kB file must never ask for gigabytes).
// ---------------------------------------------------------------------------------------------

/// Pickle `BININT` of `v`.
fn binint(v: i32) -> Vec<u8> {
    let mut b = vec![b'J'];
    b.extend_from_slice(&v.to_le_bytes());
    b
}

/// `_rebuild_tensor_v2(<FloatStorage '0' of `numel`>, offset, size, stride, False, OrderedDict())`.
fn float_view(numel: i32, offset: i32, size: &[i32], stride: &[i32]) -> Vec<u8> {
    let mut v = global("torch._utils", "_rebuild_tensor_v2");
    v.extend_from_slice(b"((");
    v.extend_from_slice(&unicode("storage"));
    v.extend_from_slice(&global("torch", "FloatStorage"));
    v.extend_from_slice(&unicode("0"));
    v.extend_from_slice(&unicode("cpu"));
    v.extend_from_slice(&binint(numel));
    v.extend_from_slice(b"tQ"); // TUPLE, BINPERSID
    v.extend_from_slice(&binint(offset));
    for dims in [size, stride] {
        v.push(b'(');
        for &d in dims {
            v.extend_from_slice(&binint(d));
        }
        v.push(b't');
    }
    v.push(0x89); // False
    v.extend_from_slice(&global("collections", "OrderedDict"));
    v.extend_from_slice(b")RtR");
    v
}

#[test]
fn stride_zero_and_overlapping_views_are_refused_before_materialising() {
    let tmp = tempfile::tempdir().unwrap();
    // (name, view): each over the one-float storage of `write_pth`.
    let cases: [(&str, Vec<u8>); 4] = [
        // 4096×4096 floats (64 MiB) from one stored float
        ("stride0", float_view(1, 0, &[4096, 4096], &[0, 0])),
        // two elements overlapping on one
        ("overlap", float_view(1, 0, &[2], &[0])),
        // reaching past the storage
        ("past_end", float_view(1, 1, &[1], &[1])),
        // a storage declaring more elements than its record holds
        ("big_storage", float_view(1 << 30, 0, &[1 << 30], &[1])),
    ];
    for (name, view) in cases {
        let path = tmp.path().join(format!("{name}.pth"));
        write_pth(&path, &state_dict_with("fc.bias", &view));
        let start = std::time::Instant::now();
        let err = load_err(&path);
        let msg = err.to_string();
        assert!(matches!(err, ZooError::Weights { .. }), "{name}: {msg}");
        assert!(msg.contains(&format!("{name}.pth")), "{name}: {msg}");
        assert!(msg.contains("storage 0"), "{name}: {msg}");
        assert!(start.elapsed().as_secs() < 5, "{name}: slow refusal");
        println!("REFUSED {name:<12} {msg}");
    }
}

#[test]
fn every_global_is_checked_against_an_exact_allow_list() {
    let tmp = tempfile::tempdir().unwrap();
    // A torch.* name that is not a tensor-rebuilding callable, beside a valid tensor.
    let mut p = b"\x80\x02".to_vec();
    p.extend_from_slice(&global("collections", "OrderedDict"));
    p.extend_from_slice(b")R");
    p.extend_from_slice(&unicode("fc.bias"));
    p.extend_from_slice(&one_float_tensor());
    p.extend_from_slice(b"s");
    p.extend_from_slice(&unicode("extra"));
    p.extend_from_slice(&call1("torch", "load", &unicode("x.pt")));
    p.extend_from_slice(b"s.");
    // A global pushed and popped again: never part of the final object.
    let mut popped = b"\x80\x02".to_vec();
    popped.extend_from_slice(&global("os", "system"));
    popped.push(b'0'); // POP
    popped.extend_from_slice(&state_dict_with("fc.bias", &one_float_tensor())[2..]);
    for (name, pickle, says) in [
        ("torch_load", p, "torch.load"),
        ("popped_global", popped, "os.system"),
    ] {
        let path = tmp.path().join(format!("{name}.pth"));
        write_pth(&path, &pickle);
        let msg = load_err(&path).to_string();
        assert!(msg.contains(&format!("{name}.pth")), "{name}: {msg}");
        assert!(msg.contains(says), "{name}: {msg}");
        println!("REFUSED {name:<14} {msg}");
    }
}
