#!/usr/bin/env bash
# Copies the header-only dependencies (Eigen, nlohmann-json, Catch2 v2) with their CMake package
# files into ./gpu-deps, for a GPU machine without them and without network (bench/gpu_check.sh
# uses the folder when present). Run on a machine that has them (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf gpu-deps && mkdir -p gpu-deps/include gpu-deps/share gpu-deps/lib/cmake
cp -r /usr/include/eigen3 gpu-deps/include/
cp -r /usr/share/eigen3 gpu-deps/share/
sed -i 's|/usr/include/eigen3|${CMAKE_CURRENT_LIST_DIR}/../../../include/eigen3|g' gpu-deps/share/eigen3/cmake/*.cmake
cp -r /usr/include/nlohmann gpu-deps/include/
mkdir -p gpu-deps/share/cmake && cp -r /usr/share/cmake/nlohmann_json gpu-deps/share/cmake/
cp -r /usr/include/catch2 gpu-deps/include/
cp -r /usr/lib/cmake/Catch2 gpu-deps/lib/cmake/
cp /usr/lib/libCatch2WithMain.a gpu-deps/lib/
du -sh gpu-deps
