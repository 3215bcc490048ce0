#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# Fault test that needs no privileges: a file-size limit (ulimit -f) makes writes fail as on a full
# disk (EFBIG, "File too large", instead of ENOSPC). Whichever output meets it first (the loss log,
# a JSON dump, a checkpoint, a latent CSV) the run must end with exit 1 and an error naming that
# file, and leave no temp file: never exit 0 with a log cut short or an empty dump.
# Usage: file_limit.sh SAKURA_TRAIN WORK_DIR
set -u
BIN=$1 WORK=$2
. "$(dirname "$0")/common.sh"
rm -rf "$WORK" && mkdir -p "$WORK"
make_data "$WORK"
export OMP_NUM_THREADS=1

# limited NAME KIB PATTERN [STORY] [SED]: a run whose files may not exceed KIB KiB must fail naming
# PATTERN, a file name or its start (the config edited by the sed expression SED, if given). Runs
# pass -x unless TENSORBOARD=1: the event files would otherwise meet the limit first.
limited() {
  local name=$1 kib=$2 pattern=$3 dir=$WORK/$1
  write_config "$dir" "log/" "${4:-}"
  [ -n "${5:-}" ] && sed -i -e "$5" "$dir/config.json"
  local tb=-x
  [ "${TENSORBOARD:-0}" = 1 ] && tb=
  (ulimit -f "$kib" && cd "$dir" && exec "$BIN" -c config.json $tb --progress none) > /dev/null 2> "$dir/err"
  local rc=$? msg
  msg=$(grep 'error:' "$dir/err")
  if [ "$rc" -eq 1 ] && grep -q -- "'$pattern[^']*' (disk full?): File too large" <<<"$msg"; then ok "$name: exit 1, '$msg'"
  else fail "$name: exit $rc (expected 1 naming $pattern), stderr:"; tail -3 "$dir/err"; fi
  no_temps "$dir" "$name"
}

logs_only='[{"action": "train_hybrid", "ticks": 300, "hybrid_mode": "interleave",
  "split_configs": {"main": {"use_split": "overall_train", "batch_size": 32, "train_main_latent": "True",
                             "train_pheno": "False", "train_signature": "False"}},
  "make_logs": "True", "log_prefix": "hyb", "save_raw_loss": "True", "log_loss_groups": ["loss", "regularization", "loss_raw"]}]'
latents='[{"action": "test", "on_split": "all", "make_logs": "True", "log_prefix": "final", "dump_latent": "True",
  "latent_prefix": "final", "dump_reconstructed_output": "True"}]'
limited "loss log" 16 "log/losses.tsv" "$logs_only"
TENSORBOARD=1 limited "TensorBoard events" 16 "log/events.out.tfevents" "$logs_only"
# the dumps of the config: a signature config with long remarks, and no splits.csv
sed 's/"cd8": {/"cd8": {"remarks": "'"$(printf 'x%.0s' $(seq 1 3000))"'", /' "$WORK/demo/signature_config.json" > "$WORK/big_sig.json"
limited "JSON dump" 2 "log/signature_config.json.tmp" "$logs_only" \
  's|"../demo/signature_config.json"|"../big_sig.json"|; s|"dump_splits": "True"|"dump_splits": "False"|'
[ -s "$WORK/JSON dump/log/gene_meta.json" ] || fail "JSON dump: gene_meta.json, written before, is missing or empty"
limited "checkpoint" 24 "log/hyb_tick_3.ckpt.tmp"
limited "latent CSV" 32 "log/0_final.csv.tmp" "$latents"
finish
