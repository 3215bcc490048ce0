// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The built-in demo (`sakura-train --demo`): synthetic data shaped like the pbmc5k tutorial's is
/// written as upstream's files (mtx + CSVs), the tutorial's own config (with SPEC §9's `cd4cd8`
/// story typo corrected to `cd8`, smaller sizes) is run end to end through Session and Runner, and
/// the model is scored before and after training on held-out cells: the cd8 signature head's
/// correlation with the CD8A/CD8B expression, and the k-NN cell-type accuracy of the main latent.
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "sakura/story/runner.hpp"
#include "sakura/data/synthetic.hpp"
#include "sakura/io/mtx_writer.hpp"
#include "sakura/story/metrics.hpp"

namespace sakura::story {

/// The upstream pbmc5k tutorial config (examples/configs/pbmc5k_config.json), embedded.
inline const char* tutorial_config_json() {
  return R"json({
  "remarks": "",
  "log_path": "./documentation/VT_PBMC_CD4CD8_0.01_1/log/",
  "reproducible": "True",
  "rnd_seed": 3407,
  "dataset": {
    "type": "rna_count_sparse",
    "gene_expr_MM_path": "./data/docuPBMC/lognorm_hv10k.mtx",
    "gene_name_csv_path": "./data/docuPBMC/genenames_hv10k.csv",
    "cell_name_csv_path": "./data/docuPBMC/cell_names.csv",
    "pheno_csv_path": "./data/docuPBMC/pheno_df.csv",
    "pheno_df_dtype": {"Batch": "string", "Main_cluster_name": "string"},
    "pheno_df_na_filter": "False",
    "expr_mat_pre_slice": "False",
    "signature_config_path": "./documentation/VT_PBMC_CD4CD8_0.01_1/signature_config.json",
    "selected_signature": ["cd8"]
  },
  "device": "cpu",
  "overall_train_test_split": {"type": "auto", "train_dec": 5, "seed": 3407},
  "main_latent": {
    "encoder_neurons": 200, "decoder_neurons": 200, "latent_dim": 50,
    "loss": {
      "L2": {"type": "MSE", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 100},
      "L1": {"type": "L1", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 100}
    },
    "regularization": {
      "uniform_shape_unsupervised": {"type": "SW2_uniform", "init_weight": 0.0001, "progressive_const": 1.01,
        "progressive_start_epoch": 1, "max_weight": 1.0, "SW2_num_projections": 50, "uniform_low": -10, "uniform_high": 10}
    }
  },
  "optimizer": {"type": "RMSProp", "RMSProp_lr": 0.001, "RMSProp_alpha": 0.9},
  "dump_configs": "True", "dump_splits": "True", "preslice_tests": "True", "persist_test_set": "True",
  "story": [{
    "action": "train_hybrid", "ticks": 5000, "hybrid_mode": "interleave",
    "split_configs": {
      "main_lat_reconstruct": {"use_split": "overall_train", "batch_size": 100, "train_main_latent": "True",
        "train_pheno": "False", "train_signature": "False"},
      "cd8_focused": {"use_split": "overall_train", "batch_size": 100, "train_main_latent": "False",
        "train_pheno": "False", "train_signature": "True",
        "selected_signature": {"cd4cd8": {"loss": "*", "regularization": "*"}}}
    },
    "prog_loss_weight_mode": "epoch_end", "make_logs": "True", "log_prefix": "hybrid", "save_raw_loss": "True",
    "log_loss_groups": ["loss", "regularization", "loss_raw", "regularization_raw"],
    "perform_checkpoint": "True", "checkpoint_on_segment": "True", "checkpoint_segment": 500,
    "checkpoint_prefix": "checkpoint_", "checkpoint_save_arch": "True", "checkpoint_every_epoch": "False",
    "perform_test": "True", "test_segment": 500,
    "tests": [
      {"on_split": "all", "make_logs": "False", "dump_latent": "True", "latent_prefix": "all_cell_all_latent"},
      {"on_split": "overall_test", "make_logs": "True", "log_prefix": "overall_test", "dump_latent": "True",
       "latent_prefix": "overall_test_all_latent"},
      {"on_split": "overall_train", "make_logs": "False", "dump_latent": "True",
       "latent_prefix": "overall_train_all_latent"}
    ]
  }]
})json";
}

