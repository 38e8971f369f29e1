#!/usr/bin/env bash
# The GPU figures of docs/BENCHMARKS.md: grafter's criterion backbone benches on a GPU through
# wgpu (or cuda), next to onnxruntime's CUDAExecutionProvider and PyTorch on CUDA where those
# import, on the same machine in the same run, with the GPU's name.
# Usage: benches/run_gpu_benchmarks.sh [--quick] [criterion args...]
# Env: BACKEND (default wgpu; cuda's build needs network), PRECISIONS, PYTHON, THREADS as in
#      run_backbone_comparison.sh. Needs the ORT fixture graphs (.cache/fixtures) for the ORT
#      column: python tests/fixtures/make_fixtures.py --models resnet18,resnet50,vgg16.
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${BACKEND:-wgpu}"

echo "== GPU"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  ref_device=cuda
else
  echo "no nvidia-smi: the reference engines run on the CPU"
  ref_device=cpu
fi
if command -v vulkaninfo >/dev/null 2>&1; then
  vulkaninfo --summary 2>/dev/null | grep -E 'deviceName|driverName|apiVersion' || true
fi
# The Rust side prints `RUST_DEVICE <adapter name, kind, driver>`: a wgpu run that fell back to
# a software adapter says so there.
# PRECISIONS (default "f32 f16"): one comparison per precision of grafter's passes
# (GRAFTER_BENCH_PRECISION; the reference engines run f32 each time).
for precision in ${PRECISIONS:-f32 f16}; do
  echo "== grafter precision: $precision"
  GRAFTER_BENCH_PRECISION="$precision" DEVICE="$backend" REF_DEVICE="$ref_device" \
    benches/run_backbone_comparison.sh "$@"
done
