#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# The data and configs of the mpirun sakura-train tests: the demo's tutorial-shaped data (mtx and,
# with HDF5, .h5ad), its config with relative paths, and one folder per job and rank
# (<job>/r<rank>, see jobs.sh), so that each rank's files show which rank wrote them.
# Usage: setup.sh SAKURA_TRAIN WORK
set -eu
BIN=$1 WORK=$2
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$WORK" && mkdir -p "$WORK"
cd "$WORK"
OMP_NUM_THREADS=1 "$BIN" --demo --demo-out demo --demo-cells 240 --demo-genes 60 --demo-ticks 12 --progress none > /dev/null
mv demo/data data
# the demo's config with paths relative to the rank's folder, checkpoints and tests every 3 ticks
sed -e "s#$WORK/demo/data/#./data/#g" -e "s#$WORK/demo/#./#g" demo/config.json > config.json
cp demo/signature_config.json signature_config.json
rm -rf demo
grep -q '"log_path": "./log/"' config.json
if "$BIN" convert --mtx data/matrix.mtx --genes data/genes.csv --cells data/cells.csv --pheno data/pheno.csv \
    -o data/data.h5ad -q 2> /dev/null; then
  # the same data, X read from the .h5ad as it trains
  /usr/bin/python3 - config.json config_backed.json <<'PY' || cp config.json config_backed.json
import json, sys
c = json.load(open(sys.argv[1]))
d = c["dataset"]
for k in ("gene_expr_MM_path", "gene_name_csv_path", "cell_name_csv_path", "pheno_csv_path"):
    d.pop(k)
d.update({"type": "h5ad", "h5ad_path": "./data/data.h5ad", "backed": "True"})
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
fi
echo "setup done in $WORK"

# the jobs whose ranks must all stop with a message (CMakeLists.txt: sakura_mpi_test EXPECT_ABORT)
. "$HERE/jobs.sh"
sed 's/"rnd_seed": 3407/"rnd_seed": 7/' config.json > config_seed7.json
job mismatch 3
for r in 1 2; do cp config_seed7.json mismatch/r$r/config.json; done  # rank 0 differs from the others
job missing 3
for r in 1 2; do  # ranks 1 and 2 lack the matrix
  rm missing/r$r/data && mkdir missing/r$r/data
  for f in data/*; do [ "$f" = data/matrix.mtx ] || ln -s "$WORK/$f" "missing/r$r/$f"; done
done
sed -e 's/"ticks": 12,/"ticks": 100000,/' -e 's/"checkpoint_segment": 3,/"checkpoint_segment": 100000,/' \
  -e 's/"test_segment": 3,/"test_segment": 100000,/' config.json > config_long.json
for np in 2 3; do
  job write_fails_np$np $np
  mkdir -p write_fails_np$np/r0/log/checkpoint__tick_3.ckpt/in_the_way  # rank 0 cannot write its first checkpoint
  job dies_np$np $np config_long.json
done
