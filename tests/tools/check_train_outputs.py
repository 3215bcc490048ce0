#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
"""What a training run writes for scanpy and TensorBoard users, read by their own tools:

* --write-h5ad: anndata opens the file; every obsm key equals the latent / head-output columns of
  the CSV dump of the same (final) model on all cells, obs equals the phenotype CSV, uns["sakura"]
  holds losses.tsv and the config; --h5ad-results-only and --h5ad-with-x variants.
* convert -c: the config's data as a CSR .h5ad equal to --h5ad-with-x's.
* TensorBoard: the event files of a fresh run, of a run stopped and resumed from a checkpoint
  (the lines after the checkpoint are cut from losses.tsv and purged for TensorBoard) and of -x.

Usage: check_train_outputs.py SAKURA_TRAIN WORK_DIR
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_tfevents  # noqa: E402

TRAIN, WORK = sys.argv[1:3]


def train(*args):
    subprocess.run([TRAIN, "--progress", "none", *args], check=True)


def make_config():
    """The demo's data and config, plus a cell-type classifier head, tests dumping everything on all cells."""
    demo = os.path.join(WORK, "demo")
    train("--demo", "--demo-out", demo, "--demo-cells", "240", "--demo-genes", "80", "--demo-ticks", "1", "-x")
    cfg = json.load(open(os.path.join(demo, "config.json")))
    types = sorted(pd.read_csv(os.path.join(demo, "data", "pheno.csv"), index_col=0)["cell_type"].unique())
    with open(os.path.join(demo, "pheno.json"), "w") as f:
        json.dump({"ct": {"type": "categorical", "pheno_df_key": "cell_type", "order": types,
                          "post_procedure": [{"type": "ToOrdinal"}], "pheno_lat_dim": 3,
                          "pheno_out_dim": len(types), "model": {"type": "LinClassifier"},
                          "loss": {"nll": {"type": "NLL", "init_weight": 1.0}}}}, f)
    cfg["dataset"]["pheno_meta_path"] = os.path.join(demo, "pheno.json")
    cfg["dataset"]["selected_pheno"] = ["ct"]
    item = cfg["story"][0]
    item["ticks"] = 20
    item["test_segment"] = 10
    item["checkpoint_segment"] = 10
    item["split_configs"]["ct_focused"] = {
        "use_split": "overall_train", "batch_size": 50, "train_main_latent": "False", "train_pheno": "True",
        "train_signature": "False", "selected_pheno": {"ct": {"loss": "*", "regularization": "*"}}}
    item["tests"] = [
        {"on_split": "overall_test", "make_logs": "True", "log_prefix": "overall_test"},
        {"on_split": "all", "make_logs": "False", "dump_latent": "True", "dump_predicted_phenos": "True",
         "dump_predicted_signatures": "True", "latent_prefix": "all"}]
    return demo, cfg


def write_config(demo, cfg, name, log):
    cfg = dict(cfg, log_path=os.path.join(WORK, log) + "/")
    path = os.path.join(demo, name)
    json.dump(cfg, open(path, "w"), indent=1)
    return path, cfg["log_path"]


