#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# rank_dir.sh JOB [--kill-after LINES] COMMAND...: run by mpirun on every rank; runs COMMAND in
# JOB/r<rank> (jobs.sh's folders). --kill-after: the last rank's COMMAND is killed (SIGKILL, by
# its process id) once rank 0's losses.tsv has LINES lines, as a rank that dies in mid-run.
set -u
job=$1
shift
rank=${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${PMI_RANK:-0}}}
size=${OMPI_COMM_WORLD_SIZE:-${PMI_SIZE:-1}}
cd "$job/r$rank" || exit 1
if [ "${1:-}" = --kill-after ]; then
  lines=$2
  shift 2
  if [ "$rank" -eq $((size - 1)) ]; then
    "$@" &
    pid=$!
    until [ "$(cat ../r0/log/losses.tsv 2> /dev/null | wc -l)" -ge "$lines" ]; do
      kill -0 "$pid" 2> /dev/null || exit 1  # ended before it could be killed
      sleep 0.05
    done
    kill -KILL "$pid"
    wait "$pid"
    echo "rank_dir.sh: rank $rank (process $pid) killed in mid-run"
    exit 3  # not 137: support/expect_abort.sh reads 124 and 137 as its own time limit
  fi
fi
exec "$@"
