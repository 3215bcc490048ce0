#!/usr/bin/env bash
# Builds everything (library tests, examples, benchmarks, tools) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
# PASSIVE: parallel tests on few cores must not spin-wait on each other's OpenMP teams
OMP_WAIT_POLICY=PASSIVE ctest --test-dir build --output-on-failure -j "$(nproc)"
