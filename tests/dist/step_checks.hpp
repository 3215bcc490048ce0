// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// What the distributed-step tests share (test_step_mpi on CPU ranks, test_step_gpu on GPU ranks):
// parameter and record comparisons, the golden files, and the mixed case with every kind of term.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "dist/reference.hpp"  // same_bits
#include "support/fixtures.hpp"
#include "support/golden_replay.hpp"

namespace sakura::test {

/// Every parameter value, in registration order (a GPU controller's copied to the host first).
template <class T, class Dev>
std::vector<T> params_of(Controller<T, Dev>& ctl) {
  ctl.sync_to_host();
  std::vector<T> v;
  for (const auto& p : ctl.model().parameters().all()) v.insert(v.end(), p.value.begin(), p.value.end());
  return v;
}

/// Worst |a - b| / max(|b|, 1e-2) (relative, absolute below 1e-2 as the golden comparison does).
template <class T>
double worst_rel(const std::vector<T>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  double w = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    w = std::max(w, std::abs(double(a[i]) - double(b[i])) / std::max(std::abs(double(b[i])), 1e-2));
  return w;
}

/// Worst relative difference between two records (every value of config::to_json).
inline double worst_rel(const Json& a, const Json& b) {
  if (b.is_number()) {
    const double x = a.get<double>(), y = b.get<double>();
    return std::abs(x - y) / std::max(std::abs(y), 1e-6);
  }
  double w = 0;
  if (b.is_object() || b.is_array())
    for (auto it = b.begin(); it != b.end(); ++it)
      w = std::max(w, worst_rel(b.is_object() ? a.at(it.key()) : a.at(static_cast<std::size_t>(it - b.begin())),
                                it.value()));
  return w;
}

inline std::vector<std::filesystem::path> golden_files() {
  std::vector<std::filesystem::path> files;
  for (auto& e : std::filesystem::directory_iterator(SAKURA_DEFAULT_GOLDEN_DIR))
    if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

/// A model with every kind of term the step distributes: dropout in the pre-encoder (hidden, so
/// the sparse first layer stays), compressors, decoder and a head; SW2 against the uniform,
/// gaussian-mixture and ring priors; KL; a phenotype classifier with a GRL term; an own-latent
/// signature and one attached to the main latent.
inline ExperimentSpec mixed_spec() {
  Json config = base_config();
  config["pre_encoder_config"] = Json::parse(
      R"({"hidden_neurons": [10], "hidden_layers": 2, "dropout": true, "dropout_hidden": true, "dropout_hidden_p": 0.2})");
  config["main_latent"]["encoder_config"] = Json::parse(
      R"({"hidden_neurons": [6], "hidden_layers": 2, "dropout": true, "dropout_input": true, "dropout_input_p": 0.1})");
  config["main_latent"]["decoder_config"] =
      Json::parse(R"({"hidden_neurons": [9], "hidden_layers": 2, "dropout": true, "dropout_hidden": true,
                      "dropout_hidden_p": 0.3, "output_activation_function": "relu"})");
  config["main_latent"]["loss"]["l1"] = term("L1", 0.5);
  config["main_latent"]["regularization"]["gm"] =
      term("SW2_gaussian_mixture", 0.2, {{"gaussian_mixture_n_labels", 4}, {"SW2_num_projections", 20}});
  config["main_latent"]["regularization"]["kl"] = term("KL_gaussian_mixture", 0.05, {{"gaussian_mixture_n_labels", 3}});
  config["main_latent"]["regularization"]["l1n"] = term("L1_regularization", 0.01);
  Json pheno = base_pheno();
  pheno["p"]["model"] = Json::parse(R"({"type": "FCClassifier", "hidden_neurons": 4, "hidden_layers": 2,
                                       "dropout": true, "dropout_hidden": true, "dropout_hidden_p": 0.25})");
  pheno["p"]["loss"]["nll_grl"] = term("NLL", 0.5, {{"enable_GRL", "True"}});
  pheno["p"]["regularization"]["ring"] = term("SW2_ring2d", 0.3, {{"SW2_num_projections", 10}});
  return spec_of(config, pheno, base_signature());
}

/// Batches of `cells` rows; odd ones sparse (CSR input, expression kept for the reconstruction).
template <class T = float>
Batch<T> mixed_batch(std::uint64_t seed, Index cells) {
  Batch<T> b = base_batch<T>(seed, cells);
  if (seed % 2) b.set_sparse(CsrMatrix<T>::from_dense(b.expr.ref()));
  return b;
}

/// The sequence of calls of the mixed case (train, a GRL-free selection, accumulate, eval, loss),
/// returning every record as JSON; `rows` maps a global batch to what this process passes.
template <class T, class Dev, class Rows>
std::vector<Json> run_mixed(Controller<T, Dev>& ctl, int steps, Index cells, Rows&& rows) {
  std::vector<Json> records;
  for (int s = 0; s < steps; ++s) {
    const Batch<T> b = rows(mixed_batch<T>(static_cast<std::uint64_t>(s + 1), cells));
    if (s % 5 == 3) {  // a summed step over two batches
      records.push_back(config::to_json(ctl.accumulate(b)));
      records.push_back(config::to_json(ctl.accumulate(rows(mixed_batch<T>(100 + s, cells)))));
      ctl.apply_accumulated();
    } else if (s % 5 == 4) {
      TrainOptions o;
      o.scope.reconstruction = false;
      o.step.save_raw_loss = true;
      records.push_back(config::to_json(ctl.train(b, o)));
    } else {
      records.push_back(config::to_json(ctl.train(b)));
    }
    if (s % 7 == 6) {
      records.push_back(config::to_json(ctl.eval(b), false));
      records.push_back(config::to_json(ctl.loss(b)));
      ctl.next_epoch();
    }
  }
  return records;
}

}  // namespace sakura::test
