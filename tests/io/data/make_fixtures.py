#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
"""Regenerates the reader fixtures in this folder (committed, so the tests never need Python).

Run with Debian's python (it has anndata 0.8, scipy and h5py): /usr/bin/python3 make_fixtures.py
Every file holds the same 4 cells x 5 genes matrix X below (or its integer version XI), so the C++
tests compare each reader against one expected matrix. Row 2 is empty on purpose.
"""
import os

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))
GENES = ["CD8A", "CD8B", "CD4", "MT-CO1", "GENE5"]
CELLS = ["AAAC-1", "AAAG-1", "cell,3", 'cell"4']  # a comma and a quote: CSV quoting must hold
X = np.array([[1, 0, 0, 2.5, 0],
              [0, 0, 0, 0, 0],
              [0, 3, 0.1, 0, 7],
              [4, 0, 0, 0, 123456]], dtype=np.float64)
XI = np.rint(X).astype(np.int64)  # 0.1 -> 0, 2.5 -> 2
XI[2, 2] = 1


def path(name):
    return os.path.join(HERE, name)


def write_r_csv(name, values):
    """The layout of R's write.csv(data.frame(x = values)): "","x" then "1","CD8A"."""
    with open(path(name), "w", newline="") as f:
        f.write('"","x"\r\n')  # CRLF like R on Windows; the reader must not care
        for i, v in enumerate(values, 1):
            f.write('"%d","%s"\r\n' % (i, v.replace('"', '""')))


def write_mtx():
    # Seurat's writeMM orientation (genes x cells), integer counts.
    scipy.io.mmwrite(path("counts_gxc.mtx"), sp.coo_matrix(XI.T), field="integer")
    # Cells x genes, real values (scipy writes them with full precision).
    scipy.io.mmwrite(path("counts_cxg.mtx"), sp.coo_matrix(X), field="real", precision=17)
    # Pattern: every stored entry is 1.
    scipy.io.mmwrite(path("pattern_gxc.mtx"), sp.coo_matrix(X.T != 0), field="pattern")
    # Dense array format (column-major values), genes x cells.
    scipy.io.mmwrite(path("dense_gxc.mtx"), X.T, field="real", precision=17)


def pheno_frame():
    return pd.DataFrame({
        "celltype": pd.Categorical(["T", "B", None, "T"], categories=["T", "B", "NK"]),
        "barcode": ["s1", "s2", "s3", "s4"],  # all distinct: anndata keeps it a string array
        "n_genes": np.array([10, 0, 3, 2], dtype=np.int64),
        "score": np.array([0.5, np.nan, -1.25, 1e-7], dtype=np.float64),
        "pct": np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32),
        "doublet": np.array([False, True, False, False]),
        "n_umi": pd.array([5, None, 7, 8], dtype="Int64"),
    }, index=pd.Index(CELLS))


def write_pheno_csv():
    df = pheno_frame()[["celltype", "barcode", "n_genes", "score"]]
    df.to_csv(path("pheno.csv"))  # NaN and a missing category become empty fields
    # Same table with cells 3 and 4 swapped: upstream raises, we name the row.
    df.iloc[[0, 1, 3, 2]].to_csv(path("pheno_swapped.csv"))


def write_h5ad():
    var = pd.DataFrame(index=pd.Index(GENES))
    for kind, mat in [("dense", X.astype(np.float32)), ("csr", sp.csr_matrix(X.astype(np.float32))),
                      ("csc", sp.csc_matrix(X.astype(np.float32)))]:
        a = ad.AnnData(mat, obs=pheno_frame(), var=var.copy())
        if kind == "csc":
            a.var.index.name = "gene_symbols"  # stored as var/gene_symbols, named by var's _index attribute
        a.write_h5ad(path("x_%s.h5ad" % kind))


