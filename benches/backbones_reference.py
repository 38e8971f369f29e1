#!/usr/bin/env python3
"""Reference numbers for benches/backbones.rs: the same cases on onnxruntime and PyTorch.

Cases (224x224, float32, random weights; names as the Rust bench prints them):
    forward/{resnet18,resnet50,vgg16}/b{1,8,32}    full ImageNet model -> 1000 logits
    finetune_step/{resnet18,resnet50,vgg16}/{frozen,full}/b32   PyTorch only (ORT is inference-only):
        forward, cross-entropy over 101 classes, backward, AdamW step; "frozen" = backbone
        requires_grad=False and in eval mode (BatchNorm running stats), only `fc` trained.

onnxruntime runs the project's fixture graphs (.cache/fixtures/<model>/<model>_unfolded.onnx,
dynamic batch; written by tests/fixtures/make_fixtures.py), CPUExecutionProvider,
intra_op_num_threads=THREADS, inter_op_num_threads=1, sequential execution, default graph
optimisations (ORT_ENABLE_ALL: it folds BatchNorm into Conv and fuses Conv+ReLU itself).
PyTorch (if `import torch, torchvision` works) runs torchvision's models in eager mode,
channels_last, torch.set_num_threads(THREADS), under torch.inference_mode() for forward.

Each case: warm-up iterations, then timed iterations until both MIN_ITERS iterations and
MIN_SECONDS have passed; the median per-iteration time is reported as

    REF_BENCH engine=<ort|torch> name=<case> img_per_s=<x> ms_per_iter=<y> samples=<n>

and an engine that cannot run prints `REF_BENCH engine=<e> name=<case> img_per_s=n/a ...`.

With --ops B, instead: every convolution of ResNet-18 (--ops-model resnet50: ResNet-50) at
batch B alone on onnxruntime
(one-node Conv graphs with bias, as ORT runs them once BatchNorm is folded), printed as
`REF_OP conv name=<layer> ... ms=<x> gflops=<y>` to set beside the Rust bench's
GRAFTER_BENCH_PROFILE=B output.

Usage:
    python benches/backbones_reference.py [--threads 2] [--quick] [--fixtures DIR] [--ops B]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SIDE = 224
CLASSES = 101
LR = 1e-3
MODELS = ["resnet18", "resnet50", "vgg16"]
# Models of the fine-tune step cases (batch 32, frozen backbone and full).
STEP_MODELS = ["resnet18", "resnet50", "vgg16"]
MIN_ITERS = 10
MIN_SECONDS = 3.0
WARMUP = 2


# `--only REGEX`: the cases whose name the regex finds (re.search), as criterion's filter.
ONLY = None


def wanted(name: str) -> bool:
    return ONLY is None or ONLY.search(name) is not None


def cases(quick: bool):
    batches = [1, 8] if quick else [1, 8, 32]
    models = ["resnet18"] if quick else MODELS
    return [(m, b) for m in models for b in batches if wanted(f"forward/{m}/b{b}")]


def measure(step) -> tuple[float, int]:
    """Median seconds per call of `step()` and the number of timed calls."""
    for _ in range(WARMUP):
        step()
    times = []
    start = time.perf_counter()
    while len(times) < MIN_ITERS or time.perf_counter() - start < MIN_SECONDS:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times), len(times)


def report(engine: str, name: str, batch: int, secs: float | None, n: int = 0, why: str = ""):
    if secs is None:
        print(f"REF_BENCH engine={engine} name={name} img_per_s=n/a reason={why!r}", flush=True)
    else:
        print(
            f"REF_BENCH engine={engine} name={name} img_per_s={batch / secs:.2f} "
            f"ms_per_iter={secs * 1e3:.1f} samples={n}",
            flush=True,
        )


def run_ort(args) -> None:
    try:
        import onnxruntime as ort
    except ImportError as e:
        print(f"onnxruntime: not installed (n/a): {e}", flush=True)
        for model, batch in cases(args.quick):
            report("ort", f"forward/{model}/b{batch}", batch, None, why="not installed")
        return
    print(f"onnxruntime {ort.__version__}, intra_op_num_threads={args.threads}", flush=True)
    for model in dict.fromkeys(m for m, _ in cases(args.quick)):
        path = Path(args.fixtures) / model / f"{model}_unfolded.onnx"
        batches = [b for m, b in cases(args.quick) if m == model]
        if not path.exists():
            for b in batches:
                report("ort", f"forward/{model}/b{b}", b, None, why=f"missing {path}")
            continue
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if args.device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                for b in batches:
                    report("ort", f"forward/{model}/b{b}", b, None, why="no CUDAExecutionProvider")
                continue
            providers = ["CUDAExecutionProvider"] + providers
        sess = ort.InferenceSession(str(path), so, providers=providers)
        inp = sess.get_inputs()[0].name
        rng = np.random.default_rng(0)
        for b in batches:
            x = rng.random((b, 3, SIDE, SIDE), dtype=np.float32)
            secs, n = measure(lambda: sess.run(["logits"], {inp: x}))
            report("ort", f"forward/{model}/b{b}", b, secs, n)
        del sess
    if not args.quick:
        for model in STEP_MODELS:
            for mode in ("frozen", "full"):
                name = f"finetune_step/{model}/{mode}/b32"
                if wanted(name):
                    report("ort", name, 32, None, why="inference only")


def run_torch(args) -> None:
    names = [f"forward/{m}/b{b}" for m, b in cases(args.quick)]
    if not args.quick:
        names += [
            f"finetune_step/{m}/{mode}/b32"
            for m in STEP_MODELS
            for mode in ("frozen", "full")
            if wanted(f"finetune_step/{m}/{mode}/b32")
        ]
    try:
        import torch
        import torchvision
    except ImportError as e:
        print(f"PyTorch: not installed (n/a): {e}", flush=True)
        for name in names:
            report("torch", name, int(name.rsplit("/b", 1)[1]), None, why="not installed")
        return
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("PyTorch: no CUDA device (n/a)", flush=True)
        for name in names:
            report("torch", name, int(name.rsplit("/b", 1)[1]), None, why="no CUDA")
        return
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    print(
        f"PyTorch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"threads={torch.get_num_threads()}, eager, channels_last, device={dev}",
        flush=True,
    )
    ctor = {
        "resnet18": torchvision.models.resnet18,
        "resnet50": torchvision.models.resnet50,
        "vgg16": torchvision.models.vgg16,
    }
    for model in dict.fromkeys(m for m, _ in cases(args.quick)):
        net = ctor[model](weights=None).eval().to(dev, memory_format=torch.channels_last)
        for b in [b for m, b in cases(args.quick) if m == model]:
            x = torch.rand(b, 3, SIDE, SIDE, device=dev).contiguous(memory_format=torch.channels_last)

            def step():
                with torch.inference_mode():
                    net(x)
                sync()

            secs, n = measure(step)
            report("torch", f"forward/{model}/b{b}", b, secs, n)
        del net
    if args.quick:
        return
    b = 32
    x = torch.rand(b, 3, SIDE, SIDE, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.arange(b, device=dev) % CLASSES
    for model in STEP_MODELS:
        for mode in ("frozen", "full"):
            if not wanted(f"finetune_step/{model}/{mode}/b{b}"):
                continue
            net = step_model(torchvision, model)
            net = net.to(dev, memory_format=torch.channels_last).train()
            if mode == "frozen":
                for name, p in net.named_parameters():
                    p.requires_grad_(name.startswith("fc."))
                for name, m in net.named_children():
                    if name != "fc":
                        m.eval()
            params = [p for p in net.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=LR)
            loss_fn = torch.nn.CrossEntropyLoss()

            def step():
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(x), y)
                loss.backward()
                opt.step()
                sync()

            secs, n = measure(step)
            report("torch", f"finetune_step/{model}/{mode}/b{b}", b, secs, n)
            del net, opt


def step_model(torchvision, model: str):
    """The fine-tune benchmark's network: the backbone, global average pool and a linear head
    of CLASSES outputs named `fc` (grafter's Classifier with a LinearHead)."""
    import torch

    if model.startswith("resnet"):
        net = getattr(torchvision.models, model)(weights=None)
        net.fc = torch.nn.Linear(net.fc.in_features, CLASSES)
        return net
    features = getattr(torchvision.models, model)(weights=None).features
    net = torch.nn.Sequential()
    net.add_module("features", features)
    net.add_module("pool", torch.nn.AdaptiveAvgPool2d(1))
    net.add_module("flatten", torch.nn.Flatten())
    net.add_module("fc", torch.nn.Linear(512, CLASSES))
    return net


def resnet18_convs():
    """(name, cin, cout, k, stride, input side) of every convolution of ResNet-18 at 224."""
    convs = [("conv1", 3, 64, 7, 2, 224)]
    cin, side = 64, 56
    for layer, planes in enumerate([64, 128, 256, 512], start=1):
        for i in range(2):
            stride = 2 if (i == 0 and layer > 1) else 1
            if stride != 1 or cin != planes:
                convs.append((f"layer{layer}.{i}.downsample", cin, planes, 1, stride, side))
            convs.append((f"layer{layer}.{i}.conv1", cin, planes, 3, stride, side))
            side //= stride
            convs.append((f"layer{layer}.{i}.conv2", planes, planes, 3, 1, side))
            cin = planes
    return convs


def resnet50_convs():
    """(name, cin, cout, k, stride, input side) of every convolution of ResNet-50 at 224
    (torchvision's v1.5: the stride on the 3x3)."""
    convs = [("conv1", 3, 64, 7, 2, 224)]
    cin, side = 64, 56
    for layer, (planes, blocks) in enumerate(zip([64, 128, 256, 512], [3, 4, 6, 3]), start=1):
        for i in range(blocks):
            stride = 2 if (i == 0 and layer > 1) else 1
            if stride != 1 or cin != planes * 4:
                convs.append((f"layer{layer}.{i}.downsample", cin, planes * 4, 1, stride, side))
            convs.append((f"layer{layer}.{i}.conv1", cin, planes, 1, 1, side))
            convs.append((f"layer{layer}.{i}.conv2", planes, planes, 3, stride, side))
            side //= stride
            convs.append((f"layer{layer}.{i}.conv3", planes, planes * 4, 1, 1, side))
            cin = planes * 4
    return convs


def run_ops(args) -> None:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    rng = np.random.default_rng(0)
    b = args.ops
    totals: dict[str, list[float]] = {}
    convs = resnet50_convs() if args.ops_model == "resnet50" else resnet18_convs()
    for name, cin, cout, k, stride, side in convs:
        pad = k // 2
        w = numpy_helper.from_array(rng.standard_normal((cout, cin, k, k), dtype=np.float32) * 0.05, "w")
        bias = numpy_helper.from_array(np.zeros(cout, np.float32), "b")
        node = helper.make_node(
            "Conv", ["x", "w", "b"], ["y"], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4
        )
        graph = helper.make_graph(
            [node],
            "conv",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, cin, side, side])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [w, bias],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        x = rng.random((b, cin, side, side), dtype=np.float32)
        secs, _ = measure(lambda: sess.run(None, {"x": x}))
        out = (side + 2 * pad - k) // stride + 1
        flops = 2.0 * b * cout * cin * k * k * out * out
        print(
            f"REF_OP conv name={name} in={b}x{cin}x{side}x{side} k={k}x{k} s={stride} "
            f"out={cout}x{out}x{out} ms={secs * 1e3:.2f} gflops={flops / secs / 1e9:.1f}",
            flush=True,
        )
        t = totals.setdefault(f"conv{k}x{k}", [0.0, 0.0])
        t[0] += secs
        t[1] += flops
    for kind, (secs, flops) in sorted(totals.items()):
        print(f"REF_OP kind={kind} b={b} ms={secs * 1e3:.1f} gflops={flops / secs / 1e9:.1f}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="resnet18 b1/b8 only")
    ap.add_argument("--fixtures", default=str(REPO_ROOT / ".cache" / "fixtures"))
    ap.add_argument("--engines", default="ort,torch")
    ap.add_argument("--only", metavar="REGEX", help="only the cases whose name matches (re.search)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: ORT's CUDAExecutionProvider and torch on the GPU")
    ap.add_argument("--ops", type=int, metavar="B", help="time ResNet-18's convolutions alone on ORT")
    ap.add_argument(
        "--ops-model", choices=["resnet18", "resnet50"], default="resnet18", help="the ResNet whose convolutions --ops times"
    )
    args = ap.parse_args(argv)
    global ONLY
    ONLY = re.compile(args.only) if args.only else None
    if args.ops:
        run_ops(args)
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    engines = args.engines.split(",")
    if "ort" in engines:
        run_ort(args)
    if "torch" in engines:
        run_torch(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
