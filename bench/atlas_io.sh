#!/usr/bin/env bash
# Atlas-scale file I/O: time, peak memory (/usr/bin/time -v) and file sizes of `sakura-train synth`
# (N cells x G genes), `sakura-train convert` of that .h5ad to a gzip one and of a CSC copy, and of
# upstream's .mtx layout (genes x cells, in cell order as Seurat's writeMM writes it, and in gene
# order as scipy's mmwrite of a CSR matrix writes it, which needs the counting pass and gathers).
#
# Usage: bench/atlas_io.sh [OUT_DIR]       (default: a new temporary folder, removed afterwards)
# Environment: CELLS (default 2000000), GENES (2000), MTX_CELLS (cells of the .mtx cases, 200000),
#   MEMORY (convert's --memory, 1G), SAKURA_TRAIN (default build/tools/sakura-train),
#   PYTHON (Debian's, with anndata and scipy: /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
train=$(realpath "${SAKURA_TRAIN:-build/tools/sakura-train}")
py=${PYTHON:-/usr/bin/python3}
cells=${CELLS:-2000000} genes=${GENES:-2000} mtx_cells=${MTX_CELLS:-200000} memory=${MEMORY:-1G}
out=${1:-}
if [[ -z "$out" ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

# one line per step: seconds, peak RSS, output size
measure() {
  local name=$1 file=$2
  shift 2
  /usr/bin/time -v "$@" -q 2> "$out/$name.time"
  local secs rss
  secs=$(grep "Elapsed (wall clock)" "$out/$name.time" | awk '{print $NF}')
  rss=$(grep "Maximum resident set size" "$out/$name.time" | awk '{print $NF}')
  printf "%-28s %10s wall  %8.1f MiB peak RSS  %9.1f MiB file\n" "$name" "$secs" "$(echo "$rss / 1024" | bc -l)" \
    "$(echo "$(stat -c %s "$file") / 1048576" | bc -l)"
}

echo "synth ${cells} x ${genes}; convert --memory ${memory}; mtx cases ${mtx_cells} cells; $(nproc) cores"
measure synth "$out/atlas.h5ad" "$train" synth -o "$out/atlas.h5ad" --cells "$cells" --genes "$genes"
measure "convert h5ad -> gzip 4" "$out/atlas_gz.h5ad" "$train" convert --h5ad "$out/atlas.h5ad" -o "$out/atlas_gz.h5ad" \
  --gzip 4 --memory "$memory"

# smaller inputs in the other layouts, written by anndata / scipy
measure "synth (mtx cases)" "$out/small.h5ad" "$train" synth -o "$out/small.h5ad" --cells "$mtx_cells" --genes "$genes"
"$py" - "$out" <<'PY'
import sys, os
import anndata as ad, pandas as pd, scipy.io, scipy.sparse as sp
out = sys.argv[1]
a = ad.read_h5ad(os.path.join(out, "small.h5ad"))
b = a.copy(); b.X = sp.csc_matrix(a.X); b.write_h5ad(os.path.join(out, "small_csc.h5ad"))
scipy.io.mmwrite(os.path.join(out, "cell_order.mtx"), sp.csc_matrix(a.X.T).tocoo(), precision=8)   # by cell
scipy.io.mmwrite(os.path.join(out, "gene_order.mtx"), sp.csr_matrix(a.X.T).tocoo(), precision=8)   # by gene
pd.DataFrame({"x": a.var_names}, index=range(1, a.n_vars + 1)).to_csv(os.path.join(out, "genes.csv"))
pd.DataFrame({"x": a.obs_names}, index=range(1, a.n_obs + 1)).to_csv(os.path.join(out, "cells.csv"))
a.obs.to_csv(os.path.join(out, "pheno.csv"))
PY
measure "convert CSC h5ad" "$out/from_csc.h5ad" "$train" convert --h5ad "$out/small_csc.h5ad" -o "$out/from_csc.h5ad" \
  --memory "$memory"
for order in cell gene; do
  measure "convert mtx (${order} order)" "$out/from_${order}.h5ad" "$train" convert --mtx "$out/${order}_order.mtx" \
    --genes "$out/genes.csv" --cells "$out/cells.csv" --pheno "$out/pheno.csv" -o "$out/from_${order}.h5ad" \
    --memory "$memory"
done
ls -la "$out"/*.mtx
"$py" -c "
import anndata as ad, sys
a = ad.read_h5ad('$out/atlas_gz.h5ad', backed='r')
print('anndata opens the converted atlas:', a.shape, a.X)
"