def check_h5ad(path, log, data_dir, results_only=False, with_x=False):
    a = ad.read_h5ad(path)
    dump = max(glob.glob(os.path.join(log, "*_all.csv")), key=os.path.getmtime)  # the last test: the final model
    csv = pd.read_csv(dump, index_col=0, float_precision="round_trip")
    assert a.obs_names.tolist() == csv.index.tolist()
    groups = {"X_sakura_main": "main.", "X_sakura_cd8": "cd8.", "X_sakura_cd8_out": "cd8.out.",
              "X_sakura_ct": "ct.", "X_sakura_ct_out": "ct.out."}
    assert sorted(a.obsm.keys()) == sorted(groups), list(a.obsm.keys())
    for key, prefix in groups.items():
        cols = [c for c in csv.columns if c.startswith(prefix) and c[len(prefix):].isdigit()]
        want = csv[cols].to_numpy(dtype=np.float32)
        assert a.obsm[key].dtype == np.float32 and a.obsm[key].shape == want.shape, (key, a.obsm[key].shape)
        assert np.array_equal(a.obsm[key], want), key
    losses = a.uns["sakura"]["losses"]
    tsv = pd.read_csv(os.path.join(log, "losses.tsv"), sep="\t", float_precision="round_trip")
    assert losses["tick"].tolist() == tsv["tick"].tolist()
    assert losses["name"].astype(str).tolist() == tsv["name"].tolist()
    assert np.array_equal(losses["value"].to_numpy(), tsv["value"].to_numpy())
    assert json.loads(a.uns["sakura"]["config"])["story"][0]["ticks"] == 20
    classes = sorted(pd.read_csv(os.path.join(data_dir, "pheno.csv"), index_col=0)["cell_type"].unique())
    assert list(a.uns["sakura"]["classes"]["ct"]) == classes
    if results_only:
        assert a.n_vars == 0 and a.obs.columns.empty and a.X is None
        return
    pheno = pd.read_csv(os.path.join(data_dir, "pheno.csv"), index_col=0)
    assert a.obs.columns.tolist() == pheno.columns.tolist()
    assert a.obs["cell_type"].astype(str).tolist() == pheno["cell_type"].tolist()
    assert a.var_names.tolist() == pd.read_csv(os.path.join(data_dir, "genes.csv"), index_col=0)["x"].tolist()
    if with_x:
        import scipy.io
        assert (sp.csr_matrix(a.X) != sp.csr_matrix(scipy.io.mmread(os.path.join(data_dir, "matrix.mtx")).T.astype(np.float32))).nnz == 0
    else:
        assert a.X is None


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    demo, cfg = make_config()
    data_dir = os.path.join(demo, "data")

    # a whole run: results beside the input's obs/var, TensorBoard beside losses.tsv
    path, log = write_config(demo, cfg, "full.json", "full")
    train("-c", path, "--write-h5ad", os.path.join(WORK, "full.h5ad"))
    check_h5ad(os.path.join(WORK, "full.h5ad"), log, data_dir)
    check_tfevents.check(log, 1)

    # stopped at tick 15 after the checkpoint at 10, resumed: 2 event files, ticks 10-14 purged
    path, log = write_config(demo, cfg, "resume.json", "resume")
    train("-c", path, "--max-ticks", "15")
    train("-c", path, "-r", os.path.join(log, "checkpoint__tick_10.ckpt"), "--write-h5ad",
          os.path.join(WORK, "resumed.h5ad"), "--h5ad-results-only")
    check_h5ad(os.path.join(WORK, "resumed.h5ad"), log, data_dir, results_only=True)
    check_tfevents.check(log, 2)

    # -x: no event files; the input's X on request
    path, log = write_config(demo, cfg, "quiet.json", "quiet")
    train("-c", path, "-x", "--write-h5ad", os.path.join(WORK, "with_x.h5ad"), "--h5ad-with-x")
    assert not glob.glob(os.path.join(log, "events.out.tfevents.*"))
    check_h5ad(os.path.join(WORK, "with_x.h5ad"), log, data_dir, with_x=True)

    # convert -c: the config's dataset section, as the run read it
    out = os.path.join(WORK, "converted.h5ad")
    subprocess.run([TRAIN, "convert", "-c", path, "-o", out, "-q"], check=True)
    a, b = ad.read_h5ad(out), ad.read_h5ad(os.path.join(WORK, "with_x.h5ad"))
    assert (a.X != b.X).nnz == 0 and a.obs.equals(b.obs) and a.var_names.equals(b.var_names)
    print("anndata and TensorBoard's protos read what sakura-train wrote")


if __name__ == "__main__":
    main()
