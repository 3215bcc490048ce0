#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# Backed (streaming) .h5ad input against issue 16's targets, reference and backed in the same run:
#   memory:     peak RSS (/usr/bin/time -v) of a backed `sakura-train` run (training, then a test on
#               overall_test that dumps its latents) on BIG_CELLS vs SMALL_CELLS cells x 2000 genes
#               (target: at most 1.2x);
#   loader:     cells/s the loader alone hands over, random cells (exact) and blocks, on those files
#               (and on the tutorial-shaped ones when they are there), from a cold page cache and warm;
#   throughput: ticks/s of the tutorial shape (10,000 genes, batch 100; the pbmc5k story with its
#               cd8 signature) in memory vs backed exact (target 0.7x) and blocks (target 0.9x), on an
#               uncompressed and a gzip-compressed file (sakura_stream_read train: one process; the
#               file is in the page cache after the first run, as it is after a run's first pass).
#
# Usage: bench/stream.sh [OUT_DIR]    (default: a new temporary folder, removed afterwards; the
#        2,000,000-cell file takes ~3.5 GB and ~5 minutes to write)
# Environment: BIG_CELLS (2000000), SMALL_CELLS (200000), TUT_CELLS (50000), TICKS (throughput
#   ticks per run, 600), ROUNDS (3), MEM_TICKS (300), STEPS ("memory loader throughput"),
#   IN_MEMORY (files also run in memory for reference: "small"; "small big" needs ~4 GB),
#   SAKURA_TRAIN (build/tools/sakura-train), STREAM_READ (build/bench/sakura_stream_read),
#   PYTHON (Debian's /usr/bin/python3: writes the configs with json only).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
train=$(realpath "${SAKURA_TRAIN:-build/tools/sakura-train}")
reader=$(realpath "${STREAM_READ:-build/bench/sakura_stream_read}")
py=${PYTHON:-/usr/bin/python3}
big=${BIG_CELLS:-2000000} small=${SMALL_CELLS:-200000} tut=${TUT_CELLS:-50000}
ticks=${TICKS:-600} rounds=${ROUNDS:-3} mem_ticks=${MEM_TICKS:-300} steps=${STEPS:-memory loader throughput}
in_memory=${IN_MEMORY:-small}
out=${1:-}
if [[ -z "$out" ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
echo "bench/stream.sh: $(nproc) cores, OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}, files in $out"

# config NAME H5AD TICKS TEST: the pbmc5k tutorial config (cd4cd8 -> cd8, SPEC §9) on H5AD, the
# story trained for TICKS ticks without checkpoints; TEST=1 adds a test on overall_test at the end
# (its latents dumped), TEST=0 trains only.
config() {
  "$py" - "$root" "$out" "$@" <<'PY'
import json, os, sys
root, out, name, h5ad, ticks, test = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6] == "1"
cfg = json.load(open(os.path.join(root, "examples/configs/pbmc5k_config.json")))
sig = json.load(open(os.path.join(root, "examples/configs/pbmc5k_signature_config.json")))
json.dump(sig, open(os.path.join(out, "signature.json"), "w"))
cfg["log_path"] = os.path.join(out, "log_" + name) + "/"
cfg["dataset"] = {"type": "h5ad", "h5ad_path": h5ad, "signature_config_path": os.path.join(out, "signature.json"),
                  "selected_signature": ["cd8"]}
cfg["dump_splits"] = "False"
item = cfg["story"][0]
item["ticks"] = ticks
item["split_configs"]["cd8_focused"]["selected_signature"] = {"cd8": {"loss": "*", "regularization": "*"}}
item["perform_checkpoint"] = "False"
item["perform_test"] = "True" if test else "False"
item["test_segment"] = ticks
item["tests"] = [t for t in item["tests"] if t["on_split"] == "overall_test"]
json.dump(cfg, open(os.path.join(out, name + ".json"), "w"), indent=1)
PY
}

# synth FILE CELLS GENES [--gzip L]: a synthetic atlas, unless FILE is there already
synth() {
  local file=$1 cells=$2 genes=$3
  shift 3
  [[ -f "$file" ]] || "$train" synth -o "$file" --cells "$cells" --genes "$genes" -q "$@"
}

peak_mib() { echo "$(grep "Maximum resident set size" "$1" | awk '{print $NF}') / 1024" | bc -l; }

if [[ " $steps " == *" memory "* || " $steps " == *" loader "* ]]; then
  synth "$out/small.h5ad" "$small" 2000
  synth "$out/big.h5ad" "$big" 2000
fi
if [[ " $steps " == *" throughput "* ]]; then
  synth "$out/tut.h5ad" "$tut" 10000
  synth "$out/tut_gz.h5ad" "$tut" 10000 --gzip 4
fi

if [[ " $steps " == *" memory "* ]]; then
  echo "== memory: backed sakura-train, $mem_ticks ticks + a test on overall_test (latents dumped)"
  for n in small big; do
    config "mem_$n" "$out/$n.h5ad" "$mem_ticks" 1
    /usr/bin/time -v "$train" -c "$out/mem_$n.json" --backed --progress none -x > "$out/mem_$n.out" 2> "$out/mem_$n.time"
    printf "%-6s %s  peak RSS %8.1f MiB  wall %s\n" "$n" "$(du -h "$out/$n.h5ad" | cut -f1)" "$(peak_mib "$out/mem_$n.time")" \
      "$(grep "Elapsed (wall clock)" "$out/mem_$n.time" | awk '{print $NF}')"
  done
  echo "ratio big / small: $(echo "$(peak_mib "$out/mem_big.time") / $(peak_mib "$out/mem_small.time")" | bc -l | cut -c1-5)x (target <= 1.2)"
  for n in $in_memory; do  # the reference: the same config with X in memory
    /usr/bin/time -v "$train" -c "$out/mem_$n.json" --progress none -x > "$out/memin_$n.out" 2> "$out/memin_$n.time"
    printf "%-6s in memory: peak RSS %8.1f MiB  wall %s\n" "$n" "$(peak_mib "$out/memin_$n.time")" \
      "$(grep "Elapsed (wall clock)" "$out/memin_$n.time" | awk '{print $NF}')"
  done
  rm -f "$out"/log_mem_*/*.csv  # the dumped latents (1 GB for the big file)
fi

if [[ " $steps " == *" loader "* ]]; then
  echo "== loader alone (batches of 100): cold (the file's pages dropped from the page cache), then warm"
  for n in small big tut tut_gz; do
    [[ -f "$out/$n.h5ad" ]] || continue
    echo "-- $n.h5ad"
    dd if="$out/$n.h5ad" iflag=nocache count=0 status=none  # posix_fadvise(DONTNEED): this file only
    "$reader" "$out/$n.h5ad" --seconds 5
    "$reader" "$out/$n.h5ad" --seconds 5
  done
fi

if [[ " $steps " == *" throughput "* ]]; then
  echo "== throughput: tutorial shape, $tut cells x 10000 genes, batch 100"
  config tut "$out/tut.h5ad" 1000000 0
  for f in tut tut_gz; do
    "$reader" train "$out/tut.json" --h5ad "$out/$f.h5ad" --ticks "$ticks" --rounds "$rounds"
  done
fi
