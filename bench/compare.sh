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
#   OMP_NUM_THREADS, OMP_WAIT_POLICY, ... are passed through unchanged to both.
#
# Our benchmark names are matched to the reference by their first two
# '/'-separated components: step/tutorial_both/runtime/threads:2 -> step/tutorial_both.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="${PYTHON:-/usr/bin/python3}"
BENCH="${SAKURA_BENCH:-$ROOT/build/bench/sakura_bench}"
TORCH_THREADS="${TORCH_THREADS:-1,2}"
OUT="${COMPARE_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sakura_compare.XXXXXX")}"
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

# ---- ours
if [[ -n "${SAKURA_BENCH_JSON:-}" ]]; then
  bench_json="$SAKURA_BENCH_JSON"
  echo "# using existing benchmark JSON $bench_json"
else
  if [[ ! -x "$BENCH" ]]; then
    cat >&2 <<EOF
compare.sh: benchmark binary not found: $BENCH
Build it from the repository root with:
  cmake -S . -B build -DSAKURA_BUILD_BENCH=ON && cmake --build build --target sakura_bench
or point SAKURA_BENCH at an existing binary.
EOF
    exit 2
  fi
  bench_json="$OUT/sakura_bench.json"
  echo "# running $BENCH (OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}) -> $bench_json"
  "$BENCH" --benchmark_format=json --benchmark_out="$bench_json" --benchmark_out_format=json \
           --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
           ${bench_args[@]+"${bench_args[@]}"} > "$OUT/sakura_bench.stdout.json"
fi

# ---- which reference cases do we need?
cases="$("$PY" - "$bench_json" "$HERE/reference_torch.py" <<'EOF'
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
EOF
)"

# ---- reference
if [[ -n "${TORCH_JSON:-}" ]]; then
  torch_json="$TORCH_JSON"
  echo "# using existing reference JSON $torch_json"
elif [[ -z "$cases" ]]; then
  torch_json=""
  echo "# none of our benchmarks has a PyTorch counterpart; skipping the reference"
else
  torch_json="$OUT/reference_torch.json"
  echo "# running PyTorch reference for $cases (threads $TORCH_THREADS) -> $torch_json"
  # The documented machine environment sets OPENBLAS_CORETYPE=Haswell (PERF_NOTES); without it
  # Debian's OpenBLAS runs generic kernels here and PyTorch looks slower than it is. Be fair to it.
  OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}" \
  "$PY" "$HERE/reference_torch.py" --threads "$TORCH_THREADS" --cases "$cases" \
        --json "$torch_json" ${torch_args[@]+"${torch_args[@]}"}
fi

# ---- table
"$PY" - "$bench_json" "${torch_json}" <<'EOF'
import json, re, statistics, sys
UNIT = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}

with open(sys.argv[1]) as f:
    gb = json.load(f)
ours = {}      # run_name -> median ms
order = []
iters = {}     # fallback when no aggregates were reported
for b in gb.get("benchmarks", []):
    name = b.get("run_name") or re.sub(r"_(mean|median|stddev|cv)$", "", b["name"])
    if "error_occurred" in b and b["error_occurred"]:
        print(f"# {name}: error: {b.get('error_message', '')}")
        continue
    ms = b["real_time"] * UNIT[b.get("time_unit", "ns")]
    if name not in order:
        order.append(name)
    if b.get("run_type") == "aggregate":
        if b.get("aggregate_name") == "median":
            ours[name] = ms
    else:
        iters.setdefault(name, []).append(ms)
for name, v in iters.items():
    ours.setdefault(name, statistics.median(v))

torch_best, torch_by_thr, device = {}, {}, "n/a"
if len(sys.argv) > 2 and sys.argv[2]:
    with open(sys.argv[2]) as f:
        tj = json.load(f)
    device = tj.get("device", "n/a")
    for r in tj.get("results", []):
        torch_by_thr[(r["name"], r.get("threads"))] = r["median_ms"]
        if r["name"] not in torch_best or r["median_ms"] < torch_best[r["name"]][0]:
            torch_best[r["name"]] = (r["median_ms"], r.get("threads"))

ctx = gb.get("context", {})
print()
print(f"# ours : {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs, "
      f"{ctx.get('library_build_type', '?')} Google Benchmark; median of repetitions (real time)")
print(f"# torch: {device}; best median over thread counts; x = torch / ours (>1: we are faster)")
w = max([len(n) for n in order] + [9])
hdr = (f"{'benchmark':{w}s} {'ours_ms':>10s} {'torch_ms':>10s} {'thr':>4s} {'x_best':>7s}"
       f" {'torch_same_thr':>14s} {'x_same':>7s}")
print(hdr)
print("-" * len(hdr))
for name in order:
    if name not in ours:
        continue
    o = ours[name]
    prefix = "/".join(name.split("/")[:2])
    tb = torch_best.get(prefix)
    m = re.search(r"threads:(\d+)", name)
    ts = torch_by_thr.get((prefix, int(m.group(1)))) if m else None
    tb_s = f"{tb[0]:10.3f} {str(tb[1] if tb[1] is not None else '-'):>4s} {tb[0] / o:7.2f}" if tb else \
        f"{'n/a':>10s} {'':>4s} {'':>7s}"
    ts_s = f" {ts:14.3f} {ts / o:7.2f}" if ts is not None else f" {'':>14s} {'':>7s}"
    print(f"{name:{w}s} {o:10.3f} {tb_s}{ts_s}")
EOF
