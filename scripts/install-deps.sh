#!/usr/bin/env bash
# Installs the Debian packages sakura-cpp needs to build and test, if any is missing.
# Usage: scripts/install-deps.sh [--bench]   (--bench adds PyTorch for bench/compare.sh)
set -euo pipefail
# ocl-icd-opencl-dev: Debian's oneDNN CMake config requires OpenCL's dev files (only recommended by libdnnl-dev).
# python3-anndata, python3-protobuf, protobuf-compiler: independent readers of the .h5ad and TensorBoard files we write
# libopenmpi-dev, openmpi-bin: distributed training (sakura::mpi) and its tests under mpiexec
pkgs=(cmake g++ make python3 libeigen3-dev nlohmann-json3-dev catch2 libhdf5-dev zlib1g-dev libbenchmark-dev libdnnl-dev ocl-icd-opencl-dev
      python3-anndata python3-protobuf protobuf-compiler libopenmpi-dev openmpi-bin)
# clang-16 + libclang-rt-16-dev: libFuzzer and clang's sanitizer runtimes for scripts/fuzz.sh
pkgs+=(clang-16 libclang-rt-16-dev)
# libopenblas0-pthread: without it Debian's torch falls back to the reference BLAS (libblas3), ~15x slower
[[ "${1:-}" == "--bench" ]] && pkgs+=(python3-torch libopenblas0-pthread)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
