#!/usr/bin/env bash
# Backbone forward / fine-tune-step throughput: grafter (flex) vs onnxruntime vs PyTorch, same
# architectures, shapes and thread count, same machine, one invocation.
# Usage: benches/run_backbone_comparison.sh [--quick] [criterion args...]
#   a criterion filter (e.g. 'forward/resnet18/b32' or a regex) selects the same cases on the
#   Python side (backbones_reference.py --only)
#   --quick      resnet18 b1/b8 only (GRAFTER_BENCH_QUICK=1 and the Python --quick)
# Prints the machine (CPU model, SIMD flags), load averages, one PARITY line per model
# (grafter's batch-32 logits on the fixtures' torchvision weights against onnxruntime's), and
# the table of img/s and ratios.
# Env: THREADS (default 2; RAYON_NUM_THREADS for grafter, intra_op threads for ORT,
#      torch.set_num_threads for PyTorch); PYTHON (default .cache/bench-venv/bin/python, made by
#      benches/setup_bench_env.sh with PyTorch, else .cache/torch-venv/bin/python (made by
#      tests/run.sh, PyTorch + onnxruntime), else .cache/venv/bin/python, else python3;
#      needs numpy + onnxruntime, PyTorch optional); ORT graphs from .cache/fixtures
#      (python tests/fixtures/make_fixtures.py --models resnet18,resnet50,vgg16).
#      DEVICE (default cpu): grafter's device, cpu|wgpu|cuda (built with that cargo feature);
#      REF_DEVICE (default cpu): cpu|cuda for onnxruntime / PyTorch. benches/run_gpu_benchmarks.sh
#      sets both for a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."

threads="${THREADS:-2}"
quick=()
if [ "${1:-}" = "--quick" ]; then
  shift
  quick=(--quick)
  export GRAFTER_BENCH_QUICK=1
fi
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x .cache/bench-venv/bin/python ]; then python=.cache/bench-venv/bin/python
  elif [ -x .cache/torch-venv/bin/python ]; then python=.cache/torch-venv/bin/python
  elif [ -x .cache/venv/bin/python ]; then python=.cache/venv/bin/python
  else python=python3; fi
fi
export RAYON_NUM_THREADS="$threads"
device="${DEVICE:-cpu}"
ref_device="${REF_DEVICE:-cpu}"
features=()
case "$device" in
  cpu | flex) ;;
  wgpu | cuda) features=(--features "$device") ;;
  *) echo "DEVICE must be cpu, wgpu or cuda, not '$device'" >&2; exit 2 ;;
esac
export GRAFTER_BENCH_DEVICE="$device"

echo "== machine"
echo "nproc: $(nproc)"
echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o 'avx512[a-z_0-9]*\|avx2\|fma' | sort -u | tr '\n' ' ')"
echo "threads: $threads"
echo "grafter device: $device; reference device: $ref_device"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average at start: $load_start"

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# Output goes to the terminal (stderr) as it comes and to a file for the table (tee to
# /dev/stderr would reopen, and truncate, a redirected log).
echo "== Rust (cargo bench ${features[*]} --bench backbones, GRAFTER_BENCH_DEVICE=$device)"
cargo bench "${features[@]}" --bench backbones -- "$@" 2>&1 | tee "$log/rust" >&2
rust_out=$(cat "$log/rust")
load_mid=$(cut -d' ' -f1-3 /proc/loadavg)

# A criterion filter given to this script selects the same cases on the Python side.
only=()
for a in "$@"; do
  case "$a" in -*) ;; *) only=(--only "$a") ;; esac
done
echo "== Python ($python benches/backbones_reference.py --threads $threads --device $ref_device ${only[*]})"
"$python" benches/backbones_reference.py --threads "$threads" --device "$ref_device" "${quick[@]}" "${only[@]}" 2>&1 | tee "$log/py" >&2
py_out=$(cat "$log/py")
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# value <output> <prefix> <name>: the img_per_s of that case, or n/a.
value() {
  local v
  v=$(grep "^$2 " <<<"$1" | grep " name=$3 " | sed -n 's/.* img_per_s=\([^ ]*\).*/\1/p' | head -1)
  echo "${v:-n/a}"
}
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2fx", a / b }'
}

echo
echo "load average: start $load_start | after Rust $load_mid | end $load_end"
grep '^RUST_DEVICE ' <<<"$rust_out" | sed 's/^RUST_DEVICE /grafter ran on: /' || true
grep '^PARITY ' <<<"$rust_out" || echo "PARITY not measured (--quick, or the bench printed none)"
printf '%-34s %10s %10s %10s %10s %10s\n' case "grafter" "ORT" "PyTorch" "g/ORT" "g/PyTorch"
printf '%-34s %10s %10s %10s %10s %10s\n' "" "img/s" "img/s" "img/s" "" ""
grep '^RUST_BENCH ' <<<"$rust_out" | sed -n 's/.* name=\([^ ]*\) .*/\1/p' | while read -r name; do
  g=$(value "$rust_out" RUST_BENCH "$name")
  o=$(value "$py_out" "REF_BENCH engine=ort" "$name")
  t=$(value "$py_out" "REF_BENCH engine=torch" "$name")
  printf '%-34s %10s %10s %10s %10s %10s\n' "$name" "$g" "$o" "$t" "$(ratio "$g" "$o")" "$(ratio "$g" "$t")"
done
