#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# require_gpus.sh <n> <device-count program> <command...>: runs the command when at least n CUDA
# devices are usable; otherwise says so and exits 77 (ctest's SKIP_RETURN_CODE: reported as skipped).
set -uo pipefail
need=$1 probe=$2
shift 2
have=$("$probe" 2>/dev/null) || have=0
if ! [[ "$have" =~ ^[0-9]+$ ]] || ((have < need)); then
  echo "SKIPPED: this job needs ${need} CUDA device(s); ${have:-0} found"
  exit 77
fi
exec "$@"