/// The upstream pbmc5k signature config (examples/configs/pbmc5k_signature_config.json), embedded.
inline const char* tutorial_signature_json() {
  return R"json({
  "cd8": {
    "remarks": "major CD8 T cells marker(s)",
    "signature_list": ["CD8A", "CD8B"],
    "exclude_from_input": "False",
    "signature_lat_dim": 50, "signature_out_dim": 2,
    "pre_procedure": [], "post_procedure": [{"type": "ToTensor"}],
    "split": {"type": "none"},
    "loss": {
      "regression_MSE": {"type": "MSE", "progressive_mode": "increment", "progressive_const": 0.01,
        "progressive_start_epoch": 50, "init_weight": 0.0, "max_weight": 1.0},
      "regression_L1": {"type": "L1", "progressive_mode": "increment", "progressive_const": 0.01,
        "progressive_start_epoch": 50, "init_weight": 0.0, "max_weight": 1.0},
      "regression_cosine": {"type": "Cosine", "progressive_mode": "increment", "progressive_const": 0.01,
        "progressive_start_epoch": 50, "init_weight": 0.0, "max_weight": 1.0}
    },
    "model": {"type": "FCRegressor", "hidden_neurons": 5, "attach": "True", "attach_to": "main_lat"},
    "regularization": {}
  }
})json";
}

/// Sizes of the demo. The tutorial has ~5k cells, 10k genes and 5000 ticks; the default here keeps
/// its epoch structure (ticks per split / batches per pass = 100 passes, so the signature weights
/// ramp from epoch 50 exactly as in the tutorial) at a fraction of the cost.
struct DemoOptions {
  Index cells = 2000;
  Index genes = 2000;
  int cell_types = 6;
  std::int64_t ticks = 2000;
  std::int64_t segment = 500;  ///< test and checkpoint segment
  std::string out_dir;         ///< data, configs and logs go here
  std::uint64_t seed = 3407;
  int knn_k = 15;
};

struct DemoMetrics {
  double signature_r = 0;   ///< mean over CD8A, CD8B of Pearson r (head output vs expression), held-out cells
  double knn_accuracy = 0;  ///< k-NN cell type accuracy of held-out cells' main latent vs training cells'
};

struct DemoReport {
  DemoMetrics untrained, trained;
  double train_seconds = 0;
  std::string config_path, log_path;
  Index cells = 0, genes = 0;
  std::int64_t ticks = 0;
};

/// Writes the demo's data and configs under o.out_dir; returns the config path.
inline std::string write_demo_files(const DemoOptions& o) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::absolute(o.out_dir);
  fs::create_directories(dir / "data");
  const auto syn = data::make_synthetic({.cells = o.cells, .genes = o.genes, .cell_types = o.cell_types, .seed = o.seed});
  io::write_mtx_dataset(data::to_dataset(syn), (dir / "data").string());
  Json sig = Json::parse(tutorial_signature_json());
  Json cfg = Json::parse(tutorial_config_json());
  cfg["log_path"] = (dir / "log").string() + "/";
  auto& d = cfg["dataset"];
  d["gene_expr_MM_path"] = (dir / "data" / "matrix.mtx").string();
  d["gene_name_csv_path"] = (dir / "data" / "genes.csv").string();
  d["cell_name_csv_path"] = (dir / "data" / "cells.csv").string();
  d["pheno_csv_path"] = (dir / "data" / "pheno.csv").string();
  d["signature_config_path"] = (dir / "signature_config.json").string();
  auto& item = cfg["story"][0];
  // SPEC §9: upstream's story selects `cd4cd8`, which is not configured; the signature is `cd8`
  auto& focused = item["split_configs"]["cd8_focused"];
  focused["selected_signature"] = Json{{"cd8", Json{{"loss", "*"}, {"regularization", "*"}}}};
  item["ticks"] = o.ticks;
  item["test_segment"] = o.segment;
  item["checkpoint_segment"] = o.segment;
  std::ofstream(dir / "signature_config.json") << sig.dump(2) << "\n";
  std::ofstream(dir / "config.json") << cfg.dump(2) << "\n";
  return (dir / "config.json").string();
}

