#!/usr/bin/env bash
# Run our C++ step benchmarks (sakura_bench, Google Benchmark) and the PyTorch
# reference (bench/reference_torch.py) and print, per benchmark of ours, the
# ratio torch / ours (how many times faster we are).
#
# Usage:
#   bench/compare.sh [sakura_bench args...] [-- reference_torch.py args...]
# e.g.
#   bench/compare.sh --benchmark_filter='step/tutorial_both'
#   OMP_NUM_THREADS=2 bench/compare.sh -- --threads 1,2 --quick
#
# Environment:
#   SAKURA_BENCH       path of our benchmark binary (default build/bench/sakura_bench,
#                      relative to the repository root)
#   PYTHON             python with torch (default /usr/bin/python3)
#   TORCH_THREADS      thread counts for the reference (default 1,2); the best median wins
#   COMPARE_OUT        folder for the JSON files (default: a new temporary folder)
#   SAKURA_BENCH_JSON  use this existing Google Benchmark JSON instead of running the binary
#   TORCH_JSON         use this existing reference_torch.py JSON instead of running torch
#   COMPARE_ROUNDS     run ours and the reference alternately this many times (default 1) and
#                      report, per benchmark, the median of the per-round ratios with their
#                      range: on a shared VM whose speed drifts over minutes, a ratio of two
#                      runs taken back to back is far steadier than either time
#   OMP_NUM_THREADS, OMP_WAIT_POLICY, ... are passed through unchanged to both.
#
# The table is printed by bench/compare_table.py (usable on saved JSON files too).
# Our benchmark names are matched to the reference by their first two
# '/'-separated components: step/tutorial_both/runtime/threads:2 -> step/tutorial_both.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="${PYTHON:-/usr/bin/python3}"
BENCH="${SAKURA_BENCH:-$ROOT/build/bench/sakura_bench}"
TORCH_THREADS="${TORCH_THREADS:-1,2}"
OUT="${COMPARE_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sakura_compare.XXXXXX")}"
ROUNDS="${COMPARE_ROUNDS:-1}"
if ! [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
  echo "compare.sh: COMPARE_ROUNDS must be a positive integer (got '$ROUNDS')" >&2
  exit 2
fi
mkdir -p "$OUT"

bench_args=()
torch_args=()
seen_sep=0
for a in "$@"; do
  if [[ $seen_sep == 0 && "$a" == "--" ]]; then seen_sep=1; continue; fi
  if [[ $seen_sep == 0 ]]; then bench_args+=("$a"); else torch_args+=("$a"); fi
done

if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
  echo "compare.sh: $PY cannot import torch (set PYTHON to a python with torch; Debian: /usr/bin/python3 with python3-torch)" >&2
  exit 2
fi

# ---- ours (one run per round)
run_ours() {  # $1: output JSON
  if [[ -n "${SAKURA_BENCH_JSON:-}" ]]; then
    cp "$SAKURA_BENCH_JSON" "$1"
    echo "# using existing benchmark JSON $SAKURA_BENCH_JSON"
    return
  fi
  if [[ ! -x "$BENCH" ]]; then
    cat >&2 <<MSG
compare.sh: benchmark binary not found: $BENCH
Build it from the repository root with:
  cmake -S . -B build -DSAKURA_BUILD_BENCH=ON && cmake --build build --target sakura_bench
or point SAKURA_BENCH at an existing binary.
MSG
    exit 2
  fi
  echo "# running $BENCH (OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}) -> $1"
  # repetitions in random order, so that a drift of the machine's speed during the run is shared
  # by all benchmarks instead of landing on whichever ran last
  "$BENCH" --benchmark_format=json --benchmark_out="$1" --benchmark_out_format=json \
           --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
           --benchmark_enable_random_interleaving=true \
           ${bench_args[@]+"${bench_args[@]}"} > "${1%.json}.stdout.json"
}

# ---- which reference cases do we need? (from our first run's benchmark names)
reference_cases() {  # $1: our JSON
  "$PY" - "$1" "$HERE/reference_torch.py" <<'PYEOF'
import json, subprocess, sys
known = subprocess.run([sys.executable, sys.argv[2], "--list-cases"], check=True,
                       capture_output=True, text=True).stdout.split()
with open(sys.argv[1]) as f:
    names = [b.get("run_name", b["name"]) for b in json.load(f).get("benchmarks", [])]
want = []
for n in names:
    p = "/".join(n.split("/")[:2])
    if p in known and p not in want:
        want.append(p)
print(",".join(want))
PYEOF
}

# ---- reference (one run per round)
run_torch() {  # $1: output JSON, $2: cases
  if [[ -n "${TORCH_JSON:-}" ]]; then
    cp "$TORCH_JSON" "$1"
    echo "# using existing reference JSON $TORCH_JSON"
    return
  fi
  echo "# running PyTorch reference for $2 (threads $TORCH_THREADS) -> $1"
  # The documented machine environment sets OPENBLAS_CORETYPE=Haswell (PERF_NOTES); without it
  # Debian's OpenBLAS runs generic kernels here and PyTorch looks slower than it is. Be fair to it.
  OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}" \
  "$PY" "$HERE/reference_torch.py" --threads "$TORCH_THREADS" --cases "$2" \
        --json "$1" ${torch_args[@]+"${torch_args[@]}"}
}

ours_jsons=()
torch_jsons=()
cases=""
for ((r = 1; r <= ROUNDS; ++r)); do
  [[ $ROUNDS -gt 1 ]] && echo "# round $r of $ROUNDS"
  ours_json="$OUT/sakura_bench.r$r.json"
  run_ours "$ours_json"
  ours_jsons+=("$ours_json")
  if [[ $r == 1 ]]; then
    cases="$(reference_cases "$ours_json")"
    [[ -z "$cases" && -z "${TORCH_JSON:-}" ]] &&
      echo "# none of our benchmarks has a PyTorch counterpart; skipping the reference"
  fi
  if [[ -n "$cases" || -n "${TORCH_JSON:-}" ]]; then
    torch_json="$OUT/reference_torch.r$r.json"
    run_torch "$torch_json" "$cases"
    torch_jsons+=("$torch_json")
  fi
done

# ---- table
table_args=(--ours "${ours_jsons[@]}")
[[ ${#torch_jsons[@]} -gt 0 ]] && table_args+=(--torch "${torch_jsons[@]}")
"$PY" "$HERE/compare_table.py" "${table_args[@]}"
