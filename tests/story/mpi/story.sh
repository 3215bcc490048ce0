#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# mpirun -np N sakura-train as users run it (N = 2, 3: uneven splits), on setup.sh's data, one
# folder per rank so each file shows which rank wrote it.
#   outputs: only rank 0 writes (logs, TensorBoard, latents, checkpoints; the others' folders stay
#            empty); latents and --write-h5ad results are one file in cell order, equal to the
#            single-process files; a resume with the same N continues bit-identically; a resume
#            with another N warns; backed input gives the in-memory run's losses.
#   step:    (needs the distributed step: exit 77, reported as skipped, until the controller takes
#            the comm) N ranks give the single-process losses within 1e-5 relative, and the latents.
# Usage: story.sh outputs|step SAKURA_TRAIN WORK MPIEXEC [MPIEXEC_FLAGS...]
set -u
MODE=$1 BIN=$2 WORK=$3 MPIEXEC=$4
shift 4
FLAGS=("$@")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
. "$HERE/jobs.sh"
cd "$WORK" || exit 1
failures=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; failures=$((failures + 1)); }
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

# run NP JOB ARGS...: sakura-train on NP ranks in JOB/r<rank>; output in JOB.out, exit status returned
run() {
  local np=$1 dir=$2; shift 2
  timeout --kill-after=10 180 "$MPIEXEC" "${FLAGS[@]}" -n "$np" "$HERE/rank_dir.sh" "$WORK/$dir" \
    "$BIN" "$@" --eval-chunk 50 --progress none > "$dir.out" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || { echo "--- $dir (exit $rc):"; tail -20 "$dir.out"; }
  return $rc
}
# single JOB ARGS...: the same in one process, without mpirun
single() {
  local dir=$1; shift
  (cd "$dir/r0" && "$BIN" "$@" --eval-chunk 50 --progress none) > "$dir.out" 2>&1
}
# near A B: two CSV or TSV files hold the same rows and names, numbers within 1e-5 relative: each
# loss (TSV) of its own size, each per-cell value (CSV) of the file's largest (a latent near 0 is
# the difference of larger terms: its own size says nothing of the rounding it carries)
near() {
  $PY - "$1" "$2" <<'PY'
import csv, sys
def rows(p):
    with open(p) as f:
        return list(csv.reader(f, delimiter="\t" if p.endswith(".tsv") else ","))
a, b = rows(sys.argv[1]), rows(sys.argv[2])
def num(s):
    try: return float(s)
    except ValueError: return None
assert len(a) == len(b), f"{len(a)} rows vs {len(b)}"
scale = 0.1  # losses: an absolute floor of 1e-6
if sys.argv[1].endswith(".csv"):
    scale = max([abs(num(u)) for x in a for u in x if num(u) is not None] + [0.1])
for i, (x, y) in enumerate(zip(a, b)):
    assert len(x) == len(y), f"row {i}: {len(x)} fields vs {len(y)}"
    for u, v in zip(x, y):
        p, q = num(u), num(v)
        if p is None or q is None:
            assert u == v, f"row {i}: '{u}' vs '{v}'"
        else:
            assert abs(p - q) <= 1e-5 * max(abs(p), abs(q), scale), f"row {i}: {p} vs {q} (scale {scale})"
PY
}
has_step() { "$BIN" --version | grep -q "distributed step: yes"; }

if [ "$MODE" = step ] && ! has_step; then
  echo "SKIPPED: this build's controller has no distributed step yet (Controller(spec, comm))"
  exit 77
fi

# the single-process reference run (a folder per mode: ctest may run both modes at once)
job ref_$MODE 1
single ref_$MODE -c config.json || bad "single-process reference run"
ref=$WORK/ref_$MODE/r0/log

