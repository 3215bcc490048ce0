#!/usr/bin/env bash
# Builds everything (library tests, examples, benchmarks, tools) and runs every test; then the
# whole test suite again under AddressSanitizer + UndefinedBehaviorSanitizer (build-sanitize/,
# CPU, no benchmarks or examples), where any finding fails; then each fuzz harness for
# SAKURA_FUZZ_SECONDS (default 60; 0 skips) via scripts/fuzz.sh (SAKURA_FUZZ_KINDS: which, default all).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
# PASSIVE: parallel tests on few cores must not spin-wait on each other's OpenMP teams
OMP_WAIT_POLICY=PASSIVE ctest --test-dir build --output-on-failure -j "$(nproc)"

# -O2 -g1: line numbers in sanitizer reports at a fraction of -g's build time
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" \
  -DSAKURA_CUDA=OFF -DSAKURA_BUILD_BENCH=OFF -DSAKURA_BUILD_EXAMPLES=OFF -DSAKURA_SANITIZE=address,undefined
cmake --build build-sanitize -j "$(nproc)"
ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 OMP_WAIT_POLICY=PASSIVE \
  ctest --test-dir build-sanitize --output-on-failure -j "$(nproc)"

fuzz_seconds=${SAKURA_FUZZ_SECONDS:-60}
if ((fuzz_seconds > 0)); then
  # shellcheck disable=SC2086  # a list of kinds
  scripts/fuzz.sh "$fuzz_seconds" ${SAKURA_FUZZ_KINDS:-}
fi
