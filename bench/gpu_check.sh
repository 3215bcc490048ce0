#!/usr/bin/env bash
# The GPU check, in one run (< 5 minutes on an H100 machine):
#   1. configure and build the CUDA backend, its tests and the GPU benchmark;
#   2. run the GPU tests: every Ops kernel and its gradient against the CPU, every golden case on
#      the GPU within 1e-4, the GPU controller against the CPU one, graph replay == eager;
#   3. run the GPU benchmark next to the same step in PyTorch eager on CUDA, and print ratios.
# Header-only dependencies the GPU machine may lack (Eigen, nlohmann-json, Catch2) are taken from
# ./gpu-deps when present (scripts/prepare_gpu_deps.sh fills it on a machine that has them).
# Usage: bench/gpu_check.sh [output folder]   (env: PYTHON for torch with CUDA, default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu-check-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
deps=()
if [[ -d gpu-deps ]]; then
  deps=(-DCMAKE_PREFIX_PATH="$PWD/gpu-deps" -DEigen3_DIR="$PWD/gpu-deps/share/eigen3/cmake")
fi
arch="${CUDA_ARCH:-90}"
echo "== configure (CUDA architecture $arch)"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DSAKURA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DSAKURA_BUILD_TOOLS=OFF -DSAKURA_BUILD_EXAMPLES=OFF -DSAKURA_HDF5=OFF -DSAKURA_GEMM=eigen "${deps[@]}" \
  > "$OUT/configure.log"
echo "== build"
cmake --build build-gpu -j "$(nproc)" --target test_cuda_ops test_gpu_controller sakura_bench_gpu > "$OUT/build.log"
echo "== GPU tests"
status=0
./build-gpu/tests/cuda/test_cuda_ops --reporter compact 2>&1 | tee "$OUT/test_cuda_ops.txt" || status=1
./build-gpu/tests/cuda/test_gpu_controller --reporter compact 2>&1 | tee "$OUT/test_gpu_controller.txt" || status=1
echo "== GPU benchmark (ours)"
./build-gpu/bench/sakura_bench_gpu --json "$OUT/ours.json" | tee "$OUT/ours.txt"
echo "== PyTorch eager on CUDA (same step)"
if "$PY" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  "$PY" bench/reference_torch.py --device cuda --cases step/tutorial_both,step/tiny_both --json "$OUT/torch.json" \
    | tee "$OUT/torch.txt"
  "$PY" - "$OUT/ours.json" "$OUT/torch.json" <<'PYEOF'
import json, sys
ours = json.load(open(sys.argv[1]))["results"]
torch = {r["name"]: r["median_ms"] for r in json.load(open(sys.argv[2]))["results"]}
print(f"{'benchmark':44s} {'ours_ms':>9s} {'torch_ms':>9s} {'x':>7s}")
for r in ours:
    base = "/".join(r["name"].split("/")[:2])
    t = torch.get(base)
    print(f"{r['name']:44s} {r['median_ms']:9.3f} {t if t else float('nan'):9.3f} {(t / r['median_ms']) if t else float('nan'):7.2f}")
PYEOF
else
  echo "no CUDA PyTorch found ($PY); skipping the reference"
fi
exit $status
