#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# sakura-train as users run it: exit codes and messages for bad input (never a crash), the demo,
# the real pbmc5k configs, and a run stopped with --max-ticks then resumed with -r.
# Usage: cli_test.sh SAKURA_TRAIN SOURCE_DIR WORK_DIR
set -u
BIN=$1 SRC=$2 WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK"
failures=0

# expect CODE PATTERN... -- ARGS: runs the program, checks the exit code and that stdout+stderr
# contain every pattern (fixed strings).
expect() {
  local code=$1; shift
  local patterns=()
  while [ "$1" != "--" ]; do patterns+=("$1"); shift; done
  shift
  local out rc
  out=$(cd "$WORK" && "$BIN" "$@" 2>&1); rc=$?
  local ok=1
  [ "$rc" -eq "$code" ] || ok=0
  for p in "${patterns[@]}"; do grep -qF -- "$p" <<<"$out" || ok=0; done
  if [ $ok -eq 1 ]; then
    echo "ok   sakura-train $* (exit $rc)"
  else
    echo "FAIL sakura-train $*: exit $rc (expected $code), output:"; echo "$out" | tail -20
    echo "     expected to contain: ${patterns[*]}"
    failures=$((failures + 1))
  fi
}

# usage errors: exit 2
expect 0 "usage: sakura-train" "--demo" -- --help
expect 2 "unknown option '--bogus'" -- --bogus
expect 2 "--max-ticks needs an integer, got 'abc'" -- -c x.json --max-ticks abc
expect 2 "--max-ticks must be positive" -- --max-ticks 0
expect 2 "-c needs a value" -- -c
expect 2 "external (PyTorch) modules is not supported" -- -e
expect 2 "--progress must be bar, lines or none" -- --progress fancy

# bad files: exit 1 with the file named
expect 1 "error: cannot open JSON file 'missing.json'" -- -c missing.json
printf '{"log_path": "x", ' > "$WORK/broken.json"
expect 1 "malformed JSON in 'broken.json'" -- -c broken.json
echo '{"log_path": "log"}' > "$WORK/nodata.json"
expect 1 "missing required key config.dataset" -- -c nodata.json

# the real pbmc5k config, unmodified, in a directory laid out as its relative paths expect:
# upstream's story selects `cd4cd8`, which does not exist; rejected at load (before any data)
mkdir -p "$WORK/pbmc/documentation/VT_PBMC_CD4CD8_0.01_1"
cp "$SRC/examples/configs/pbmc5k_signature_config.json" "$WORK/pbmc/documentation/VT_PBMC_CD4CD8_0.01_1/signature_config.json"
cp "$SRC/examples/configs/pbmc5k_config.json" "$WORK/pbmc/config.json"
expect 1 "story[0].split_configs.cd8_focused.selected_signature: no block named 'cd4cd8'; configured: cd8" \
  -- -c pbmc/config.json -C pbmc
# with cd4cd8 corrected, the data files are what is missing, and the message names the file
sed 's/"cd4cd8"/"cd8"/' "$SRC/examples/configs/pbmc5k_config.json" > "$WORK/pbmc/fixed.json"
expect 1 "data/docuPBMC/genenames_hv10k.csv: cannot open file" -- -c pbmc/fixed.json -C pbmc

# the demo (small): data, config and logs, metrics printed
expect 0 "Pearson r" "NN cell-type accuracy" "untrained" -- --demo --demo-out demo --demo-cells 300 \
  --demo-genes 60 --demo-ticks 40 --progress none
[ -f "$WORK/demo/data/matrix.mtx" ] && [ -f "$WORK/demo/log/losses.tsv" ] || { echo "FAIL demo files"; failures=$((failures + 1)); }

# the pbmc5k config (cd4cd8 corrected, shorter) on the demo's tutorial-shaped data, placed where the
# config's relative paths point: run, stop with --max-ticks, resume with -r
D=$WORK/pbmc/data/docuPBMC
mkdir -p "$D"
cp "$WORK/demo/data/matrix.mtx" "$D/lognorm_hv10k.mtx"; cp "$WORK/demo/data/genes.csv" "$D/genenames_hv10k.csv"
cp "$WORK/demo/data/cells.csv" "$D/cell_names.csv"; cp "$WORK/demo/data/pheno.csv" "$D/pheno_df.csv"
sed -e 's/"ticks": 5000/"ticks": 24/' -e 's/"checkpoint_segment": 500/"checkpoint_segment": 8/' \
    -e 's/"test_segment": 500/"test_segment": 8/' "$WORK/pbmc/fixed.json" > "$WORK/pbmc/run.json"