def write_legacy_h5ad():
    """An anndata 0.7 / h5sparse style file, written by hand: fixed-length strings, h5sparse attributes,
    obs/__categories, no column-order, a CSR row with unsorted and duplicated column indices."""
    with h5py.File(path("legacy_fixed.h5ad"), "w") as f:
        csr = sp.csr_matrix(X.astype(np.float32))
        g = f.create_group("X")
        g.attrs["h5sparse_format"] = np.bytes_("csr")
        g.attrs["h5sparse_shape"] = np.array(X.shape, dtype=np.int64)
        # Row 0 stored as (3: 2.0), (0: 1.0), (3: 0.5): unsorted, and 2.0 + 0.5 = 2.5 once summed.
        data = np.concatenate([[2.0, 1.0, 0.5], csr.data[2:]]).astype(np.float32)
        indices = np.concatenate([[3, 0, 3], csr.indices[2:]]).astype(np.int32)
        indptr = (csr.indptr + np.array([0] + [1] * 4)).astype(np.int64)
        g["data"], g["indices"], g["indptr"] = data, indices, indptr
        obs = f.create_group("obs")
        obs.attrs["_index"] = np.bytes_("_index")
        obs["_index"] = np.array([c.encode() for c in CELLS], dtype="S8")
        obs["celltype"] = np.array([0, 1, -1, 0], dtype=np.int8)
        obs.create_group("__categories")["celltype"] = np.array([b"T", b"B"], dtype="S2")
        # A space-padded fixed-length string column, through h5py's low-level API.
        tid = h5py.h5t.C_S1.copy()
        tid.set_size(6)
        tid.set_strpad(h5py.h5t.STR_SPACEPAD)
        ds = h5py.h5d.create(obs.id, b"batch", tid, h5py.h5s.create_simple((4,)))
        ds.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array([b"b1", b"b22", b"b1", b"b333"], dtype="S6"), mtype=tid)
        var = f.create_group("var")
        var["_index"] = np.array([g.encode() for g in GENES], dtype="S6")


def write_bad_h5ad():
    # X's shape disagrees with the names.
    a = ad.AnnData(X[:3].astype(np.float32), obs=pd.DataFrame(index=CELLS[:3]), var=pd.DataFrame(index=GENES))
    a.write_h5ad(path("bad_shape.h5ad"))
    with h5py.File(path("bad_shape.h5ad"), "a") as f:
        del f["obs/_index"]
        f["obs/_index"] = np.array([c.encode() for c in CELLS], dtype=object).astype(h5py.string_dtype())
    # anndata < 0.7 stored obs as one compound dataset.
    with h5py.File(path("obs_compound.h5ad"), "w") as f:
        f["X"] = X.astype(np.float32)
        f["obs"] = np.array([(b"c1",)], dtype=[("index", "S4")])
        f.create_group("var")["_index"] = np.array([g.encode() for g in GENES], dtype="S6")


def write_damaged_h5ad():
    """Declared shapes far beyond what the file stores: each used to become a multi-GB allocation
    (or a stall reading fill values). Unwritten chunked datasets take no space, so the files stay tiny."""
    def base(name, kind="csr", **kw):
        mat = {"csr": sp.csr_matrix, "csc": sp.csc_matrix}[kind](X.astype(np.float32))
        ad.AnnData(mat, obs=pd.DataFrame(index=CELLS), var=pd.DataFrame(index=GENES)).write_h5ad(path(name), **kw)
        return h5py.File(path(name), "a")
    with base("csc_huge_shape.h5ad", "csc") as f:  # CSC with a huge shape attribute
        f["X"].attrs["shape"] = np.array([2**31 - 1, 5], dtype=np.int64)
    with base("indptr_huge.h5ad") as f:  # an indptr of 2^32 entries (never written)
        del f["X/indptr"]
        f["X"].create_dataset("indptr", shape=(2**32,), dtype=np.int64, chunks=(1024,))
    with base("data_huge.h5ad") as f:  # 2^33 values declared, 7 stored
        f["X/data"].resize((2**33,))
    with base("index_huge.h5ad") as f:  # obs names and a dense X of 2^40 rows, nothing stored
        del f["obs/_index"], f["X"]
        f["obs"].create_dataset("_index", shape=(2**40,), dtype=h5py.string_dtype(), chunks=(4096,))
        f.create_dataset("X", shape=(2**40, 5), dtype=np.float32, chunks=(1024, 5))
    with base("obs_short_column.h5ad") as f:  # an obs column shorter than obs
        f["obs"]["n"] = np.array([1, 2, 3], dtype=np.int64)
        f["obs"].attrs["column-order"] = np.array(["n"], dtype=object).astype(h5py.string_dtype())
    with base("dup_names.h5ad") as f:  # gene 'CD4' twice, cell 'AAAC-1' twice
        del f["var/_index"], f["obs/_index"]
        f["var/_index"] = np.array(["CD8A", "CD4", "CD4", "MT-CO1", "CD4-1"], dtype=object).astype(h5py.string_dtype())
        f["obs/_index"] = np.array(["AAAC-1", "B", "AAAC-1", "C"], dtype=object).astype(h5py.string_dtype())
    # Valid and compressed: every array gzip-compressed (and chunked), strings too.
    ad.AnnData(sp.csr_matrix(X.astype(np.float32)), obs=pheno_frame(),
               var=pd.DataFrame(index=pd.Index(GENES))).write_h5ad(path("x_gzip.h5ad"), compression="gzip")


if __name__ == "__main__":
    write_r_csv("genes.csv", GENES)
    write_r_csv("cells.csv", CELLS)
    write_mtx()
    write_pheno_csv()
    write_h5ad()
    write_legacy_h5ad()
    write_bad_h5ad()
    write_damaged_h5ad()
