#!/usr/bin/env bash
# Installs what is missing, builds, and trains the tutorial model on built-in synthetic data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)" --target train_minimal
build/examples/train_minimal
