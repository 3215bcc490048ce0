// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Small configs and batches shared by controller tests.
#pragma once

#include <sakura/sakura.hpp>
#include <string>
#include <vector>

namespace sakura::test {

using sakura::config::Json;

constexpr Index kGenes = 12;
constexpr Index kCells = 8;

/// A term: {"type": .., "init_weight": w, "progressive_const": 1, "progressive_start_epoch": 1, extra...}
inline Json term(const std::string& type, double w = 1.0, Json extra = Json::object()) {
  Json t = {{"type", type}, {"init_weight", w}, {"progressive_const", 1.0}, {"progressive_start_epoch", 1}};
  for (auto it = extra.begin(); it != extra.end(); ++it) t[it.key()] = it.value();
  return t;
}

/// Main latent 3-d: MSE + SW2_uniform; RMSProp(lr 0.01, alpha 0.9).
inline Json base_config() {
  return Json::parse(R"({
    "device": "cpu",
    "main_latent": {"encoder_neurons": 8, "decoder_neurons": 8, "latent_dim": 3,
      "loss": {"mse": {"type": "MSE", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 1}},
      "regularization": {"sw2": {"type": "SW2_uniform", "init_weight": 0.1, "progressive_const": 1.0,
                                  "progressive_start_epoch": 1, "uniform_low": -1.0, "uniform_high": 1.0,
                                  "SW2_num_projections": 50}}},
    "optimizer": {"type": "RMSProp", "RMSProp_lr": 0.01, "RMSProp_alpha": 0.9}})");
}

/// Phenotype "p": LinClassifier over 3 classes, NLL + L2_regularization.
inline Json base_pheno() {
  return Json::parse(R"({"p": {"pheno_lat_dim": 2, "pheno_out_dim": 3, "model": {"type": "LinClassifier"},
    "loss": {"nll": {"type": "NLL", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 1}},
    "regularization": {"l2": {"type": "L2_regularization", "init_weight": 0.1, "progressive_const": 1.0,
                              "progressive_start_epoch": 1}}}})");
}

/// Signatures "s" (own latent, LinRegressor, MSE) and "a" (FCRegressor attached to the main latent, MSE + Cosine).
inline Json base_signature() {
  return Json::parse(R"({
    "s": {"signature_lat_dim": 2, "signature_out_dim": 2, "model": {"type": "LinRegressor"},
          "loss": {"mse": {"type": "MSE", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 1}},
          "regularization": {}},
    "a": {"signature_lat_dim": 3, "signature_out_dim": 2,
          "model": {"type": "FCRegressor", "hidden_neurons": 5, "attach": "True", "attach_to": "main_lat"},
          "loss": {"mse": {"type": "MSE", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 1},
                   "cos": {"type": "Cosine", "init_weight": 0.5, "progressive_const": 1.0, "progressive_start_epoch": 1}}}})");
}

/// Signatures in every attachment mode: s (own latent), a (signature_lat: s), c (all_lat),
/// d (multiple: [main, s]), e (main_lat), f (signature_lat: a, so s through a).
inline Json attachment_signatures() {
  return Json::parse(R"({
    "s": {"signature_lat_dim": 2, "signature_out_dim": 2, "model": {"type": "LinRegressor"},
          "loss": {"mse": {"type": "MSE", "init_weight": 1.0}}},
    "a": {"signature_lat_dim": 2, "signature_out_dim": 2,
          "model": {"type": "LinRegressor", "attach": "True", "attach_to": "signature_lat", "attach_key": "s"},
          "loss": {"mse": {"type": "MSE", "init_weight": 1.0}}},
    "c": {"signature_lat_dim": 7, "signature_out_dim": 2,
          "model": {"type": "LinRegressor", "attach": "True", "attach_to": "all_lat"},
          "loss": {"mse": {"type": "MSE", "init_weight": 1.0}}},
    "d": {"signature_lat_dim": 5, "signature_out_dim": 2,
          "model": {"type": "LinRegressor", "attach": "True", "attach_to": "multiple",
                    "attach_key": [{"type": "main"}, {"type": "signature", "key": "s"}]},
          "loss": {"mse": {"type": "MSE", "init_weight": 1.0}}},
    "e": {"signature_lat_dim": 3, "signature_out_dim": 2,
          "model": {"type": "LinRegressor", "attach": "True", "attach_to": "main_lat"},
          "loss": {"mse": {"type": "MSE", "init_weight": 1.0}}},
    "f": {"signature_lat_dim": 2, "signature_out_dim": 2,
          "model": {"type": "LinRegressor", "attach": "True", "attach_to": "signature_lat", "attach_key": "a"},
          "loss": {"mse": {"type": "MSE", "init_weight": 1.0}}}})");
}

/// base_pheno plus b (LinClassifier attached to p's latent: pheno_lat).
inline Json attachment_phenos() {
  Json pheno = base_pheno();
  pheno["b"] = Json::parse(R"({"pheno_lat_dim": 2, "pheno_out_dim": 3,
      "model": {"type": "LinClassifier", "attach": "True", "attach_to": "pheno_lat", "attach_key": "p"},
      "loss": {"nll": {"type": "NLL", "init_weight": 1.0}}})");
  return pheno;
}

/// base_config + base_pheno + base_signature as compile-time policies.
using Fixture = Model<Terms<Mse>, Terms<Sw2Uniform>,
                      Blocks<Block<"s", LinRegressorHead, 2, OwnLatent, Terms<Mse>>,
                             Block<"a", FCRegressorHead, 3, OnMain, Terms<Mse, Cosine>>>,
                      Blocks<Block<"p", LinClassifierHead, 2, OwnLatent, Terms<Nll>, Terms<L2Regularization>>>>;

template <class T = float>
Tensor<T> random_tensor(Index r, Index c, std::uint64_t seed, double lo = 0.0, double hi = 2.0) {
  Rng rng(seed);
  Tensor<T> t(r, c);
  for (auto& v : t) v = static_cast<T>(rng.uniform(lo, hi));
  return t;
}

/// A batch for base_config/base_pheno/base_signature: expression, targets s and a, labels p.
template <class T = float>
Batch<T> base_batch(std::uint64_t seed = 1, Index cells = kCells) {
  Batch<T> b(random_tensor<T>(cells, kGenes, seed));
  for (Index i = 0; i < b.expr.size(); i += 3) b.expr[i] = T(0);  // sparse-ish, exact zeros
  b.set_signature("s", random_tensor<T>(cells, 2, seed + 1));
  b.set_signature("a", random_tensor<T>(cells, 2, seed + 2));
  std::vector<std::int64_t> labels(static_cast<std::size_t>(cells));
  for (Index i = 0; i < cells; ++i) labels[static_cast<std::size_t>(i)] = i % 3;
  b.set_labels("p", labels);
  return b;
}

template <class T = float>
ExperimentSpec spec_of(const Json& config, const Json& pheno, const Json& sig, Index genes = kGenes) {
  return config::experiment_from_json(config, pheno, sig, genes);
}

}  // namespace sakura::test
