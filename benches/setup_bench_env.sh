#!/usr/bin/env bash
# The Python side of benches/run_backbone_comparison.sh: onnxruntime and PyTorch + torchvision
# (PyPI's wheels; torch pulls its CUDA libraries too, ≈ 5.6 GB, ~3 min) in .cache/bench-venv,
# which the comparison script prefers over the fixture venv. The ORT graphs still come from
# the fixtures (python tests/fixtures/make_fixtures.py --models resnet18,resnet50,vgg16).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.cache/bench-venv
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check torch torchvision numpy \
  onnxruntime==1.32.0 onnx==1.23.2
"$venv/bin/python" -c 'import torch, torchvision, onnxruntime; print("torch", torch.__version__, "torchvision", torchvision.__version__, "onnxruntime", onnxruntime.__version__)'
