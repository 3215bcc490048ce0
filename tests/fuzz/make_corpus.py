#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
"""Writes the fuzz seeds checked in under tests/fuzz/corpus/<kind>/ (small valid inputs, and a few
that exercise a reader's corners); tests/io/data adds its .mtx, .csv and .h5ad files to these at
fuzz time, and the checkpoint seeds come from the harness itself (SAKURA_FUZZ_WRITE_SEEDS).
Run: python3 tests/fuzz/make_corpus.py   (standard library only)"""
import gzip
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def put(kind, name, data):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# MatrixMarket: coordinate real/integer/pattern, array, comments, duplicates, gzip
put("mtx", "coordinate_real.mtx", "%%MatrixMarket matrix coordinate real general\n% a comment\n3 4 4\n"
    "1 1 1.5\n2 3 -2e-3\n3 4 7\n3 4 1\n")
put("mtx", "coordinate_integer.mtx", "%%MatrixMarket matrix coordinate integer general\n\n2 2 2\n1 2 3\n2 1 4\n")
put("mtx", "coordinate_pattern.mtx", "%%MatrixMarket matrix coordinate pattern general\n2 3 2\n1 3\n2 1\n")
put("mtx", "array_real.mtx", "%%MatrixMarket matrix array real general\n2 2\n1\n0\n-0.5\n3.25\n")
with open(os.path.join(ROOT, "tests", "io", "data", "counts_gxc.mtx"), "rb") as f:
    put("mtx", "counts_gxc.mtx.gz", gzip.compress(f.read(), mtime=0))

# CSV: R's write.csv name list, quoting, pandas NA values, a header one field short
put("csv", "names_r.csv", '"","x"\n"1","CD8A"\n"2","CD8B"\n"3","MS4A1"\n')
put("csv", "quoted.csv", 'cell,type,note\nc1,"T, CD8","say ""hi"""\nc2,B,"two\nlines"\n')
put("csv", "pheno_na.csv", ",batch,score\nc1,NA,1.5\nc2,b2,\nc3,nan,NaN\n")
put("csv", "short_header.csv", "batch,score\nc1,b1,1\nc2,b2,2\n")


def config_seed(config, signature=None, pheno=None):
    parts = [json.dumps(config, indent=1)]
    for extra in (signature, pheno):
        if extra is None:
            break
        parts.append(json.dumps(extra, indent=1))
    return "\0".join(parts)


# config: upstream's tutorial config (paths relative to the harness's directory), and a small
# phenotype + signature config with a train, a test and a summed hybrid story
with open(os.path.join(ROOT, "examples", "configs", "pbmc5k_config.json")) as f:
    tutorial = json.load(f)
with open(os.path.join(ROOT, "examples", "configs", "pbmc5k_signature_config.json")) as f:
    tutorial_sig = json.load(f)
tutorial["dataset"]["signature_config_path"] = "signature.json"
tutorial["log_path"] = "log/"
put("config", "tutorial.json", config_seed(tutorial, tutorial_sig))

term = {"init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 1}
small = {
    "log_path": "log/", "rnd_seed": 7,
    "dataset": {"type": "rna_count_sparse", "gene_expr_MM_path": "m.mtx", "gene_name_csv_path": "g.csv",
                "cell_name_csv_path": "c.csv", "pheno_csv_path": "p.csv",
                "signature_config_path": "signature.json", "pheno_meta_path": "pheno.json",
                "selected_signature": ["s"], "selected_pheno": ["p"]},
    "overall_train_test_split": {"type": "auto", "train_dec": 7, "seed": 1},
    "main_latent": {"encoder_neurons": 8, "decoder_neurons": 8, "latent_dim": 3,
                    "loss": {"mse": dict(term, type="MSE")},
                    "regularization": {"sw2": dict(term, type="SW2_uniform", init_weight=0.1, uniform_low=-1,
                                                   uniform_high=1, SW2_num_projections=50)}},
    "optimizer": {"type": "RMSProp", "RMSProp_lr": 0.01, "RMSProp_alpha": 0.9},
    "story": [
        {"action": "train", "epochs": 2, "use_split": "overall_train", "batch_size": 4, "make_logs": "True"},
        {"action": "test", "on_split": "overall_test", "make_logs": "True"},
        {"action": "train_hybrid", "ticks": 3, "hybrid_mode": "sum",
         "split_configs": {"main": {"use_split": "overall_train", "batch_size": 4, "train_main_latent": "True",
                                    "train_pheno": "True", "train_signature": "False"},
                           "sig": {"use_split": "all", "batch_size": 2, "train_main_latent": "False",
                                   "train_pheno": "False", "train_signature": "True"}}},
    ],
}
small_sig = {"s": {"signature_list": ["g1", "g2"], "signature_lat_dim": 2, "signature_out_dim": 2,
                   "model": {"type": "LinRegressor"}, "loss": {"mse": dict(term, type="MSE")}, "regularization": {}}}
small_pheno = {"p": {"pheno_lat_dim": 2, "pheno_out_dim": 3, "model": {"type": "LinClassifier"},
                     "loss": {"nll": dict(term, type="NLL")},
                     "regularization": {"l2": dict(term, type="L2_regularization", init_weight=0.1)}}}
put("config", "small_story.json", config_seed(small, small_sig, small_pheno))
