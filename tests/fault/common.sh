# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# Shared by the fault tests: inputs (the demo's synthetic data) and a config with frequent
# checkpoints over every kind of story item, plus result helpers. Sourced, not run.

failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
ok() { echo "ok   $*"; }
finish() { echo "$failures failure(s)"; [ "$failures" -eq 0 ]; }

# make_data WORK: the demo's tutorial-shaped data (240 cells x 60 genes, CD8A/CD8B markers) under
# WORK/demo, and a small signature config for it.
make_data() {
  "$BIN" --demo --demo-out "$1/demo" --demo-cells 240 --demo-genes 60 --demo-ticks 1 --progress none > /dev/null 2>&1 \
    || { echo "FAIL cannot write the demo data under $1/demo"; exit 1; }
  cat > "$1/demo/signature_config.json" <<'JSON'
{"cd8": {"signature_list": ["CD8A", "CD8B"], "signature_lat_dim": 4, "signature_out_dim": 2,
         "model": {"type": "FCRegressor", "hidden_neurons": 5},
         "loss": {"mse": {"type": "MSE", "init_weight": 0.5, "progressive_const": 0.1, "progressive_start_epoch": 2,
                          "progressive_mode": "increment", "max_weight": 1.0}}}}
JSON
}

# write_config DIR LOG_PATH [STORY]: DIR/config.json over ../demo (relative paths, so configs in
# sibling folders are byte-identical and so are their checkpoints). The default story has every
# kind of item: an interleave, a train action, a sum and a test, with tests and latent dumps, and
# checkpoints every few ticks.
write_config() {
  local dir=$1 log=$2
  local story=${3:-'[
    {"action": "train_hybrid", "ticks": 30, "hybrid_mode": "interleave", "prog_loss_weight_mode": "epoch_end",
     "split_configs": {
       "main": {"use_split": "overall_train", "batch_size": 32, "train_main_latent": "True", "train_pheno": "False",
                "train_signature": "False"},
       "cd8": {"use_split": "overall_train", "batch_size": 40, "train_main_latent": "False", "train_pheno": "False",
               "train_signature": "True"}},
     "make_logs": "True", "log_prefix": "hyb", "save_raw_loss": "True", "log_loss_groups": ["loss", "regularization", "loss_raw"],
     "perform_test": "True", "test_segment": 10, "perform_checkpoint": "True", "checkpoint_segment": 3,
     "checkpoint_prefix": "hyb",
     "tests": [{"on_split": "overall_test", "make_logs": "True", "log_prefix": "t", "dump_latent": "True",
                "latent_prefix": "test_latent"}]},
    {"action": "train", "use_split": "overall_train", "batch_size": 50, "epochs": 3, "train_main_latent": "True",
     "train_pheno": "False", "train_signature": "True", "make_logs": "True", "log_prefix": "train",
     "test_on_segment": "True", "test_segment": 4, "checkpoint_on_segment": "True", "checkpoint_segment": 2,
     "checkpoint_prefix": "trn",
     "tests": [{"on_split": "overall_test", "make_logs": "True", "dump_latent": "True", "latent_prefix": "trn"}]},
    {"action": "train_hybrid", "ticks": 10, "hybrid_mode": "sum", "prog_loss_weight_mode": "epoch_end",
     "split_configs": {
       "a": {"use_split": "overall_train", "batch_size": 40, "train_main_latent": "True", "train_pheno": "False",
             "train_signature": "True"},
       "b": {"use_split": "overall_test", "batch_size": 30, "train_main_latent": "True", "train_pheno": "False",
             "train_signature": "False"}},
     "make_logs": "True", "log_prefix": "sum", "perform_checkpoint": "True", "checkpoint_segment": 2,
     "checkpoint_prefix": "sum"},
    {"action": "test", "on_split": "all", "make_logs": "True", "log_prefix": "final", "dump_latent": "True",
     "latent_prefix": "final", "dump_reconstructed_output": "True"}]'}
  mkdir -p "$dir"
  cat > "$dir/config.json" <<JSON
{
  "log_path": "$log", "rnd_seed": 11, "dump_configs": "True", "dump_splits": "True",
  "dataset": {"type": "rna_count_sparse", "gene_expr_MM_path": "../demo/data/matrix.mtx",
              "gene_name_csv_path": "../demo/data/genes.csv", "cell_name_csv_path": "../demo/data/cells.csv",
              "pheno_csv_path": "../demo/data/pheno.csv", "signature_config_path": "../demo/signature_config.json",
              "selected_signature": ["cd8"]},
  "overall_train_test_split": {"type": "auto", "train_dec": 5, "seed": 3},
  "main_latent": {"encoder_neurons": 32, "decoder_neurons": 32, "latent_dim": 8,
    "loss": {"L2": {"type": "MSE", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 100}},
    "regularization": {"u": {"type": "SW2_uniform", "init_weight": 0.001, "progressive_const": 1.5,
      "progressive_start_epoch": 1, "max_weight": 0.1, "SW2_num_projections": 8, "uniform_low": -2, "uniform_high": 2}}},
  "optimizer": {"type": "RMSProp", "RMSProp_lr": 0.002, "RMSProp_alpha": 0.9, "RMSProp_momentum": 0.3},
  "story": $story
}
JSON
}

# same_files A B WHAT: every file under A and B identical, byte for byte, and the same names.
same_files() {
  local d
  # TensorBoard event files carry wall times in their names and records: checked by tests/tools instead
  if d=$(diff -r -x 'events.out.tfevents.*' "$1" "$2" 2>&1); then
    ok "$3: all outputs bitwise identical ($(find "$1" -type f ! -name 'events.out.tfevents.*' | wc -l) files)"
  else fail "$3: outputs differ from the uninterrupted run:"; echo "$d" | head -10; fi
}

# no_temps DIR WHAT: no *.tmp file left under DIR.
no_temps() {
  local t
  t=$(find "$1" -name '*.tmp')
  if [ -z "$t" ]; then ok "$2: no .tmp file left"; else fail "$2: temp files left: $t"; fi
}

# newest_checkpoint ERRFILE: the last checkpoint a -v run reported writing (empty if none).
newest_checkpoint() { sed -n 's/^sakura-train: checkpoint //p' "$1" | tail -1; }
