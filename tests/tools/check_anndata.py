#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
"""anndata's view of what `sakura-train synth` and `sakura-train convert` write, against scipy and
pandas reading the inputs themselves (Debian's python3-anndata, >= 0.8).

Usage: check_anndata.py SAKURA_TRAIN SOURCE_DIR WORK_DIR
"""
import os
import shutil
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

TRAIN, SRC, WORK = sys.argv[1:4]
FIXTURES = os.path.join(SRC, "tests", "io", "data")


def run(*args):
    subprocess.run([TRAIN, *args, "-q"], check=True)


def same_x(a, b):
    a, b = sp.csr_matrix(a), sp.csr_matrix(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a != b).nnz == 0, "X differs"


def check_synth():
    path = os.path.join(WORK, "synth.h5ad")
    run("synth", "-o", path, "--cells", "3000", "--genes", "120", "--types", "4", "--block", "700")
    a = ad.read_h5ad(path)
    assert a.shape == (3000, 120)
    assert isinstance(a.X, sp.csr_matrix) and a.X.dtype == np.float32
    zeros = 1 - a.X.nnz / (3000 * 120)
    assert 0.8 < zeros < 0.95, zeros
    assert a.obs_names.is_unique and a.obs_names[0] == "cell0"
    assert list(a.obs["cell_type"].cat.categories) == ["CD8 T", "type1", "type2", "type3"]
    assert a.var["marker_of"].iloc[:2].tolist() == ["CD8 T", "CD8 T"]
    # every type's markers are higher in that type than elsewhere
    dense = a.X.toarray()
    for t in a.obs["cell_type"].cat.categories:
        genes = (a.var["marker_of"] == t).to_numpy()
        cells = (a.obs["cell_type"] == t).to_numpy()
        assert dense[cells][:, genes].mean() > 2 * dense[~cells][:, genes].mean(), t
    return a


def check_mtx(name, budget):
    out = os.path.join(WORK, "from_" + name + ".h5ad")
    run("convert", "--mtx", os.path.join(FIXTURES, name), "--genes", os.path.join(FIXTURES, "genes.csv"),
        "--cells", os.path.join(FIXTURES, "cells.csv"), "--pheno", os.path.join(FIXTURES, "pheno.csv"),
        "-o", out, "--memory", budget)
    a = ad.read_h5ad(out)
    genes = pd.read_csv(os.path.join(FIXTURES, "genes.csv"), index_col=0)["x"].tolist()
    cells = pd.read_csv(os.path.join(FIXTURES, "cells.csv"), index_col=0)["x"].tolist()
    m = sp.csr_matrix(scipy.io.mmread(os.path.join(FIXTURES, name)))
    same_x(a.X, (m.T if m.shape == (len(genes), len(cells)) else m).astype(np.float32))
    assert a.var_names.tolist() == genes and a.obs_names.tolist() == cells
    pheno = pd.read_csv(os.path.join(FIXTURES, "pheno.csv"), index_col=0)
    assert a.obs.columns.tolist() == pheno.columns.tolist()
    for c in pheno.columns:
        got, want = a.obs[c], pheno[c]
        if want.dtype == object:
            assert got.dtype == "category", (c, got.dtype)
            got = got.astype(object)
        else:
            assert got.dtype == want.dtype, (c, got.dtype, want.dtype)
        assert got.reset_index(drop=True).equals(want.reset_index(drop=True)), (c, got.tolist(), want.tolist())


def check_h5ad(a):
    """A CSC and a dense copy of the synthetic atlas, with obsm and uns, back to CSR."""
    a = a[:500].copy()
    a.obsm["X_pca"] = np.arange(1000, dtype=np.float32).reshape(500, 2)
    a.uns["note"] = "kept"
    for kind, x in (("csc", sp.csc_matrix(a.X)), ("dense", a.X.toarray())):
        src = os.path.join(WORK, kind + ".h5ad")
        b = a.copy()
        b.X = x
        b.write_h5ad(src, compression="gzip" if kind == "csc" else None)
        out = os.path.join(WORK, kind + "_csr.h5ad")
        run("convert", "--h5ad", src, "-o", out, "--memory", "64K", "--gzip", "1")
        c = ad.read_h5ad(out)
        assert isinstance(c.X, sp.csr_matrix)
        same_x(c.X, a.X)
        assert c.obs.equals(a.obs) and c.var.equals(a.var)
        assert np.array_equal(c.obsm["X_pca"], a.obsm["X_pca"]) and c.uns["note"] == "kept"


def check_unordered_mtx(a):
    """Genes x cells in gene order (scipy's mmwrite): counted per cell, then gathered in many passes."""
    a = a[:400].copy()
    mtx = os.path.join(WORK, "gxc.mtx")
    scipy.io.mmwrite(mtx, sp.coo_matrix(a.X.T), precision=9)
    pd.DataFrame({"x": a.var_names}, index=range(1, a.n_vars + 1)).to_csv(os.path.join(WORK, "g.csv"))
    pd.DataFrame({"x": a.obs_names}, index=range(1, a.n_obs + 1)).to_csv(os.path.join(WORK, "c.csv"))
    a.obs.to_csv(os.path.join(WORK, "p.csv"))
    out = os.path.join(WORK, "gxc.h5ad")
    run("convert", "--mtx", mtx, "--genes", os.path.join(WORK, "g.csv"), "--cells", os.path.join(WORK, "c.csv"),
        "--pheno", os.path.join(WORK, "p.csv"), "-o", out, "--memory", "100K")
    c = ad.read_h5ad(out)
    same_x(c.X, a.X)
    assert c.obs_names.equals(a.obs_names)
    assert c.obs["cell_type"].astype(str).equals(a.obs["cell_type"].astype(str))
    assert np.array_equal(c.obs["total_counts"].to_numpy(), a.obs["total_counts"].to_numpy())


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    a = check_synth()
    for name in ("counts_gxc.mtx", "counts_cxg.mtx", "dense_gxc.mtx", "pattern_gxc.mtx"):
        for budget in ("24", "1M"):
            check_mtx(name, budget)
    check_h5ad(a)
    check_unordered_mtx(a)
    print("anndata reads what synth and convert write")


if __name__ == "__main__":
    main()