/// Scores the current model on the held-out cells (overall_test), leaving the random stream as is.
inline DemoMetrics score_demo(Session& s, Runner& r, int knn_k) {
  Controller<float>& ctl = s.controller();
  const Rng::State keep = ctl.rng().state();
  const auto& d = s.data();
  const auto* types = [&] {
    for (const auto& c : d.columns)
      if (c.name == "cell_type") return &c;
    sakura::detail::fail("demo data has no cell_type column");
  }();
  std::vector<std::string> names;
  auto label = [&](Index cell) {
    const std::string& v = types->values[static_cast<std::size_t>(cell)];
    for (std::size_t i = 0; i < names.size(); ++i)
      if (names[i] == v) return static_cast<std::int64_t>(i);
    names.push_back(v);
    return static_cast<std::int64_t>(names.size() - 1);
  };
  const int sig = ctl.model().find(BlockKind::Signature, "cd8");
  sakura::detail::require(sig >= 0, "demo config has no cd8 signature");
  const Index lat = ctl.model_spec().latent_dim;
  const EvalOptions eo{.scope = {.reconstruction = false, .phenos = Selection::none()}};
  auto collect = [&](const std::string& split, std::vector<float>& latent, std::vector<std::int64_t>& labels,
                     std::vector<double>* pred, std::vector<double>* truth) {
    r.evaluate(s.splits().rows(split), eo, [&](std::span<const Index> rows) {
      const auto z = ctl.view(ctl.forward().main);
      const auto y = ctl.view(ctl.forward().sig_out[static_cast<std::size_t>(sig)]);
      for (std::size_t i = 0; i < rows.size(); ++i) {
        for (Index j = 0; j < lat; ++j) latent.push_back(z(static_cast<Index>(i), j));
        labels.push_back(label(rows[i]));
        if (!pred) continue;
        float t[2];
        const Index row = rows[i];
        d.signature_expr.gather_columns(std::span<const Index>(&row, 1), d.signatures[0].columns, t);
        for (int g = 0; g < 2; ++g) {
          pred[g].push_back(y(static_cast<Index>(i), g));
          truth[g].push_back(t[g]);
        }
      }
    });
  };
  std::vector<float> ref, query;
  std::vector<std::int64_t> ref_l, query_l;
  std::vector<double> pred[2], truth[2];
  collect("overall_train", ref, ref_l, nullptr, nullptr);
  collect("overall_test", query, query_l, pred, truth);
  DemoMetrics m;
  m.signature_r = 0.5 * (pearson(pred[0], truth[0]) + pearson(pred[1], truth[1]));
  m.knn_accuracy = knn_accuracy(ref, ref_l, query, query_l, lat, knn_k);
  ctl.rng().set_state(keep);
  return m;
}

/// The whole demo: files, untrained score, the tutorial story, trained score.
inline DemoReport run_demo(const DemoOptions& o, RunnerOptions ro = {}) {
  DemoReport rep;
  rep.config_path = write_demo_files(o);
  SessionOptions so;
  so.log = ro.log;
  so.verbose = ro.verbose;
  Session session(rep.config_path, so);
  Runner runner(session, ro);
  rep.untrained = score_demo(session, runner, o.knn_k);
  const auto t0 = std::chrono::steady_clock::now();
  runner.run();
  rep.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rep.trained = score_demo(session, runner, o.knn_k);
  rep.log_path = session.setup().log_path;
  rep.cells = session.data().n_cells();
  rep.genes = session.data().n_genes();
  rep.ticks = o.ticks;
  return rep;
}

}  // namespace sakura::story
