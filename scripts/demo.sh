#!/usr/bin/env bash
# Installs what is missing, builds sakura-train, and runs its built-in demo: synthetic data shaped like
# the pbmc5k tutorial's, trained with the tutorial's config (see `sakura-train --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)" --target sakura_train
build/tools/sakura-train --demo "$@"
