#!/usr/bin/env bash
# kill -9 soak of the real example: `food101 --offline` (the embedded demo set, a random
# ResNet-18 at 96 px, the default two-phase recipe) is killed with SIGKILL at random moments
# and restarted with `--resume` until it finishes; the run folder it leaves must equal an
# uninterrupted run's, every file byte for byte, with no temporary file left. Left out of the
# comparison: `run.lock` (its holder's pid), `run.json` (wall-clock timings) and the burnpack
# records (`.bpk`: they carry parameter ids, which each process draws anew; their tensors are
# compared by tests/finetune/soak_points.rs, and the trained weights here by `model.onnx`).
# By hand (minutes per round; not in the test command):
#
#   tests/soak_food101.sh [KILLS]        # default 10; SOAK_SEED=1 EPOCHS=3 PER_CLASS=24
#
# Uses the test command's build of the example (`--features wgpu`, so nothing is rebuilt).
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-10}
epochs=${EPOCHS:-3}
per_class=${PER_CLASS:-24}
RANDOM=${SOAK_SEED:-1}

cargo build -q --features wgpu --example food101
target=${CARGO_TARGET_DIR:-target}
bin=$target/debug/examples/food101
work=$(mktemp -d "$target/soak-food101.XXXXXX")
trap 'rm -rf "$work"' EXIT
args=(--offline --epochs "$epochs" --per-class "$per_class" --workers 2)

now_ms() { date +%s%3N; }
started=$(now_ms)
"$bin" "${args[@]}" --out "$work/straight" > "$work/straight.log" 2>&1
window=$(( $(now_ms) - started ))
echo "uninterrupted run: $window ms"

# Every compared file of the folder (see above), with its checksum, by relative path.
listing() { (cd "$1" && find . -type f ! -name run.lock ! -name run.json ! -name '*.bpk' -print0 | sort -z | xargs -0 sha256sum); }
temporary_bytes() { find "$1" -name '*.tmp-*' -print0 | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1; }
listing "$work/straight" > "$work/straight.sums"

killed=0 rounds=0 starts=0 identical=0 left=0
declare -A by_epochs=()
while [ "$killed" -lt "$kills" ]; do
  rounds=$((rounds + 1))
  dir="$work/round-$rounds"
  while :; do
    starts=$((starts + 1))
    if [ -f "$dir/latest" ]; then
      "$bin" --resume "$dir" "${args[@]}" > "$work/child.log" 2>&1 &
    else
      "$bin" "${args[@]}" --out "$dir" > "$work/child.log" 2>&1 &
    fi
    pid=$!
    # a delay within one uninterrupted run's time, in ms
    delay=$(( window * RANDOM / 32767 ))
    deadline=$(( $(now_ms) + delay ))
    while kill -0 "$pid" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.02; done
    if kill -9 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      killed=$((killed + 1))
      done_epochs=$(wc -l < "$dir/metrics.jsonl" 2>/dev/null || echo 0)
      by_epochs[$done_epochs]=$(( ${by_epochs[$done_epochs]:-0} + 1 ))
      continue
    fi
    if wait "$pid"; then break; fi
    echo "round $rounds: the restarted run failed after $killed kills:" >&2
    cat "$work/child.log" >&2
    exit 1
  done
  bytes=$(temporary_bytes "$dir")
  left=$((left + bytes))
  if listing "$dir" | cmp -s - "$work/straight.sums"; then
    identical=$((identical + 1))
  else
    echo "round $rounds differs from the uninterrupted run:" >&2
    listing "$dir" | diff - "$work/straight.sums" >&2 || true
  fi
  echo "round $rounds done: $killed kills so far, temporary bytes left $bytes"
done
summary=""
for e in $(printf '%s\n' "${!by_epochs[@]}" | sort -n); do summary+="$e:${by_epochs[$e]} "; done
echo "SOAK food101: $killed kills in $rounds rounds ($starts starts); rounds bit-identical to the uninterrupted run: $identical/$rounds; temporary bytes left: $left; kills by epochs already logged: $summary"
[ "$identical" -eq "$rounds" ] && [ "$left" -eq 0 ]
