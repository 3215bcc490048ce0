#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# Fault test: sakura-train killed with SIGKILL at random moments of a run with frequent checkpoints
# (several kills per run, each resumed from the newest checkpoint) ends with every output (loss
# log, latent CSVs, checkpoints, dumps) bitwise identical to an uninterrupted run and no temp file
# left; SIGTERM stops a run cleanly (exit 143, the checkpoint to resume from named) and the resumed
# run ends identical too. The kill moments come from SEED (bash's RANDOM), so a failure reruns the
# same schedule; where a kill lands in the program still depends on the machine's speed.
# Usage: kill_resume.sh SAKURA_TRAIN WORK_DIR [SEED] [RUNS] [KILLS]
set -u
BIN=$1 WORK=$2 SEED=${3:-1} RUNS=${4:-3} KILLS=${5:-8}
. "$(dirname "$0")/common.sh"
rm -rf "$WORK" && mkdir -p "$WORK"
make_data "$WORK"
export OMP_NUM_THREADS=1

# the uninterrupted run
write_config "$WORK/ref" "log/"
(cd "$WORK/ref" && "$BIN" -c config.json --progress none) || { echo "FAIL the reference run failed"; exit 1; }
echo "reference run: $(ls "$WORK/ref/log"/*.ckpt | wc -l) checkpoints; seed $SEED"

RANDOM=$SEED
landed_total=0 cleaned_total=0
for run in $(seq 1 "$RUNS"); do
  dir=$WORK/run$run
  write_config "$dir" "log/"
  newest="" rc=1 landed=0 schedule=""
  for kill in $(seq 1 "$KILLS"); do
    # a random moment: after 0-2 more checkpoints of this attempt, then 0-29 ms more
    after=$((RANDOM % 3)) delay=$((RANDOM % 30))
    schedule+=" $after+${delay}ms"
    args=(-c config.json -v --progress none)
    [ -n "$newest" ] && args+=(-r "$newest")
    (cd "$dir" && exec "$BIN" "${args[@]}" 2> "$dir/attempt.err") &
    pid=$!
    for _ in $(seq 1 5000); do
      n=$(grep -c '^sakura-train: checkpoint ' "$dir/attempt.err" 2> /dev/null)
      [ "${n:-0}" -ge "$after" ] && break
      grep -q '^sakura-train: done' "$dir/attempt.err" 2> /dev/null && break
      sleep 0.002
    done
    sleep "0.0$(printf '%02d' "$delay")"
    kill -KILL "$pid" 2> /dev/null
    { wait "$pid"; } 2> /dev/null; rc=$?  # (no "Killed" line from bash)
    [ "$rc" -eq 137 ] && landed=$((landed + 1))
    cleaned_total=$((cleaned_total + $(grep -c 'a temporary file left by an interrupted run' "$dir/attempt.err")))
    n=$(newest_checkpoint "$dir/attempt.err")
    [ -n "$n" ] && newest=$n
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 137 ]; then
      fail "run $run, attempt $kill: exit $rc"; tail -5 "$dir/attempt.err"; break
    fi
    [ "$rc" -eq 0 ] && break  # finished before the kill
  done
  if [ "$rc" -ne 0 ]; then  # resume to the end
    args=(-c config.json -v --progress none)
    [ -n "$newest" ] && args+=(-r "$newest")
    (cd "$dir" && "$BIN" "${args[@]}" 2> "$dir/attempt.err") || { fail "run $run: the final resume failed"; tail -5 "$dir/attempt.err"; }
    cleaned_total=$((cleaned_total + $(grep -c 'a temporary file left by an interrupted run' "$dir/attempt.err")))
  fi
  landed_total=$((landed_total + landed))
  echo "run $run: kills after checkpoints+ms:$schedule; $landed landed"
  rm -f "$dir/attempt.err"
  same_files "$WORK/ref/log" "$dir/log" "run $run ($landed kills)"
  no_temps "$dir" "run $run"
done
echo "$landed_total kills landed in $RUNS runs; $cleaned_total temp files of killed runs removed at the next start"
[ "$landed_total" -ge "$RUNS" ] || fail "only $landed_total kills landed: the test did not exercise resumption"

# SIGTERM: a clean stop once the first checkpoint exists; exit 128+15, the message names the checkpoint
for try in 1 2 3; do
  dir=$WORK/term
  rm -rf "$dir" && write_config "$dir" "log/"
  (cd "$dir" && exec "$BIN" -c config.json -v --progress none 2> "$dir/err") &
  pid=$!
  for _ in $(seq 1 4000); do grep -q '^sakura-train: checkpoint ' "$dir/err" 2> /dev/null && break; sleep 0.005; done
  kill -TERM "$pid"
  wait "$pid"; rc=$?
  [ "$rc" -ne 0 ] && break
  echo "note: the run ended before SIGTERM arrived (try $try)"
done
msg=$(grep 'interrupted by signal 15' "$dir/err")
if [ "$rc" -eq 143 ] && grep -q 'continue from checkpoint' <<<"$msg"; then ok "SIGTERM: exit 143, '$msg'"
else fail "SIGTERM: exit $rc, stderr:"; tail -3 "$dir/err"; fi
no_temps "$dir" "SIGTERM"
ckpt=$(sed -n "s/.*continue from checkpoint '\([^']*\)'.*/\1/p" "$dir/err")
(cd "$dir" && "$BIN" -c config.json -r "$ckpt" --progress none 2> "$dir/err") || { fail "resume after SIGTERM"; tail -3 "$dir/err"; }
rm -f "$dir/err"
same_files "$WORK/ref/log" "$dir/log" "resumed after SIGTERM"
finish
