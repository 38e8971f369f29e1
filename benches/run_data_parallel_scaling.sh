#!/usr/bin/env bash
# Data-parallel scaling: the food101 example (its embedded demo set, weights from the cache or a
# random initialisation) trained on one device and on several replicas, the same global batch,
# in one invocation; the training throughput of the last epoch (img/s of its summary line).
#
# Usage: benches/run_data_parallel_scaling.sh MAIN_DEVICE DEVICES...
#   a GPU machine:  benches/run_data_parallel_scaling.sh wgpu wgpu wgpu:0,wgpu:1
#                   (PRECISION=f16; BACKBONE=resnet50 SIZE=224 are the defaults)
#   one CPU:        benches/run_data_parallel_scaling.sh cpu cpu cpu:2
#   Each DEVICES entry is one run: a single device name trains on MAIN_DEVICE alone, a list
#   (`a,b`) or a count (`cpu:2`) trains one replica per entry (food101 --devices).
# Env: FEATURES (default wgpu), BACKBONE (resnet50), PRECISION (f32), BATCH (32), SIZE (224),
#      EPOCHS (2: the first warms up GPU autotuning), PROFILE (release; `dev` for a quick look).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,14p "$0"; exit 2; }
main=$1
shift
profile=()
[ "${PROFILE:-release}" = release ] && profile=(--release)
cargo build "${profile[@]}" --features "${FEATURES:-wgpu}" --example food101
bin=${CARGO_TARGET_DIR:-target}/$([ "${PROFILE:-release}" = release ] && echo release || echo debug)/examples/food101
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '| devices | replicas | img/s (last epoch) |\n|---|---|---|\n'
for devices in "$@"; do
  flags=()
  case $devices in
    *,* | *:*) flags=(--devices "$devices") ;;
  esac
  replicas=1
  if [ ${#flags[@]} -gt 0 ]; then
    case $devices in
      *,*) replicas=$(( $(tr -cd ',' <<< "$devices" | wc -c) + 1 )) ;;
      cpu:* | flex:*) replicas=${devices#*:} ;;
    esac
  fi
  log="$out/${devices//[,:]/_}.log"
  "$bin" --offline --device "$main" "${flags[@]}" --backbone "${BACKBONE:-resnet50}" \
    --precision "${PRECISION:-f32}" --batch-size "${BATCH:-32}" --image-size "${SIZE:-224}" \
    --epochs "${EPOCHS:-2}" --freeze-epochs 0 --no-cache --out "$out/run-${devices//[,:]/_}" \
    > "$log" 2>&1 || { cat "$log" >&2; exit 1; }
  rate=$(grep -o '([0-9.]* img/s)' "$log" | tail -1 | tr -d '()' | cut -d' ' -f1)
  printf '| %s | %s | %s |\n' "$devices" "$replicas" "$rate"
done
