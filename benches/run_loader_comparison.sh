#!/usr/bin/env bash
# Loader throughput, grafter-data vs PIL + numpy (2 worker processes), on the same JPEGs.
# Usage: benches/run_loader_comparison.sh [criterion args, e.g. --quick]
# Python: $PYTHON, else .cache/venv/bin/python, else python3 (needs pillow and numpy).
set -euo pipefail
cd "$(dirname "$0")/.."
export GRAFTER_BENCH_IMAGES="${GRAFTER_BENCH_IMAGES:-$PWD/target/bench-images}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x .cache/venv/bin/python ]; then python=.cache/venv/bin/python; else python=python3; fi
fi

echo "== Rust (cargo bench --bench loader)"
rust_out=$(cargo bench --bench loader -- "$@" 2>&1 | tee /dev/stderr)
rust_line=$(grep '^RUST_IMAGES_PER_SEC' <<<"$rust_out")

echo "== Python ($python benches/loader_reference.py, 2 workers)"
py_line=$("$python" benches/loader_reference.py --images "$GRAFTER_BENCH_IMAGES" --workers 2)

field() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"; }
echo
printf '%-6s %12s %12s %8s\n' pass "rust img/s" "python img/s" ratio
for pass in train eval; do
  r=$(field "$rust_line" "$pass")
  p=$(field "$py_line" "$pass")
  printf '%-6s %12s %12s %7.2fx\n' "$pass" "$r" "$p" "$(awk -v r="$r" -v p="$p" 'BEGIN { print r / p }')"
done
