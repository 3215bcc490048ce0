#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# Fault test: a full disk. With log_path on a small tmpfs, sakura-train must stop with exit 1 and an
# error naming the file, "disk full?" and the system's reason, leave no temp file, and every
# checkpoint written before must resume once there is space again; resumed from the newest, the run
# ends bitwise identical to an uninterrupted one.
# The tmpfs is mounted in a private mount namespace (root, or an unprivileged user namespace);
# where neither is possible the test exits 77, which ctest reports as skipped (never as passed).
# Usage: full_disk.sh SAKURA_TRAIN WORK_DIR
set -u
BIN=$1 WORK=$2
if [ -z "${SAKURA_FAULT_NS:-}" ]; then
  for ns in "unshare --mount" "unshare --user --map-root-user --mount"; do
    if $ns true 2> /dev/null; then SAKURA_FAULT_NS=1 exec $ns "$0" "$@"; fi
  done
  echo "SKIPPED: no private mount namespace here (needs root or user namespaces) to mount a small tmpfs"
  exit 77
fi
. "$(dirname "$0")/common.sh"
rm -rf "$WORK" && mkdir -p "$WORK"
make_data "$WORK"
export OMP_NUM_THREADS=1

write_config "$WORK/ref" "disk/log/"
mkdir -p "$WORK/ref/disk"
(cd "$WORK/ref" && "$BIN" -c config.json --progress none) || { echo "FAIL the reference run failed"; exit 1; }
need=$(du -sk "$WORK/ref/disk/log" | cut -f1)

# a disk with room for about half of what the run writes
D=$WORK/full
write_config "$D" "disk/log/"
mkdir -p "$D/disk"
if ! mount -t tmpfs -o size=$((need / 2))k tmpfs "$D/disk" 2> "$WORK/mount.err"; then
  echo "SKIPPED: cannot mount a tmpfs: $(cat "$WORK/mount.err")"
  exit 77
fi
echo "the run writes ${need} KiB; the disk holds $((need / 2)) KiB"
(cd "$D" && "$BIN" -c config.json -v --progress none 2> "$WORK/err"); rc=$?
msg=$(grep 'error:' "$WORK/err")
if [ "$rc" -eq 1 ] && grep -q "disk/log/.*(disk full?): No space left on device" <<<"$msg"; then ok "full disk: exit 1, '$msg'"
else fail "full disk: exit $rc (expected 1 with a named error), stderr:"; tail -3 "$WORK/err"; fi
no_temps "$D/disk" "full disk"
mapfile -t ckpts < <(sed -n 's/^sakura-train: checkpoint //p' "$WORK/err")
[ "${#ckpts[@]}" -ge 2 ] || fail "only ${#ckpts[@]} checkpoint(s) before the disk was full: the test is too small"

# space again: every checkpoint resumes (each from the state the failed run left)
mount -o remount,size=64m "$D/disk" || { fail "cannot enlarge the tmpfs"; finish; exit; }
cp -a "$D/disk/log" "$WORK/left"
resumed=0
for c in "${ckpts[@]}"; do
  rm -rf "$D/disk/log" && cp -a "$WORK/left" "$D/disk/log"
  if (cd "$D" && "$BIN" -c config.json -r "$c" --max-ticks 1 --progress none 2> "$WORK/err"); then resumed=$((resumed + 1))
  else fail "checkpoint $c written before the disk was full does not resume:"; tail -2 "$WORK/err"; fi
done
ok "$resumed of ${#ckpts[@]} checkpoints written before the disk was full resume"
rm -rf "$D/disk/log" && cp -a "$WORK/left" "$D/disk/log"
(cd "$D" && "$BIN" -c config.json -r "${ckpts[-1]}" --progress none 2> "$WORK/err") || { fail "resume to the end"; tail -2 "$WORK/err"; }
same_files "$WORK/ref/disk/log" "$D/disk/log" "resumed from the newest checkpoint"
umount "$D/disk"
finish