if [ "$MODE" = step ]; then
  for np in 2 3; do
    job step$np $np
    run $np step$np -c config.json || bad "np $np run"
    check "np $np: losses.tsv equals the single process's within 1e-5 relative" near "$ref/losses.tsv" "step$np/r0/log/losses.tsv"
    for f in "$ref"/*.csv; do
      check "np $np: $(basename "$f") equals the single process's within 1e-5 relative" near "$f" "step$np/r0/log/$(basename "$f")"
    done
  done
  echo "$failures failure(s)"
  [ "$failures" -eq 0 ]
  exit
fi

echo '[{"on_split": "all", "make_logs": "True", "test_main": "True", "test_signature": "True", "dump_latent": "True", "dump_reconstructed": "True", "dump_signature_out": "True", "latent_prefix": "inf"}]' > inference.json
job inf1 1
single inf1 -c config.json -i "$ref/checkpoint__tick_12.ckpt" -y "$WORK/inference.json" --write-h5ad results.h5ad \
  || bad "single-process inference"
has_h5ad=0
[ -f inf1/r0/results.h5ad ] && has_h5ad=1

for np in 2 3; do
  # a whole story: every output from rank 0, nothing from the others
  job np$np $np
  if run $np np$np -c config.json; then ok "np $np: the story runs"; else bad "np $np: the story runs"; fi
  for f in losses.tsv checkpoint__tick_3.ckpt checkpoint__tick_12.ckpt 3_all_cell_all_latent.csv splits.csv; do
    check "np $np: rank 0 wrote log/$f" test -s "np$np/r0/log/$f"
  done
  check "np $np: rank 0 wrote TensorBoard events" compgen -G "np$np/r0/log/events.out.tfevents.*" > /dev/null
  for ((r = 1; r < np; ++r)); do
    left=$(files "np$np/r$r")
    check "np $np: rank $r wrote nothing${left:+ (it wrote: $left)}" test -z "$left"
  done
  check "np $np: the checkpoint records $np ranks" grep -q DIST "np$np/r0/log/checkpoint__tick_12.ckpt"
  check "np $np: the single process's checkpoint has no DIST record" bash -c "! grep -q DIST '$ref/checkpoint__tick_12.ckpt'"
  for f in "$ref"/*.csv; do  # one file per dump, every cell once, in cell order (values: see the step test)
    check "np $np: $(basename "$f") has the single process's header and cells in order" \
      cmp -s <(cut -d, -f1 "$f"; head -1 "$f") <(cut -d, -f1 "np$np/r0/log/$(basename "$f")"; head -1 "np$np/r0/log/$(basename "$f")")
  done

  # inference on one checkpoint: the latents and --write-h5ad results gathered in cell order equal one process's
  job inf$np $np
  run $np inf$np -c config.json -i "$ref/checkpoint__tick_12.ckpt" -y "$WORK/inference.json" --write-h5ad results.h5ad \
    || bad "np $np: inference"
  inf=$(cd inf1/r0/log && ls *_inf.csv)
  check "np $np: inference latents (latent, reconstruction, head: $inf) equal one process's within 1e-5" \
    near "inf1/r0/log/$inf" "inf$np/r0/log/$inf"
  if [ $has_h5ad -eq 1 ]; then
    check "np $np: --write-h5ad results equal one process's within 1e-5 (obs names, every obsm)" $PY - \
      "inf1/r0/results.h5ad" "inf$np/r0/results.h5ad" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
assert list(a["obs"]["_index"][:]) == list(b["obs"]["_index"][:])
assert sorted(a["obsm"]) == sorted(b["obsm"]) and len(a["obsm"]) > 0
for k in a["obsm"]:
    x, y = a["obsm"][k][:], b["obsm"][k][:]
    assert x.shape == y.shape, (k, x.shape, y.shape)
    assert np.all(np.abs(x - y) <= 1e-5 * np.maximum(np.abs(x), np.abs(y)) + 1e-6), k
PY
    left=$(files "inf$np/r1")
    check "np $np: inference: rank 1 wrote nothing${left:+ (it wrote: $left)}" test -z "$left"
  fi

  # stopped with --max-ticks, resumed on the same ranks: the loss log of the uninterrupted run
  job res$np $np
  run $np res$np -c config.json --max-ticks 7 || bad "np $np: run stopped at tick 7"
  run $np res$np -c config.json -r log/checkpoint__tick_6.ckpt || bad "np $np: resume"
  check "np $np: resumed losses.tsv == uninterrupted losses.tsv (bit-identical)" \
    cmp "np$np/r0/log/losses.tsv" "res$np/r0/log/losses.tsv"
  if has_step; then
    for f in "$ref"/*.csv; do
      check "np $np: resumed $(basename "$f") == uninterrupted" cmp "np$np/r0/log/$(basename "$f")" "res$np/r0/log/$(basename "$f")"
    done
  fi

  # backed: each rank reads its rows from the .h5ad: the in-memory run's losses
  if [ -f data/data.h5ad ] && ! cmp -s config.json config_backed.json; then
    job backed$np $np config_backed.json
    run $np backed$np -c config.json || bad "np $np: backed run"
    check "np $np: backed losses.tsv == in-memory losses.tsv" cmp "np$np/r0/log/losses.tsv" "backed$np/r0/log/losses.tsv"
  fi
done

# another number of ranks: the same computation continues, with a warning
job other 3
cp -r np2/r0/log other/r0/
run 3 other -c config.json -r log/checkpoint__tick_6.ckpt || bad "np 2 checkpoint resumed on 3 ranks"
check "np 2 checkpoint resumed on 3 ranks: warned" grep -q "written by a run on 2 ranks, resumed on 3" other.out
job other1 2
cp -r "$ref" other1/r0/
run 2 other1 -c config.json -r log/checkpoint__tick_6.ckpt || bad "single-process checkpoint resumed on 2 ranks"
check "single-process checkpoint resumed on 2 ranks: warned" grep -q "written by a run on 1 rank, resumed on 2" other1.out

# the demo is a single-process affair
job demo 2
run 2 demo --demo --demo-out demo_out
check "--demo under mpirun: refused with a message" grep -q "demo runs in one process" demo.out

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
