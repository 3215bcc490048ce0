#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# expect_abort.sh [--once] <seconds> <regex> <command...>: passes when the command fails (non-zero
# exit) within <seconds>, not by hanging, and its output matches the extended regex <regex>
# (--once: on exactly one line: an error every rank agreed on is written by one rank).
set -uo pipefail
once=0
if [[ ${1:-} == --once ]]; then
  once=1
  shift
fi
limit=$1 pattern=$2
shift 2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$SECONDS
timeout --kill-after=10 "$limit" "$@" > "$out" 2>&1
rc=$?
took=$((SECONDS - start))
cat "$out"
if ((rc == 124 || rc == 137)); then
  echo "FAIL: the job hung: still running after ${limit} s"
  exit 1
fi
if ((rc == 0)); then
  echo "FAIL: the job exited with status 0; an abort was expected"
  exit 1
fi
if ! grep -Eq -- "$pattern" "$out"; then
  echo "FAIL: exit status $rc after ${took} s, but no output line matches: $pattern"
  exit 1
fi
lines=$(grep -Ec -- "$pattern" "$out")
if ((once && lines != 1)); then
  echo "FAIL: $lines output lines match, one was expected (the error is written by one rank): $pattern"
  exit 1
fi
echo "PASS: exit status $rc after ${took} s with the expected message"