LOG=$WORK/pbmc/documentation/VT_PBMC_CD4CD8_0.01_1/log
expect 0 "stopped after 12 ticks" -- -c pbmc/run.json -C pbmc --max-ticks 12 --progress lines
expect 0 "checkpoint" -- -c pbmc/run.json -C pbmc -r "$LOG/checkpoint__tick_8.ckpt" --progress lines -v
[ -f "$LOG/checkpoint__tick_24.ckpt" ] || { echo "FAIL no final checkpoint after resume"; failures=$((failures + 1)); }
cp "$LOG/losses.tsv" "$WORK/resumed.tsv"
expect 0 "" -- -c pbmc/run.json -C pbmc --progress none
cmp -s "$LOG/losses.tsv" "$WORK/resumed.tsv" && echo "ok   resumed loss log == uninterrupted loss log" \
  || { echo "FAIL resumed loss log differs from the uninterrupted one"; failures=$((failures + 1)); }

# inference (-i/-y): test items on a checkpoint's model
echo '[{"on_split": "overall_test", "make_logs": "True", "test_main": "True", "dump_latent": "True", "latent_prefix": "inf"}]' > "$WORK/inf.json"
expect 0 "" -- -c pbmc/run.json -C pbmc -i "$LOG/checkpoint__tick_24.ckpt" -y inf.json
ls "$LOG"/*_inf.csv > /dev/null 2>&1 && echo "ok   inference latents written" || { echo "FAIL inference latents"; failures=$((failures + 1)); }

# bad checkpoints and bad data
head -c 100 /dev/urandom > "$WORK/junk.ckpt"
expect 1 "'junk.ckpt' is not a sakura checkpoint" -- -c pbmc/run.json -C pbmc -r junk.ckpt
head -c 5000 "$LOG/checkpoint__tick_8.ckpt" > "$WORK/cut.ckpt"
expect 1 "checkpoint 'cut.ckpt'" "truncated" -- -c pbmc/run.json -C pbmc -r cut.ckpt
expect 1 "cannot open checkpoint 'nope.ckpt': No such file or directory" -- -c pbmc/run.json -C pbmc -r nope.ckpt
expect 1 "cannot read checkpoint '$LOG': it is a directory; give a checkpoint file (the newest in it is '$LOG/" \
  -- -c pbmc/run.json -C pbmc -r "$LOG"
sed 's/"encoder_neurons": 200/"encoder_neurons": 100/' "$WORK/pbmc/run.json" > "$WORK/pbmc/other.json"
expect 1 "checkpoint__tick_8.ckpt': parameter 'model.pre_encoder" "[200, 60] in the file but [100, 60] in the model" \
  -- -c pbmc/other.json -C pbmc -r "$LOG/checkpoint__tick_8.ckpt"
# a signature gene absent from the data: named, with its signature
mkdir -p "$WORK/badsig/documentation/VT_PBMC_CD4CD8_0.01_1" && ln -sfn "$WORK/pbmc/data" "$WORK/badsig/data"
sed 's/"CD8B"/"CD8Z"/' "$SRC/examples/configs/pbmc5k_signature_config.json" \
  > "$WORK/badsig/documentation/VT_PBMC_CD4CD8_0.01_1/signature_config.json"
expect 1 "signature gene(s) 'CD8Z' (signature 'cd8') not among the data set's 60 genes" -- -c pbmc/run.json -C badsig
# a damaged matrix: the file and line are named
mkdir -p "$WORK/badmtx/data/docuPBMC" && cp -r "$WORK/pbmc/documentation" "$WORK/badmtx/"
cp "$D"/*.csv "$WORK/badmtx/data/docuPBMC/" && head -5 "$D/lognorm_hv10k.mtx" > "$WORK/badmtx/data/docuPBMC/lognorm_hv10k.mtx"
expect 1 "lognorm_hv10k.mtx: the size line declares" -- -c pbmc/run.json -C badmtx
expect 2 "-r/--resume and -i/--inference exclude each other" -- -c pbmc/run.json -r a -i b
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
