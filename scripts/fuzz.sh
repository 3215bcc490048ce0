#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz with clang-16 (AddressSanitizer and
# UndefinedBehaviorSanitizer) in build-fuzz/ and fuzzes each input kind for SECONDS (default 60),
# two kinds at a time. A finding — a crash, a sanitizer report, an exception other than
# sakura::Error, a hang past 10 s per input, more than 2 GB of memory, a leak — fails the script;
# its input is saved under build-fuzz/findings/<kind>/ (copy it to tests/fuzz/findings/<kind>/,
# see tests/fuzz/README.md). The corpus grows across runs in build-fuzz/corpus/<kind>/.
# Usage: scripts/fuzz.sh [SECONDS] [KIND...]     kinds: mtx csv config h5ad checkpoint
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
kinds=("$@")
((${#kinds[@]})) || kinds=(mtx csv config h5ad checkpoint)
parallel=${SAKURA_FUZZ_PARALLEL:-2}
out=build-fuzz

# OpenMP off: one thread per input keeps executions fast and findings reproducible
mkdir -p "$out"
cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -g1" \
  -DCMAKE_CXX_COMPILER=clang++-16 -DCMAKE_C_COMPILER=clang-16 -DSAKURA_FUZZ=ON -DSAKURA_SANITIZE=address,undefined \
  -DSAKURA_CUDA=OFF -DSAKURA_GEMM=eigen -DCMAKE_DISABLE_FIND_PACKAGE_OpenMP=ON \
  -DSAKURA_BUILD_BENCH=OFF -DSAKURA_BUILD_EXAMPLES=OFF -DSAKURA_BUILD_TOOLS=OFF > "$out/configure.log"
cmake --build "$out" -j "$(nproc)" --target "${kinds[@]/#/fuzz_}"

# seeds: the checked-in corpus, the reader tests' files, checkpoints the harness writes itself
seed_files() {
  case $1 in
    mtx) ls tests/io/data/*.mtx ;;
    csv) ls tests/io/data/*.csv ;;
    h5ad) ls tests/io/data/*.h5ad ;;
  esac
  [[ -d tests/fuzz/corpus/$1 ]] && find "tests/fuzz/corpus/$1" -type f
  return 0
}
for kind in "${kinds[@]}"; do
  rm -rf "$out/seeds/$kind"
  mkdir -p "$out/seeds/$kind" "$out/corpus/$kind" "$out/findings/$kind" "$out/logs"
  seed_files "$kind" | xargs -r cp -t "$out/seeds/$kind"
  if [[ $kind == checkpoint ]]; then
    SAKURA_FUZZ_WRITE_SEEDS="$out/seeds/checkpoint" "$out/tests/fuzz/fuzz_checkpoint" > "$out/logs/checkpoint.seeds.log" 2>&1
  fi
done

fuzz_one() {
  local kind=$1 dict=()
  [[ -f tests/fuzz/$kind.dict ]] && dict=(-dict="tests/fuzz/$kind.dict")
  if "$out/tests/fuzz/fuzz_$kind" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$out/findings/$kind/" "$out/corpus/$kind" "$out/seeds/$kind" \
      > "$out/logs/$kind.log" 2>&1; then
    echo "fuzz $kind: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$out/logs/$kind.log" | grep -o '[0-9]*$') executions in ${seconds} s, no finding"
  else
    echo "fuzz $kind: FINDING (input in $out/findings/$kind/, log $out/logs/$kind.log):"
    grep -m1 -A12 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|FINDING' "$out/logs/$kind.log" || tail -20 "$out/logs/$kind.log"
    return 1
  fi
}

failed=0
running=0
for kind in "${kinds[@]}"; do
  if ((running >= parallel)); then
    wait -n || failed=1
    running=$((running - 1))
  fi
  fuzz_one "$kind" &
  running=$((running + 1))
done
while ((running > 0)); do
  wait -n || failed=1
  running=$((running - 1))
done
exit "$failed"
