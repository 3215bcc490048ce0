# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# Sourced by the mpirun sakura-train tests: job folders made from setup.sh's files.
# job DIR RANKS [CONFIG]: DIR/r0 .. DIR/r<RANKS-1>, each with the config (as config.json), the
# signature config and a link to the shared data, and nothing else.
job() {
  local dir=$1 ranks=$2 config=${3:-config.json}
  rm -rf "$dir"
  for ((r = 0; r < ranks; ++r)); do
    mkdir -p "$dir/r$r"
    cp "$WORK/$config" "$dir/r$r/config.json"
    cp "$WORK/signature_config.json" "$dir/r$r/"
    ln -s "$WORK/data" "$dir/r$r/data"
  done
}
# files DIR: the files a rank's run left in DIR (what it was given excluded), sorted.
files() {
  (cd "$1" && find . \( -type f -o -type d \) ! -name . ! -name config.json ! -name signature_config.json \
    ! -path './data' | sort)
}
